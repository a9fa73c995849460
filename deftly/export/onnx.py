"""`learn.to_onnx()`: an image or tabular learner's model as one ONNX file, for runtimes without deftly.

    learn.to_onnx("model.onnx")            # learn.path/model.onnx (needs `pip install deftly[onnx]`)

The graph is the model in eval mode, on the CPU, in float32, followed by the activation the learner's
loss implies, so it outputs what `learn.predict` and `learn.get_preds` report: probabilities (softmax for
single-label, sigmoid for multi-label) or, for regression, the raw outputs. The batch dimension is
dynamic. Run it with onnxruntime:

    import json, numpy as np, onnxruntime as ort
    sess = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
    meta = json.loads(sess.get_modelmeta().custom_metadata_map["deftly"])
    probs = sess.run(None, {"image": batch})[0]            # vision: (n, classes)
    probs = sess.run(None, {"cats": cats, "conts": conts})[0]  # tabular

Preprocessing is the caller's job, and the metadata (`metadata_props["deftly"]`, JSON) says what it is:

- vision: one input `image`, float32 (n, channels, h, w), `meta["input"]`. Decode each image in
  `meta["preprocess"]["convert_mode"]`, resize it to (h, w) as `learn.predict` does (`resize_method`,
  centre crop by default), scale pixels to [0, 1] (divide by 255), then normalise each channel with
  `(x - mean) / std` (`meta["preprocess"]["mean"]`, `["std"]`; null when the data was not normalised).
- tabular: two inputs, `cats` int64 (n, len(meta["cat_names"])), the category codes (0 is `#na#`), and
  `conts` float32 (n, len(meta["cont_names"])), the filled and normalised continuous values, both in
  the order of those names. `meta["processor"]` is the fitted processor state; with deftly installed,
  `TabularProcessor.from_state(meta["processor"]).transform(df)` turns a DataFrame into the two arrays.

`meta["classes"]` names the output columns (and `meta["labels"]` says single, multi or float; a float
label with `log` means the output is the log of the value). Text and collab learners are not exported
to ONNX: use `learn.export()` and `load_learner`.

The file is checked before it is written: when onnxruntime is installed, it must reproduce the torch
model's outputs on a random batch (1e-4). It is written atomically, so a failed or interrupted export
leaves an existing file as it was. The exporter is torch's `torch.export`-based one (`dynamo=True`,
torch's default); `dynamo=False` picks the older TorchScript exporter, which torch has deprecated.
"""
from __future__ import annotations

import copy
import inspect
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

import deftly
from deftly.core.errors import ConfigError, ExportError
from deftly.export import apps
from deftly.export.manifest import jsonable, labels_section
from deftly.train.checkpoint import atomic_write
from deftly.train.losses import loss_activation

__all__ = ["APPLICATIONS", "FORMAT", "FORMAT_VERSION", "METADATA_KEY", "export_onnx", "read_metadata"]

FORMAT = "deftly.onnx"
#: bump when the metadata changes in a way a reader of the previous version would misread
FORMAT_VERSION = 1
#: the key of the JSON metadata in the ONNX model's metadata_props
METADATA_KEY = "deftly"
#: the applications whose learners can be exported to ONNX
APPLICATIONS = ("vision", "tabular")
#: what the exported outputs may differ from torch's by (absolute and relative), checked before writing
TOLERANCE = 1e-4
_INSTALL = "pip install deftly[onnx]"
_EXAMPLE_BATCH = 2  # torch.export specialises batches of size 0 and 1, so the example has two rows


