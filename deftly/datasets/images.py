"""Lesson 2's dataset tooling: `download_images` (a list of image URLs to a folder of numbered,
decodable images) and `verify_images` (find and delete unreadable files, shrink large ones, fix the
number of channels).

    download_images(path/'urls_black.txt', path/'black', max_pics=200)
    verify_images(path/'black', delete=True, max_size=500)

Both run in threads (`max_workers=0` runs one file at a time and shows each error as it happens),
show a count bar on a terminal and a few plain lines in a log (silenced with `show_progress=False`,
`defaults.progress = False` or DEFTLY_PROGRESS=0), and return what they did.
"""
from __future__ import annotations

import http.client
import io
import os
import re
import secrets
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

import PIL.Image

from deftly.core.device import defaults
from deftly.core.errors import ConfigError, DataError
from deftly.core.paths import get_files

__all__ = ["DownloadResult", "VerifyResult", "download_images", "read_urls", "resize_to", "verify_images"]

_USER_AGENT = "Mozilla/5.0 (compatible; deftly-download-images/1)"
#: the extension a file gets for each format PIL decodes
_FORMAT_EXT = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif",
               "ICO": ".ico", "PPM": ".ppm", "MPO": ".jpg"}
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}

T = TypeVar("T")
R = TypeVar("R")


# ------------------------------------------------------------------------------------------ progress


class _CountProgress:
    """A count bar for files: tqdm on a terminal, a line at each quarter in a log, or nothing."""

    def __init__(self, total: int, label: str, enabled: bool, stream=None):
        self.total, self.label, self.enabled, self.done = total, label, enabled and total > 0, 0
        self.stream = stream or sys.stderr
        self.bar = None
        self.next_mark = 0.25
        self.start = time.perf_counter()
        if not self.enabled:
            return
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=label, leave=False, file=self.stream, dynamic_ncols=True)
        else:
            self._line(f"{label}: {total} files")

    def _line(self, text: str) -> None:
        """Write one line, above the bar when there is one."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def note(self, text: str) -> None:
        """Show one message line (above the bar on a terminal)."""
        if self.enabled:
            self._line(text)

    def update(self) -> None:
        """Account for one more file."""
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled:
            passed = None
            while self.next_mark <= 1 and self.done >= self.next_mark * self.total:
                passed, self.next_mark = self.next_mark, self.next_mark + 0.25
            if passed is not None:
                self._line(f"  {int(passed * 100)}% [{self.done}/{self.total}]")

    def close(self) -> None:
        """Finish the bar."""
        if self.bar is not None:
            self.bar.close()


def _run(fn: Callable[[T], R], items: Sequence[T], max_workers: int, progress: _CountProgress,
         on_result: Callable[[T, R], None]) -> None:
    """Apply `fn` to each item (serially when max_workers is 0, else in threads), calling
    `on_result` in this thread in completion order and counting on `progress`."""
    try:
        if max_workers <= 0:
            for item in items:
                on_result(item, fn(item))
                progress.update()
            return
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            futures = {pool.submit(fn, item): item for item in items}
            try:
                for future in as_completed(futures):
                    on_result(futures[future], future.result())
                    progress.update()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        progress.close()


# ------------------------------------------------------------------------------------------ decoding


def _describe(e: BaseException) -> str:
    """A short reason for a failure: the message, with the type when the message alone is vague."""
    text = str(e).strip()
    if isinstance(e, PIL.UnidentifiedImageError):
        return "not an image (PIL cannot identify it)"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return f"timed out ({text or 'no answer'})"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _decode(source: str | os.PathLike | io.BytesIO, max_pixels: int | None) -> tuple[PIL.Image.Image, list[str]]:
    """Open and fully decode an image (so truncated files fail here), refusing more than
    `max_pixels` pixels before decoding; returns the image and PIL's warnings as text."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        im = PIL.Image.open(source)
        try:
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise DataError(f"{w}x{h} pixels is over the limit of {max_pixels} (a decompression bomb?)")
            im.load()
        except BaseException:
            im.close()
            raise
    notes = [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]
    bomb = [n for n in notes if "decompression bomb" in n.lower()]
    if bomb and max_pixels is not None:
        im.close()
        raise DataError(bomb[0])
    return im, notes


