"""Download archives (progress, retries, resume, checksums) and extract them safely into the cache.

`untar_data(URLs.MNIST_SAMPLE)` is the course's entry point: it returns a `DeftlyPath` (with `.ls()`)
to `<data dir>/mnist_sample`, downloading `<DEFTLY_HOME>/archive/mnist_sample.tgz` only when needed.
Extraction rejects absolute paths, `..`, links leading outside and special files, and happens in a
temporary folder that is renamed into place only when everything succeeded.
"""
from __future__ import annotations

import http.client
import os
import posixpath
import shutil
import socket
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from deftly.core.errors import DataError
from deftly.core.paths import DeftlyPath, data_dir, deftly_home, file_sha256
from deftly.datasets.urls import URLs, archive_url, url_name

__all__ = ["download_url", "untar_data", "extract_archive", "file_sha256"]

_USER_AGENT = "deftly-download/1"


# ----------------------------------------------------------------------------------------- progress


class _Progress:
    """A tqdm bar on a terminal, a few plain lines otherwise, nothing when disabled."""

    def __init__(self, url: str, total: int | None, start: int, enabled: bool):
        self.url, self.total, self.done = url, total, start
        self.bar = None
        self.enabled = enabled
        self.next_mark = 0.25
        if not enabled:
            return
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                            desc=url_name(url) or url, leave=False)
        else:
            size = f" ({total / 1e6:.1f} MB)" if total else ""
            resumed = f", resuming at {start} bytes" if start else ""
            print(f"downloading {url}{size}{resumed}", file=sys.stderr, flush=True)

    def update(self, n: int) -> None:
        """Account for n more bytes."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and self.total:
            while self.next_mark < 1 and self.done >= self.next_mark * self.total:
                print(f"  {int(self.next_mark * 100)}%", file=sys.stderr, flush=True)
                self.next_mark += 0.25

    def close(self, ok: bool) -> None:
        """Finish the bar or print the last line."""
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and ok:
            print(f"downloaded {self.url} ({self.done} bytes)", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------- download


class _Retryable(Exception):
    """A failure worth another try (connection trouble, 5xx, a short read)."""


def _content_range_start(value: str | None) -> int | None:
    """The first byte of a `Content-Range: bytes a-b/n` header, or None."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _attempt(url: str, part: Path, timeout: float, chunk_size: int, show_progress: bool) -> None:
    """One try at fetching `url` into `part`, resuming from its current size when the server agrees."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # our part is at least as long as the file: start again
            e.close()
            part.unlink()
            raise _Retryable(f"HTTP 416 for a resumed download of {url}") from e
        if e.code >= 500 or e.code in (408, 429):
            raise _Retryable(f"HTTP {e.code} {e.reason}") from e
        raise DataError(f"cannot download {url}: HTTP {e.code} {e.reason}", where=url) from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _Retryable(f"{type(e).__name__}: {getattr(e, 'reason', e)}") from e

    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if status == 206 and _content_range_start(response.headers.get("Content-Range")) == have:
            mode, start = "ab", have
        elif status == 206:  # a range we did not ask for: drop the part and start again
            part.unlink(missing_ok=True)
            raise _Retryable(f"unexpected Content-Range {response.headers.get('Content-Range')!r}")
        else:
            mode, start = "wb", 0  # the server ignored the Range header: start from scratch
        total = start + length if length is not None else None
        progress = _Progress(url, total, start, show_progress)
        ok = False
        try:
            with open(part, mode) as f:
                while True:
                    chunk = response.read(chunk_size)
                    if not chunk:
                        break
                    f.write(chunk)
                    progress.update(len(chunk))
            ok = total is None or part.stat().st_size == total
        except (OSError, http.client.HTTPException) as e:
            if isinstance(e, OSError) and not isinstance(e, (ConnectionError, socket.timeout, TimeoutError)):
                if e.filename is not None:  # a local file error (disk full, permissions): not retryable
                    raise DataError(f"cannot write {part} while downloading {url}: {e}", where=url) from e
            raise _Retryable(f"{type(e).__name__}: {e}") from e
        finally:
            progress.close(ok)
        if not ok:
            raise _Retryable(f"short read: got {part.stat().st_size} of {total} bytes")


def download_url(url: str, dest: str | os.PathLike, overwrite: bool = False, retries: int = 3,
                 timeout: float = 30.0, chunk_size: int = 1 << 20, show_progress: bool = True,
                 expected_sha256: str | None = None, backoff: float = 1.0) -> Path:
    """Download `url` to `dest` (resuming a `.part` file, retrying with backoff), verify size and
    SHA-256 when known, rename into place atomically and return `dest`."""
    dest = Path(dest)
    if dest.exists() and not overwrite:
        if expected_sha256 is None or file_sha256(dest) == expected_sha256.lower():
            return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    if overwrite and part.exists():
        part.unlink()
    last_error = "no attempt made"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            _attempt(url, part, timeout, chunk_size, show_progress)
            break
        except _Retryable as e:
            last_error = str(e)
    else:
        raise DataError(f"cannot download {url}: gave up after {retries + 1} attempts (last error: "
                        f"{last_error}); run again to resume from {part}", where=url)
    if expected_sha256 is not None:
        got = file_sha256(part)
        if got != expected_sha256.lower():
            part.unlink()
            raise DataError(f"checksum mismatch for {url}: SHA-256 {got}, expected {expected_sha256.lower()}; "
                            f"the download was deleted", where=url)
    os.replace(part, dest)
    return dest


# ---------------------------------------------------------------------------------------- extraction


def _check_name(archive: Path, name: str) -> PurePosixPath:
    """The member name as a relative path, or DataError if it is absolute or climbs with `..`."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or posix.startswith("//"):
        raise DataError(f"unsafe archive {archive}: member {name!r} has an absolute path", where=name)
    path = PurePosixPath(posix)
    if ".." in path.parts:
        raise DataError(f"unsafe archive {archive}: member {name!r} climbs out with '..'", where=name)
    return path


