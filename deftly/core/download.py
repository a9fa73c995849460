"""Download one URL to a file: a progress bar, retries with Range resume, an optional SHA-256 check.

Lives in the core layer because datasets (untar_data) and pretrained weights both download.
"""
from __future__ import annotations

import http.client
import os
import posixpath
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from deftly.core.errors import DataError
from deftly.core.paths import file_sha256

__all__ = ["download_url"]

_USER_AGENT = "deftly-download/1"


def _name(url: str) -> str:
    """The last path component of a URL (for the progress bar)."""
    return posixpath.basename(urllib.parse.urlparse(url).path.rstrip("/")) or url


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
                            desc=_name(url), leave=False)
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