# ------------------------------------------------------------------------------------------ download


@dataclass
class DownloadResult:
    """What `download_images` did: the files saved and the URLs that failed, with why."""

    dest: Path
    saved: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.saved)

    def __repr__(self) -> str:
        return f"DownloadResult({len(self.saved)} saved in {self.dest}, {len(self.failed)} failed)"


class _Retryable(Exception):
    """A failure worth another try: a timeout, a dropped connection, a 5xx, 408 or 429."""


def read_urls(urls: str | os.PathLike | Iterable[str], max_pics: int | None = None) -> list[str]:
    """The URLs of a text file (one a line, as the course's urls.txt) or of a list: stripped, blank
    lines, `#` comments and repeats left out, at most `max_pics` of them."""
    if isinstance(urls, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", urls.strip()):
        lines: Iterable[str] = [urls]
    elif isinstance(urls, (str, os.PathLike)):
        file = Path(urls)
        if not file.is_file():
            raise DataError("no such file of URLs", where=str(file))
        lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
    else:
        lines = urls
    out: list[str] = []
    seen: set[str] = set()
    for line in lines:
        url = str(line).strip()
        if not url or url.startswith("#") or url in seen:
            continue
        seen.add(url)
        out.append(url)
        if max_pics is not None and len(out) >= max_pics:
            break
    return out


def _fetch(url: str, timeout: float, max_bytes: int) -> bytes:
    """The body of one GET (at most `max_bytes`); retryable failures raise _Retryable."""
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DataError(f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, "Accept": "image/*,*/*;q=0.5"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise DataError(f"{int(length)} bytes is over the limit of {max_bytes}")
            body = response.read(max_bytes + 1)
            if len(body) > max_bytes:
                raise DataError(f"more than the limit of {max_bytes} bytes")
            if length and length.isdigit() and len(body) < int(length):
                raise _Retryable(f"short read: {len(body)} of {length} bytes")
            return body
    except urllib.error.HTTPError as e:
        e.close()
        if e.code >= 500 or e.code in (408, 429):
            raise _Retryable(f"HTTP {e.code} {e.reason}") from e
        raise DataError(f"HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise _Retryable(f"timed out after {timeout} s") from e
        raise _Retryable(f"cannot connect ({reason})") from e
    except (socket.timeout, TimeoutError) as e:
        raise _Retryable(f"timed out after {timeout} s") from e
    except (ConnectionError, http.client.HTTPException, OSError) as e:
        raise _Retryable(_describe(e)) from e


def _image_suffix(im: PIL.Image.Image, url: str) -> str:
    """The extension for a decoded image: from its format, else from the URL, else `.jpg`."""
    if im.format in _FORMAT_EXT:
        return _FORMAT_EXT[im.format]
    suffix = Path(urllib.parse.urlparse(url).path).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{2,5}", suffix) else ".jpg"


def _write_atomic(data: bytes, dest: Path) -> None:
    """Write `data` to `dest` through a temporary file in the same folder, then rename it."""
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)  # umask applies
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _download_one(url: str, index: int, dest: Path, timeout: float, retries: int, max_bytes: int,
                  max_pixels: int | None) -> Path:
    """Download one URL as `dest/<index:08d><ext>` after checking that it decodes as an image."""
    error: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(0.25 * 2 ** (attempt - 1), 2.0))
        try:
            body = _fetch(url, timeout, max_bytes)
            break
        except _Retryable as e:
            error = e
    else:
        raise DataError(f"{error} (gave up after {retries + 1} attempt{'s' if retries else ''})")
    if not body:
        raise DataError("empty response")
    try:
        im, _ = _decode(io.BytesIO(body), max_pixels)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001  (any decoding failure means: not an image we can use)
        start = body[:200].lstrip().lower()
        if start.startswith((b"<!doctype html", b"<html", b"<?xml", b"{")):
            raise DataError("a web page or text, not an image") from e
        raise DataError(f"not a readable image ({_describe(e)})") from e
    with im:
        target = dest / f"{index:08d}{_image_suffix(im, url)}"
    _write_atomic(body, target)
    return target


def download_images(urls: str | os.PathLike | Iterable[str], dest: str | os.PathLike, max_pics: int = 1000,
                    max_workers: int = 8, timeout: float = 4, retries: int = 2, max_bytes: int = 20 << 20,
                    max_pixels: int | None = PIL.Image.MAX_IMAGE_PIXELS,
                    show_progress: bool | None = None) -> DownloadResult:
    """Download the images listed in `urls` (a text file with one URL a line, or a list) into `dest`
    as `00000000.jpg`, `00000001.png`, ... (numbered by position in the list, extension from the
    decoded format), at most `max_pics`. Each URL is tried `1 + retries` times on timeouts and
    server errors; what does not decode as an image (an HTML page, a corrupt file, more than
    `max_pixels` pixels, more than `max_bytes` bytes) is not saved. `max_workers` threads fetch in
    parallel; `max_workers=0` fetches one at a time and prints each error to stderr."""
    if max_pics is not None and max_pics < 0:
        raise ConfigError(f"max_pics must be >= 0, got {max_pics}")
    if timeout is None or timeout <= 0:
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    todo = read_urls(urls, max_pics)
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise DataError("the destination exists and is not a folder", where=str(dest))
    dest.mkdir(parents=True, exist_ok=True)
    result = DownloadResult(dest)
    enabled = defaults.progress if show_progress is None else show_progress
    progress = _CountProgress(len(todo), f"downloading images to {dest}", enabled)
    serial = max_workers <= 0

    def one(item: tuple[int, str]) -> Path | str:
        """Download one numbered URL: the saved file, or why not."""
        i, url = item
        try:
            return _download_one(url, i, dest, timeout, retries, max_bytes, max_pixels)
        except Exception as e:  # noqa: BLE001  (one bad URL must not stop the others)
            return str(e) if isinstance(e, DataError) else _describe(e)

    def done(item: tuple[int, str], outcome: Path | str) -> None:
        """Record one outcome (in the calling thread)."""
        if isinstance(outcome, Path):
            result.saved.append(outcome)
            return
        result.failed.append((item[1], outcome))
        if serial:  # the course's advice: max_workers=0 to see what goes wrong
            print(f"Error {item[1]}: {outcome}", file=sys.stderr, flush=True)
        else:
            progress.note(f"skipped {item[1]}: {outcome}")

    _run(one, list(enumerate(todo)), max_workers, progress, done)
    result.saved.sort()
    order = {u: i for i, u in enumerate(todo)}
    result.failed.sort(key=lambda f: order[f[0]])
    if enabled:
        print(f"{len(result.saved)} of {len(todo)} images saved in {dest}"
              + (f" ({len(result.failed)} skipped)" if result.failed else ""), file=sys.stderr, flush=True)
    return result


# ------------------------------------------------------------------------------------------ verify


@dataclass
class VerifyResult:
    """What `verify_images` found and did: unreadable files (with why), which were deleted, and the
    files it wrote (resized or converted)."""

    checked: int = 0
    bad: list[tuple[Path, str]] = field(default_factory=list)
    deleted: list[Path] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every unreadable file found was deleted and every rewrite succeeded."""
        return len(self.deleted) == len(self.bad) and not self.failed

    def __repr__(self) -> str:
        return (f"VerifyResult(checked={self.checked}, bad={len(self.bad)}, deleted={len(self.deleted)}, "
                f"written={len(self.written)}, failed={len(self.failed)})")


def resize_to(img: PIL.Image.Image, targ_sz: int, use_min: bool = False) -> tuple[int, int]:
    """The (width, height) that makes the larger side of `img` (the smaller with `use_min`) `targ_sz`,
    keeping the aspect ratio."""
    w, h = img.size
    ratio = targ_sz / (min(w, h) if use_min else max(w, h))
    return max(1, round(w * ratio)), max(1, round(h * ratio))


def _resample(interp: int | str) -> int:
    """A PIL resampling filter from its constant or its name ('bilinear', 'lanczos', ...)."""
    if isinstance(interp, str):
        try:
            return int(PIL.Image.Resampling[interp.upper()])
        except KeyError:
            names = [r.name.lower() for r in PIL.Image.Resampling]
            raise ConfigError(f"unknown interpolation {interp!r}; one of {names}") from None
    return int(interp)


def _to_channels(im: PIL.Image.Image, n_channels: int) -> PIL.Image.Image:
    """`im` with `n_channels` channels: 16-bit and float greyscale scaled to 8 bits, transparency
    composited on white when the alpha channel goes, CMYK and palettes converted."""
    if im.mode.startswith("I") or im.mode == "F":
        from deftly.vision.image import to_8bit  # the application's 16-bit/float scaling

        im = to_8bit(im)
    target = _MODES[n_channels]
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") and "A" not in target:
        rgba = im.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = PIL.Image.alpha_composite(background, rgba)
    return im if im.mode == target else im.convert(target)


def _save_format(dest: Path, original: str | None, img_format: str | None) -> str:
    """The PIL format to save `dest` in: `img_format`, else the one its extension names, else the original."""
    if img_format:
        return img_format
    fmt = PIL.Image.registered_extensions().get(dest.suffix.lower())
    if fmt is None and original is None:
        raise DataError(f"cannot tell which image format {dest.suffix!r} is: pass img_format", where=str(dest))
    return fmt or original


def _inside(file: Path, root: Path) -> bool:
    """True when `file` (not following a final symlink) lies under the folder `root`."""
    try:
        Path(os.path.abspath(file)).relative_to(os.path.abspath(root))
        return True
    except ValueError:
        return False


def _verify_one(file: Path, dest: Path, in_place: bool, max_size: int | None, n_channels: int | None,
                interp: int, ext: str | None, img_format: str | None, resume: bool, max_pixels: int | None,
                save_kwargs: dict) -> tuple[str, str | Path | None]:
    """Check one file: ('bad', reason), ('written', new file) or ('ok', None)."""
    try:
        im, _ = _decode(file, max_pixels)
    except Exception as e:  # noqa: BLE001  (every way of failing to decode makes the file bad)
        if isinstance(e, FileNotFoundError):
            return "bad", "no such file"
        return "bad", str(e) if isinstance(e, DataError) else _describe(e)
    with im:
        too_big = max_size is not None and max(im.size) > max_size
        channels = len(im.getbands())
        wrong_mode = n_channels is not None and (channels != n_channels or im.mode != _MODES[n_channels])
        if not (too_big or wrong_mode):
            return "ok", None
        target = dest / file.name
        if ext is not None:
            target = target.with_suffix(ext)
        if resume and not in_place and target.exists():
            return "ok", None
        if in_place and target != file and target.exists():
            raise DataError(f"its converted copy {target.name} would replace another file")
        out = im
        if too_big:
            out = out.resize(resize_to(out, max_size), resample=interp)
        if n_channels is not None:
            out = _to_channels(out, n_channels)
        fmt = _save_format(target, im.format, img_format)
        if fmt == "JPEG" and out.mode not in ("L", "RGB", "CMYK"):
            out = _to_channels(out, 3)
        if fmt == "JPEG":
            save_kwargs = {"quality": 90, **save_kwargs}
        buffer = io.BytesIO()
        out.save(buffer, fmt, **save_kwargs)
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(buffer.getvalue(), target)
    if in_place and target != file:
        file.unlink(missing_ok=True)  # replaced by its converted copy under the new extension
    return "written", target


def verify_images(path: str | os.PathLike, delete: bool = True, max_workers: int = 4, max_size: int | None = None,
                  recurse: bool = False, dest: str | os.PathLike = ".", n_channels: int | None = 3,
                  interp: int | str = PIL.Image.Resampling.BILINEAR, ext: str | None = None,
                  img_format: str | None = None, resume: bool | None = None,
                  max_pixels: int | None = PIL.Image.MAX_IMAGE_PIXELS, show_progress: bool | None = None,
                  **kwargs) -> VerifyResult:
    """Check that every image file in `path` (and its sub-folders with `recurse`) decodes completely;
    report the ones that do not and, with `delete`, delete them (never a file outside `path`).
    Images larger than `max_size` on their longer side are resized keeping their aspect ratio, and
    images without `n_channels` channels (1, 3 or 4; None keeps them) are converted; the result is
    written to `dest` (relative to `path`; '.' rewrites the file in place) with extension `ext` and
    format `img_format` if given, `kwargs` going to PIL's `save` (e.g. quality=90). `resume` skips
    files already in a separate `dest` (the default when `dest` is not '.')."""
    path = Path(path)
    if not path.is_dir():
        raise DataError("not a folder", where=str(path))
    if max_size is not None and max_size < 1:
        raise ConfigError(f"max_size must be a positive number of pixels, got {max_size}")
    if n_channels is not None and n_channels not in _MODES:
        raise ConfigError(f"n_channels must be 1, 3 or 4 (or None to keep them), got {n_channels}")
    if ext is not None and not ext.startswith("."):
        ext = "." + ext
    resample = _resample(interp)
    out_dir = path / Path(dest)
    in_place = os.path.abspath(out_dir) == os.path.abspath(path)
    if resume is None:
        resume = not in_place
    from deftly.vision.image import image_extensions  # the application's list of image file types

    files = get_files(path, image_extensions, recurse=recurse)
    if not in_place:
        out_dir.mkdir(parents=True, exist_ok=True)
        files = [f for f in files if not _inside(f, out_dir)]  # a dest inside path is output, not input
    result = VerifyResult(checked=len(files))
    enabled = defaults.progress if show_progress is None else show_progress
    progress = _CountProgress(len(files), f"verifying images in {path}", enabled)
    serial = max_workers <= 0

    def one(file: Path) -> tuple[str, str | Path | None]:
        """Check one file: what `_verify_one` says, or ('error', why) when rewriting it failed."""
        try:
            here = out_dir if in_place else out_dir / file.parent.relative_to(path)
            return _verify_one(file, here, in_place, max_size, n_channels, resample, ext, img_format, resume,
                               max_pixels, kwargs)
        except Exception as e:  # noqa: BLE001  (a file that cannot be rewritten is reported, not fatal)
            return "error", str(e) if isinstance(e, DataError) else _describe(e)

    def done(file: Path, outcome: tuple[str, str | Path | None]) -> None:
        """Record one outcome and delete a bad file (in the calling thread)."""
        kind, detail = outcome
        if kind == "written":
            result.written.append(detail)
            return
        if kind == "ok":
            return
        if kind == "error":
            result.failed.append((file, detail))
            message = f"cannot rewrite {file}: {detail}"
        else:
            result.bad.append((file, detail))
            message = f"cannot read image {file}: {detail}"
            if delete and _inside(file, path):
                try:
                    file.unlink()
                    result.deleted.append(file)
                    message += " (deleted)"
                except OSError as e:
                    message += f" (could not delete it: {e.strerror or e})"
        if serial:
            print(message, file=sys.stderr, flush=True)
        else:
            progress.note(message)

    _run(one, files, max_workers, progress, done)
    result.bad.sort()
    result.deleted.sort()
    result.written.sort()
    result.failed.sort()
    return result
