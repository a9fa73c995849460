"""The export file: a zip holding exactly `manifest.json` and `weights.safetensors`.

Writing is atomic (a temporary file in the same folder, then one rename), so an interrupted export
leaves the previous file as it was. Reading never unpickles, never extracts to disk and never runs
code: the zip's entries are checked (names, count, sizes) before anything is read, the weights are
read by safetensors from memory and checked against the manifest's SHA-256.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from deftly.core.errors import ExportError
from deftly.train.checkpoint import atomic_write

__all__ = ["MANIFEST", "WEIGHTS", "describe_file", "read_archive", "split_shared", "write_archive"]

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
#: the most bytes a manifest may take once decompressed (a 60,000-token vocabulary is ~1 MB)
MAX_MANIFEST_BYTES = 256 * 2**20
#: the most bytes the weights may take (stored uncompressed, so this also bounds what is read)
MAX_WEIGHTS_BYTES = 64 * 2**30
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".pth", ".pt", ".bin", ".ckpt", ".joblib")


# ------------------------------------------------------------------------------------------ writing


def split_shared(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """CPU copies of a state dict's tensors, one per distinct tensor, and `{alias: name}` for entries
    that are the same tensor under another name (tied weights), which safetensors cannot store twice."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise ExportError(f"the model's state entry {name!r} is a {type(t).__name__}, not a tensor")
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()),
               t.dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().to("cpu", copy=True).contiguous()  # a copy: never shares memory
    return tensors, aliases