def _randn(*shape: int) -> torch.Tensor:
    """Example values from a generator of our own, so exporting leaves the global random state alone."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


class _Predictor(nn.Module):
    """The model followed by the loss's activation: the outputs `learn.predict` reports."""

    def __init__(self, model: nn.Module, activation: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.model = model
        self.activation = activation

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.activation(self.model(*xs))


def export_onnx(learn: Any, fname: str | os.PathLike = "model.onnx", size: int | tuple[int, int] | None = None,
                dynamo: bool = True, opset: int | None = None, check: bool = True) -> Path:
    """Write `learn`'s model as ONNX to `learn.path / fname` (atomically) and return the path.

    `size` is the image input's (h, w), needed only when the data does not resize images to one fixed
    size. `dynamo=False` uses torch's older TorchScript exporter; `opset` picks the ONNX opset (the
    exporter's default otherwise). With `check`, the file is first run with onnxruntime (when installed)
    and must match the torch model within 1e-4. Nothing is written when anything fails.
    """
    onnx = _import_onnx(dynamo)
    application = apps.application_of(learn.data)
    if application not in APPLICATIONS:
        raise ExportError(f"to_onnx exports image and tabular learners (applications {list(APPLICATIONS)}); this is "
                          f"a {application} learner. Use learn.export() and load_learner for it")
    activation = loss_activation(learn.loss_func)
    if application == "vision":
        names, inputs, dynamic, meta = _vision(learn, size)
    else:
        names, inputs, dynamic, meta = _tabular(learn)
    act_name = _activation_name(activation)
    output = "probs" if act_name in ("softmax", "sigmoid") else "preds"
    model = _Predictor(_cpu_copy(learn.model), activation).eval()
    try:
        with torch.no_grad():
            expected = model(*inputs)
    except Exception as e:  # whatever the model raises: say which inputs it was given
        shapes = ", ".join(f"{n} {tuple(x.shape)} {str(x.dtype).replace('torch.', '')}" for n, x in zip(names, inputs))
        raise ExportError(f"the model fails on an example batch ({shapes}): {type(e).__name__}: {e}") from e
    if not isinstance(expected, torch.Tensor):
        raise ExportError(f"to_onnx exports models with one tensor output; this model returns a "
                          f"{type(expected).__name__}")
    labels = labels_section(learn.data.label_list.y)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "deftly_version": deftly.__version__,
            "torch_version": torch.__version__.split("+")[0], "application": application,
            "classes": labels.get("classes"), "labels": labels,
            "output": {"name": output, "dtype": "float32", "shape": ["batch", *expected.shape[1:]],
                       "activation": act_name}, **meta}
    proto = _export(model, inputs, names, output, dynamic, dynamo, opset)
    _name_inputs(onnx, proto, names, inputs)
    _set_metadata(onnx, proto, jsonable(meta, "the ONNX metadata"))
    try:
        data = proto.SerializeToString()
    except ValueError as e:  # protobuf refuses messages over 2 GiB
        raise ExportError(f"the ONNX model is too large for one file ({e}); to_onnx writes models under 2 GiB") from e
    if check:
        _check(data, names, inputs, expected)
    path = Path(learn.path) / fname
    atomic_write(path, lambda tmp: _write_file(tmp, data))
    return path


