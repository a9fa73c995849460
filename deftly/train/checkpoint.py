"""Checkpoint files without pickle: tensors in safetensors, everything else as JSON metadata.

A state is any nest of dicts, lists, tuples, numbers, strings, None and tensors (a model or
optimizer `state_dict`, RNG states, callback states). `save_state` writes it atomically: to a
temporary file in the same folder, fsync, then `os.replace`, so a crash never leaves a torn file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from deftly.core.errors import ExportError

FORMAT = "deftly.state/1"


def _encode(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    """Replace tensors by references, and tag tuples and non-string-keyed dicts, so JSON can hold it."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}:{path}"[:200]
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors, path), _encode(v, tensors, f"{path}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    raise ExportError(f"cannot store a {type(obj).__name__} in a checkpoint (at {path or 'top level'}): "
                      "only tensors, numbers, strings, None, lists, tuples and dicts are allowed")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if "__items__" in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
        return {k: _decode(v, tensors) for k, v in obj.items()}
    return obj


def atomic_write(path: Path, write) -> None:
    """Call `write(tmp_path)`, then move the result onto `path` in one step; clean up on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a state nest to `path` atomically (safetensors with a JSON description)."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors, "")
    meta = {"format": FORMAT, "tree": json.dumps(tree)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return path


def load_state(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a file written by `save_state`; never unpickles, so it cannot run code."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ExportError(f"{path} is not a readable deftly checkpoint ({e})") from e
    if meta.get("format") != FORMAT:
        raise ExportError(f"{path} is not a deftly checkpoint (format {meta.get('format')!r}, expected {FORMAT!r})")
    try:
        tree = json.loads(meta["tree"])
    except (KeyError, json.JSONDecodeError) as e:
        raise ExportError(f"{path} has a damaged description ({e})") from e
    return _decode(tree, tensors)