def write_weights(zf: zipfile.ZipFile, tensors: dict[str, torch.Tensor]) -> str:
    """Write the weights entry; returns its SHA-256 (hex)."""
    data = save_safetensors(tensors)
    with zf.open(zipfile.ZipInfo(WEIGHTS, date_time=(1980, 1, 1, 0, 0, 0)), "w", force_zip64=True) as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def write_archive(path: str | Path, manifest: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    """Write `manifest` (JSON) and `tensors` (safetensors) into one zip at `path`, atomically; the
    manifest gains `weights.sha256`."""
    path = Path(path)

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            digest = write_weights(zf, tensors)
            manifest["weights"]["sha256"] = digest
            info = zipfile.ZipInfo(MANIFEST, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, json.dumps(manifest, indent=1, ensure_ascii=False))

    atomic_write(path, write)
    return path


# ------------------------------------------------------------------------------------------ reading

_EXPECTED = "a deftly export (a zip holding manifest.json and weights.safetensors, written by learn.export())"


def describe_file(head: bytes, size: int) -> str:
    """What a file that is not a deftly export looks like, from its first bytes."""
    if size == 0:
        return "an empty file"
    if _is_pickle(head):
        return "a Python pickle (e.g. a fastai export.pkl or torch.save file), which deftly never loads"
    if head[:2] == b"\x1f\x8b":
        return "a gzip file"
    if head[:5] == b"ustar" or head[257:262] == b"ustar":
        return "a tar archive"
    if head[:4] == b"\x89PNG" or head[:3] == b"\xff\xd8\xff" or head[:4] in (b"GIF8", b"RIFF"):
        return "an image"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size:
        return "a safetensors weights file (what learn.save writes), not an exported learner"
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        return "a JSON or text file"
    if head[:2] == b"PK":
        return "a zip archive"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "a binary file of unknown kind"


def _open_zip(path: Path, data: bytes) -> zipfile.ZipFile:
    if not data.startswith(b"PK\x03\x04"):
        raise ExportError(f"{path} is not a deftly export: it is {describe_file(data[:512], len(data))}; "
                          f"expected {_EXPECTED}")
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
        raise ExportError(f"{path} is a truncated or damaged export (the zip cannot be read: {e}); export the "
                          "learner again") from e


def _is_pickle(head: bytes) -> bool:
    """Whether bytes start like a pickle of protocol 2-5 (what torch.save and fastai write)."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _head(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size < 2:
        return b""
    try:
        with zf.open(info) as f:
            return f.read(2)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as e:
        raise ExportError(f"{path} is a truncated or damaged export ({info.filename}: {e}); export the learner "
                          "again") from e


def _check_entries(path: Path, zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    names = [i.filename for i in infos]
    for name in names:
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
            raise ExportError(f"{path} is not a safe export: the entry name {name!r} is an absolute path or leaves "
                              "the archive ('..'); refusing to read it")
    for info in infos:
        # the weights entry is never sniffed: a safetensors header length can start with the same bytes
        head = _head(path, zf, info) if info.filename != WEIGHTS else b""
        if info.filename.lower().endswith(_PICKLE_SUFFIXES) or _is_pickle(head):
            raise ExportError(f"{path} holds a pickle ({info.filename!r}): deftly never unpickles, since loading a "
                              "pickle can run any code. It expected " + _EXPECTED)
    if len(set(names)) != len(names):
        raise ExportError(f"{path} is not a valid export: an entry name appears twice ({sorted(names)})")
    if set(names) != {MANIFEST, WEIGHTS}:
        raise ExportError(f"{path} is not a deftly export: its entries are {sorted(names)}; expected exactly "
                          f"{[MANIFEST, WEIGHTS]}")
    by_name = {i.filename: i for i in infos}
    if by_name[MANIFEST].file_size > MAX_MANIFEST_BYTES:
        raise ExportError(f"{path}: the manifest would take {by_name[MANIFEST].file_size} bytes (at most "
                          f"{MAX_MANIFEST_BYTES}); refusing to read it")
    if by_name[WEIGHTS].file_size > MAX_WEIGHTS_BYTES:
        raise ExportError(f"{path}: the weights would take {by_name[WEIGHTS].file_size} bytes; refusing to read them")
    return by_name


def _read_entry(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        with zf.open(info) as f:
            data = f.read(info.file_size + 1)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as e:
        raise ExportError(f"{path} is a truncated or damaged export ({info.filename}: {e}); export the learner "
                          "again") from e
    if len(data) != info.file_size:
        raise ExportError(f"{path} is damaged: {info.filename} holds {len(data)} bytes, its header says "
                          f"{info.file_size}")
    return data


def read_manifest(path: Path, zf: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo]) -> dict[str, Any]:
    """The manifest as a dict; an ExportError if it is not JSON."""
    raw = _read_entry(path, zf, infos[MANIFEST])
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: manifest.json is not valid JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise ExportError(f"{path}: manifest.json must hold a JSON object, it holds a {type(manifest).__name__}")
    return manifest


def read_weights(path: Path, zf: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo],
                 sha256: str | None) -> dict[str, torch.Tensor]:
    """The tensors of the weights entry (on the CPU), checked against the manifest's SHA-256."""
    raw = _read_entry(path, zf, infos[WEIGHTS])
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise ExportError(f"{path} is damaged: the weights do not match the SHA-256 the manifest records")
    try:
        return load_safetensors(raw)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise ExportError(f"{path}: the weights are not a readable safetensors file ({e}); the entry looks like "
                          f"{describe_file(raw[:512], len(raw))}") from e


def read_archive(path: str | Path, check_manifest: Any = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The manifest and weights of the export at `path`, after every safety check; `check_manifest`
    (manifest -> None) runs before the weights are read, so a bad manifest fails fast."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"no exported learner at {path}")
    if not path.is_file():
        raise ExportError(f"{path} is a folder, not an exported learner file; expected {_EXPECTED}")
    data = path.read_bytes()
    with _open_zip(path, data) as zf:
        infos = _check_entries(path, zf)
        manifest = read_manifest(path, zf, infos)
        if check_manifest is not None:
            check_manifest(manifest)
        weights = manifest.get("weights") if isinstance(manifest.get("weights"), dict) else {}
        tensors = read_weights(path, zf, infos, weights.get("sha256"))
    return manifest, tensors
