"""Where deftly keeps downloaded data and models: `$DEFTLY_HOME` (default `~/.deftly`)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

from deftly.core.errors import DataError


def deftly_home() -> Path:
    """The root of deftly's caches; the environment variable DEFTLY_HOME overrides it."""
    return Path(os.environ.get("DEFTLY_HOME") or Path.home() / ".deftly").expanduser()


def data_dir() -> Path:
    """Where datasets are cached (created on first use)."""
    path = deftly_home() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


class DeftlyPath(type(Path())):  # type: ignore[misc]
    """A `pathlib.Path` with the course's `ls()`; `/`, `parent`, `iterdir` keep the subclass."""

    def ls(self) -> list["DeftlyPath"]:
        """The entries of this folder, sorted by name (the course's `path.ls()`); hidden entries
        (names starting with a dot) are left out."""
        return sorted(p for p in self.iterdir() if not p.name.startswith("."))


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks (checks downloads, fetched packages, bundled samples)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def get_files(path: str | os.PathLike, extensions: Iterable[str] | None = None, recurse: bool = False,
              include: Iterable[str] | None = None) -> list[Path]:
    """Files under `path` with one of `extensions` (case-insensitive), sorted; with `recurse`,
    also in sub-folders (only those named in `include` at the first level, if given)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError("not a folder", where=str(path))
    exts = {e.lower() for e in extensions} if extensions is not None else None
    include = set(include) if include is not None else None
    found: list[Path] = []
    for root, dirs, files in os.walk(path):
        here = Path(root)
        if here == path and include is not None:
            dirs[:] = [d for d in dirs if d in include]
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [here / f for f in sorted(files)
                  if not f.startswith(".") and (exts is None or Path(f).suffix.lower() in exts)]
        if not recurse:
            break
    return found