def _write_file(tmp: Path, data: bytes) -> None:
    """Write the serialised model to the temporary file that `atomic_write` then moves into place."""
    with open(tmp, "wb") as f:
        f.write(data)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The deftly metadata (preprocessing, classes, ...) of an ONNX file written by `export_onnx`."""
    onnx = _import_onnx(dynamo=False)
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"no ONNX file at {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises protobuf's DecodeError and others for a file that is not ONNX
        raise ExportError(f"{path} is not a readable ONNX file ({type(e).__name__}: {e})") from e
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props:
        raise ExportError(f"{path} has no deftly metadata (metadata_props[{METADATA_KEY!r}]): it was not written by "
                          "learn.to_onnx")
    try:
        return json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as e:
        raise ExportError(f"{path}: the deftly metadata is not valid JSON ({e})") from e


# ------------------------------------------------------------------------------------------ inputs


def _vision(learn: Any, size: int | tuple[int, int] | None) -> tuple[list[str], tuple[torch.Tensor, ...], list, dict]:
    """Input name, example batch, dynamic axes and metadata for an image model."""
    import PIL.Image

    data = learn.data
    section = apps.describe("vision", data)
    convert_mode = section["item"]["convert_mode"]

    def prepared(h: int, w: int) -> tuple[int, ...]:
        xb = data.one_item(PIL.Image.new("RGB", (w, h)))[0]
        return tuple(xb.shape)

    first, second = prepared(61, 67), prepared(83, 71)
    want = None if size is None else ((size, size) if isinstance(size, int) else tuple(int(s) for s in size))
    if want is not None and (len(want) != 2 or min(want) < 1):
        raise ConfigError(f"size must be an int or a pair (h, w) of positive ints, got {size!r}")
    if first == second:  # the data resizes every image to one size
        if want is not None and want != first[-2:]:
            raise ConfigError(f"size={size!r} does not agree with the size the data resizes images to, "
                              f"{first[-2:]}; leave size out")
        want = first[-2:]
    elif want is None:
        raise ConfigError("the learner's data does not resize images to one fixed size, so the ONNX input size is "
                          "unknown: pass size=(h, w) (the size your images will have)")
    channels = first[1]
    inputs = (_randn(_EXAMPLE_BATCH, channels, *want),)
    norm = section.get("normalize")
    transforms = section["transforms"]
    preprocess = {"convert_mode": convert_mode, "size": list(want), "channels": channels, "layout": "NCHW",
                  "scale": 1 / 255, "resize_method": transforms.get("resize_method") or "crop",
                  "padding_mode": transforms.get("padding_mode") or "reflection",
                  "mean": norm["mean"] if norm and norm.get("do_x", True) else None,
                  "std": norm["std"] if norm and norm.get("do_x", True) else None}
    meta = {"input": {"name": "image", "dtype": "float32", "shape": ["batch", channels, *want]},
            "preprocess": preprocess, "data": section}
    return ["image"], inputs, [{0: "batch"}], meta


def _tabular(learn: Any) -> tuple[list[str], tuple[torch.Tensor, ...], list, dict]:
    """Input names, example batches, dynamic axes and metadata for a tabular model."""
    processor = learn.data.processor
    section = apps.describe("tabular", learn.data)
    n_cat, n_cont = len(processor.cat_names), len(processor.cont_names)
    inputs = (torch.zeros(_EXAMPLE_BATCH, n_cat, dtype=torch.int64), _randn(_EXAMPLE_BATCH, n_cont))
    meta = {"inputs": [{"name": "cats", "dtype": "int64", "shape": ["batch", n_cat]},
                       {"name": "conts", "dtype": "float32", "shape": ["batch", n_cont]}],
            "cat_names": list(processor.cat_names), "cont_names": list(processor.cont_names),
            "processor": section["processor"]}
    return ["cats", "conts"], inputs, [{0: "batch"}, {0: "batch"}], meta


def _activation_name(activation: Callable[[torch.Tensor], torch.Tensor]) -> str:
    """'softmax', 'sigmoid', 'none' or 'custom': what the loss's activation does, found by trying it."""
    x = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
    try:
        y = activation(x.clone())
    except Exception:  # a custom activation that only works on its own output shapes
        return "custom"
    for name, ref in (("none", x), ("softmax", torch.softmax(x, dim=-1)), ("sigmoid", torch.sigmoid(x))):
        if isinstance(y, torch.Tensor) and y.shape == ref.shape and torch.allclose(y, ref):
            return name
    return "custom"


# ------------------------------------------------------------------------------------------ export


def _import_onnx(dynamo: bool) -> Any:
    """The onnx module (and, for the dynamo exporter, a check that onnxscript and torch can run it)."""
    try:
        import onnx

        if dynamo:
            import onnxscript  # noqa: F401  (torch's dynamo exporter needs it)
    except ImportError as e:
        raise ExportError(f"to_onnx needs the onnx packages ({e.name} is not installed): {_INSTALL}") from e
    if dynamo and not hasattr(getattr(torch.export, "Dim", None), "AUTO"):
        raise ExportError(f"the torch.export ONNX exporter needs torch 2.6 or newer (this is {torch.__version__}): "
                          "upgrade torch, or pass dynamo=False for the older TorchScript exporter")
    return onnx


def _cpu_copy(model: nn.Module) -> nn.Module:
    """A float32 CPU copy of `model` in eval mode (the learner's own model is left as it is)."""
    dup = copy.deepcopy(model).to("cpu")
    for t in list(dup.parameters()) + list(dup.buffers()):
        if t.is_floating_point() and t.dtype != torch.float32:
            t.data = t.data.float()
    return dup.eval()