def _inside(target: str) -> bool:
    """Whether a relative posix path, once normalised, stays inside the extraction root."""
    if target.startswith("/"):
        return False
    norm = posixpath.normpath(target)
    return norm != ".." and not norm.startswith("../")


def _check_tar(archive: Path, members: list[tarfile.TarInfo]) -> None:
    """Reject absolute or `..` names, links leading outside, writes through links, special files."""
    links: set[PurePosixPath] = set()
    for m in members:
        path = _check_name(archive, m.name)
        for parent in list(path.parents)[:-1]:
            if parent in links:
                raise DataError(f"unsafe archive {archive}: member {m.name!r} is written through the link "
                                f"{str(parent)!r}", where=m.name)
        if m.issym():
            target = posixpath.join(str(path.parent), m.linkname.replace("\\", "/"))
            if m.linkname.startswith(("/", "\\")) or not _inside(target):
                raise DataError(f"unsafe archive {archive}: symlink {m.name!r} points outside "
                                f"({m.linkname!r})", where=m.name)
            links.add(path)
        elif m.islnk():
            if m.linkname.startswith(("/", "\\")) or not _inside(m.linkname.replace("\\", "/")):
                raise DataError(f"unsafe archive {archive}: hard link {m.name!r} points outside "
                                f"({m.linkname!r})", where=m.name)
            links.add(path)
        elif not (m.isreg() or m.isdir()):
            raise DataError(f"unsafe archive {archive}: member {m.name!r} is a device, fifo or other special "
                            f"file", where=m.name)


