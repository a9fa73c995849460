"""Export and loading without pickle: one file holding a JSON manifest and safetensors weights.

`learn.export()` writes it, `load_learner(path)` rebuilds a learner ready to `predict` from the
registries (`register_arch` for your own architectures). See `deftly.export.manifest` for the format.
`learn.to_onnx()` (`export_onnx`) writes an image or tabular model as ONNX for onnxruntime.
"""
from deftly.export.learner import export_learner, load_learner
from deftly.export.manifest import FORMAT, FORMAT_VERSION
from deftly.export.onnx import export_onnx, read_metadata
from deftly.export.registry import list_archs, register_arch

__all__ = ["FORMAT", "FORMAT_VERSION", "export_learner", "export_onnx", "list_archs", "load_learner", "read_metadata",
           "register_arch"]