def _export(model: nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str], output: str, dynamic: list,
            dynamo: bool, opset: int | None) -> Any:
    """The ONNX ModelProto of `model` called on `inputs`, with a dynamic batch dimension."""
    try:
        if dynamo:
            # the first input names the batch dimension; the others' follows from it (naming it twice
            # only makes torch warn that the second name is unused)
            dims = [torch.export.Dim("batch") if i == 0 else torch.export.Dim.AUTO for i in range(len(dynamic))]
            shapes = (tuple({axis: dim for axis in d} for d, dim in zip(dynamic, dims)),)  # forward(*xs): one tuple
            program = torch.onnx.export(model, inputs, None, dynamo=True, input_names=names, output_names=[output],
                                        dynamic_shapes=shapes, opset_version=opset, verbose=False)
            return program.model_proto
        import io

        import onnx

        buf = io.BytesIO()
        axes = {name: d for name, d in zip(names, dynamic)}
        axes[output] = {0: "batch"}
        # torch before 2.5 has no `dynamo` argument: its exporter is the TorchScript one
        legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        torch.onnx.export(model, inputs, buf, input_names=names, output_names=[output], dynamic_axes=axes,
                          opset_version=opset, do_constant_folding=True, **legacy)
        return onnx.load_from_string(buf.getvalue())
    except ExportError:
        raise
    except Exception as e:  # torch.export and the ONNX exporters raise many kinds of errors
        other = "dynamo=False (the TorchScript exporter)" if dynamo else "dynamo=True (the torch.export exporter)"
        raise ExportError(f"torch could not export {type(model.model).__name__} to ONNX ({_reason(e)}); try "
                          f"{other}") from e


def _reason(e: Exception) -> str:
    """The gist of an exporter's error: torch.export's summary without its colours and boilerplate."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    found = re.search(r"## Exception summary\s*(.*?)\s*(?:The error above occurred|\Z)", text, re.S)
    text = found.group(1) if found else f"{type(e).__name__}: {text}"
    text = text.strip()
    return text if len(text) <= 1500 else text[:1500] + " ..."


def _name_inputs(onnx: Any, proto: Any, names: list[str], inputs: tuple[torch.Tensor, ...]) -> None:
    """Give the graph every input in `names`, in order, even one the model ignores (a tabular model without
    continuous columns; exporters drop unused inputs), and call the first axis of each input and output
    'batch' (torch names the axes it infers itself)."""
    graph = proto.graph
    have = {v.name: v for v in graph.input}
    missing = [n for n in names if n not in have]
    for name, x in zip(names, inputs):
        if name in missing:
            elem = onnx.helper.np_dtype_to_tensor_dtype(x.numpy().dtype)
            have[name] = onnx.helper.make_tensor_value_info(name, elem, ["batch", *x.shape[1:]])
    extra = [v for v in graph.input if v.name not in names]  # initialisers listed as inputs, if any
    ordered = [copy.deepcopy(have[n]) for n in names] + [copy.deepcopy(v) for v in extra]
    del graph.input[:]
    graph.input.extend(ordered)
    for value in list(graph.input[:len(names)]) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"


def _set_metadata(onnx: Any, proto: Any, meta: dict[str, Any]) -> None:
    """Store `meta` as JSON under METADATA_KEY (replacing an earlier entry) and a one-line doc string."""
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    for key, value in keep:
        proto.metadata_props.add(key=key, value=value)
    proto.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta, ensure_ascii=False))
    proto.producer_name, proto.producer_version = "deftly", deftly.__version__
    proto.doc_string = (f"deftly {meta['application']} model; outputs {meta['output']['name']} "
                        f"({meta['output']['activation']}). Preprocessing: metadata_props['{METADATA_KEY}'] (JSON).")
    try:
        onnx.checker.check_model(proto)
    except (onnx.checker.ValidationError, ValueError) as e:
        raise ExportError(f"the exported ONNX model is not valid ({e}); nothing was written") from e


def _check(data: bytes, names: list[str], inputs: tuple[torch.Tensor, ...], expected: torch.Tensor) -> None:
    """Run the serialised model with onnxruntime (when installed); an ExportError unless it matches torch."""
    try:
        import onnxruntime as ort
    except ImportError:
        return
    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # as many threads as torch is allowed
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        got = session.run(None, {n: x.numpy() for n, x in zip(names, inputs)})[0]
    except Exception as e:  # onnxruntime's own error types
        raise ExportError(f"onnxruntime cannot run the exported model ({type(e).__name__}: {e}); nothing was "
                          "written") from e
    want = expected.numpy()
    if got.shape != want.shape or not np.allclose(got, want, atol=TOLERANCE, rtol=TOLERANCE):
        diff = float(np.abs(got - want).max()) if got.shape == want.shape else f"shape {got.shape} vs {want.shape}"
        raise ExportError(f"the ONNX model's outputs differ from torch's ({diff}, tolerance {TOLERANCE}); nothing "
                          "was written")