def _extract_tar(archive: Path, into: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()  # reads the whole archive: a truncated one fails here
            _check_tar(archive, members)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(into, members=members, filter="data")
            else:  # older Pythons: our own checks above are the guard
                tar.extractall(into, members=members)
    except tarfile.TarError as e:  # includes FilterError from the 'data' filter
        raise DataError(f"cannot extract {archive}: {type(e).__name__}: {e} (corrupt, truncated or unsafe "
                        f"archive)", where=str(archive)) from e
    except (EOFError, zlib.error, OSError) as e:
        if isinstance(e, OSError) and e.filename is not None and str(e.filename).startswith(str(into)):
            raise
        raise DataError(f"cannot extract {archive}: {type(e).__name__}: {e} (corrupt or truncated archive)",
                        where=str(archive)) from e


def _extract_zip(archive: Path, into: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_name(archive, info.filename)
                kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip records no file type
                if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                    raise DataError(f"unsafe archive {archive}: member {info.filename!r} is a link or special "
                                    f"file", where=info.filename)
            zf.extractall(into, members=infos)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise DataError(f"cannot extract {archive}: {type(e).__name__}: {e} (corrupt or truncated archive)",
                        where=str(archive)) from e


def _check_extracted(archive: Path, root: Path) -> None:
    """After extraction, every link must still resolve inside `root`."""
    real_root = os.path.realpath(root)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                real = os.path.realpath(path)
                if os.path.commonpath([real_root, real]) != real_root:
                    raise DataError(f"unsafe archive {archive}: link {os.path.relpath(path, root)!r} leads "
                                    f"outside", where=os.path.relpath(path, root))


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike) -> DeftlyPath:
    """Safely extract a .tgz/.tar.gz/.tar/.zip `archive` so its contents end up in folder `dest`.

    An archive holding one top folder named like `dest` (the fastai layout) gives that folder; any
    other layout is extracted into `dest` as is. Work happens in a temporary folder next to `dest`,
    renamed into place (replacing an old `dest`) only when everything succeeded.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DataError(f"archive {archive} does not exist", where=str(archive))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extracting", dir=dest.parent))
    try:
        name = archive.name.lower()
        if name.endswith(".zip") or (not name.endswith((".tgz", ".tar.gz", ".tar")) and zipfile.is_zipfile(archive)):
            _extract_zip(archive, tmp)
        else:
            _extract_tar(archive, tmp)
        _check_extracted(archive, tmp)
        entries = list(tmp.iterdir())
        source = entries[0] if len(entries) == 1 and entries[0].is_dir() and entries[0].name == dest.name else tmp
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.exists():
            shutil.rmtree(dest)
        os.replace(source, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return DeftlyPath(dest)


# ---------------------------------------------------------------------------------------- untar_data


def offline() -> bool:
    """True when DEFTLY_OFFLINE=1: course datasets that deftly bundles a small stand-in for use it."""
    return os.environ.get("DEFTLY_OFFLINE", "") not in ("", "0")


def _bundled(url: str) -> Path | None:
    """The bundled stand-in archive for one of the course's own URLs (MNIST_TINY, MNIST_SAMPLE,
    PETS, PLANET_TINY), or None. Matched on the whole URL, so another server's `mnist_tiny` is
    downloaded."""
    from deftly.datasets.bundled import bundled_archive

    if url.rstrip("/") not in (URLs.MNIST_TINY, URLs.MNIST_SAMPLE, URLs.PETS, URLs.PLANET_TINY):
        return None
    return bundled_archive(url)


def untar_data(url: str, fname: str | os.PathLike | None = None, dest: str | os.PathLike | None = None,
               force_download: bool = False, data: bool = True, checksums: dict[str, str] | None = None,
               show_progress: bool = True) -> DeftlyPath:
    """Download (if needed) and extract the archive of `url`; return the path of its folder.

    The folder is `<dest or data dir>/<last component of url>` (models go under
    `<DEFTLY_HOME>/models` when `data=False`); the archive is kept as `fname`, by default
    `<DEFTLY_HOME>/archive/<name>.tgz`. An existing folder is reused unless `force_download`.
    `checksums` (URL -> SHA-256) adds to `URLs.checksums`. For MNIST_TINY, MNIST_SAMPLE, PETS
    and PLANET_TINY, deftly bundles small real stand-ins: used at once when DEFTLY_OFFLINE=1, and
    with a warning when the download fails.
    """
    url = str(url)
    name = url_name(url)
    if not name:
        raise DataError(f"cannot tell a dataset name from the URL {url!r}", where=url)
    if dest is not None:
        base = Path(dest).expanduser()
    elif data:
        base = data_dir()
    else:
        base = deftly_home() / "models"
    folder = DeftlyPath(base / name)
    if folder.exists() and not force_download:
        return folder

    bundled = _bundled(url)
    if bundled is not None and offline():
        return extract_archive(bundled, folder)

    remote = archive_url(url)
    known = {**URLs.checksums, **(checksums or {})}
    sha = known.get(url) or known.get(remote)
    if fname is None:
        fname = deftly_home() / "archive" / remote.rsplit("/", 1)[-1].split("?", 1)[0]
    fname = Path(fname).expanduser()
    try:
        download_url(remote, fname, overwrite=force_download, show_progress=show_progress, expected_sha256=sha)
    except DataError as e:
        if bundled is None:
            raise
        warnings.warn(f"{e}; using deftly's bundled stand-in for {name} instead (see "
                      "deftly/datasets/samples/SAMPLES.md; set DEFTLY_OFFLINE=1 to skip the download)",
                      stacklevel=2)
        return extract_archive(bundled, folder)
    return extract_archive(fname, folder)
