"""Where deftly keeps downloaded data and models: `$DEFTLY_HOME` (default `~/.deftly`)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


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
        """The entries of this folder, sorted by name (the course's `path.ls()`)."""
        return sorted(self.iterdir())


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks (checks downloads, fetched packages, bundled samples)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
