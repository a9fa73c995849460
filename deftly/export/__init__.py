"""Export and loading without pickle: one file holding a JSON manifest and safetensors weights.

`learn.export()` writes it, `load_learner(path)` rebuilds a learner ready to `predict` from the
registries (`register_arch` for your own architectures). See `deftly.export.manifest` for the format.
"""
from deftly.export.learner import export_learner, load_learner
from deftly.export.manifest import FORMAT, FORMAT_VERSION
from deftly.export.registry import list_archs, register_arch

__all__ = ["FORMAT", "FORMAT_VERSION", "export_learner", "list_archs", "load_learner", "register_arch"]
