"""What the web app accepts as an image, checked before any pixel is decoded.

- `check_image`: the bytes must be an image of a common format (JPEG, PNG, GIF, WebP, BMP, TIFF)
  whose header says at most `max_pixels` pixels, so a small file that would decode into gigabytes
  (a decompression bomb) is refused from its header alone. Only these formats are tried: PIL's
  other plugins (EPS through Ghostscript, for one) are never reached by a request.
- `fetch_image_url`: an http(s) URL's body, at most `max_bytes` bytes within `timeout` seconds.
  Unless `allow_local`, a host that resolves to a loopback, private, link-local or otherwise
  non-public address is refused, and so is every redirect to one, so a request cannot make the
  server read its own network. (The address is checked when the URL is resolved; a DNS answer that
  changes between that check and the connection is not caught.)

Both raise `RequestError`, which carries the HTTP status of the JSON error the app answers with.
"""
from __future__ import annotations

import http.client
import io
import ipaddress
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import PIL.Image

from deftly.core.errors import DataError

__all__ = ["IMAGE_FORMATS", "ImageInfo", "RequestError", "check_image", "fetch_image_url"]

#: the image formats a request may send (PIL's names); everything else is refused unopened
IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")  # JPEG includes phones' MPO
#: redirects followed when fetching a URL
MAX_REDIRECTS = 5
_CHUNK = 64 * 1024


class RequestError(DataError):
    """A request the web app refuses; `status` is the HTTP status of its JSON answer (4xx)."""

    def __init__(self, message: str, status: int = 400, where: str | None = None):
        self.status = status
        super().__init__(message, where=where)


@dataclass(frozen=True)
class ImageInfo:
    """What an image's header says: PIL's format name and the size in pixels."""

    format: str
    width: int
    height: int


def _megapixels(n: int) -> str:
    return f"{n / 1e6:.3g} megapixels"


def check_image(data: bytes, max_pixels: int, name: str = "the upload") -> ImageInfo:
    """The format and size of the image in `data`, read from its header without decoding it.

    Raises RequestError: 400 when `data` is empty or not an image of IMAGE_FORMATS, 413 when the
    image has more than `max_pixels` pixels. `name` (a file name or URL) goes in the messages.
    """
    if not data:
        raise RequestError(f"{name} is empty (0 bytes); expected an image")
    try:
        with PIL.Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as im:
            info = ImageInfo(str(im.format), *im.size)
    except PIL.Image.DecompressionBombError as e:
        raise RequestError(f"{name} is too large an image to decode ({e})", status=413) from e
    except PIL.UnidentifiedImageError as e:
        start = data[:15].lstrip().lower()
        looks = " (it looks like a web page or text)" if start.startswith((b"<", b"{", b"[")) else ""
        raise RequestError(f"{name} is not an image{looks}; expected one of "
                           f"{', '.join(IMAGE_FORMATS)}") from e
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # a header PIL recognised but cannot read
        raise RequestError(f"{name} is not a readable image ({type(e).__name__}: {e})") from e
    pixels = info.width * info.height
    if pixels < 1:
        raise RequestError(f"{name} is an image of {info.width}x{info.height} pixels; expected at least one")
    if pixels > max_pixels:
        raise RequestError(f"{name} is {info.width}x{info.height} pixels ({_megapixels(pixels)}), over the limit "
                           f"of {_megapixels(max_pixels)} (a guard against decompression bombs)", status=413)
    return info


# ------------------------------------------------------------------------------------------ URLs


def _check_url(url: str, allow_local: bool) -> None:
    """RequestError (400) unless `url` is http(s) with a host that, unless `allow_local`, resolves
    only to public addresses."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise RequestError(f"not a valid URL: {url!r} ({e})") from e
    if parts.scheme.lower() not in ("http", "https"):
        raise RequestError(f"only http and https URLs can be fetched, not {url!r}")
    host = parts.hostname
    if not host:
        raise RequestError(f"the URL {url!r} has no host")
    if allow_local:
        return
    try:
        infos = socket.getaddrinfo(host, port or (443 if parts.scheme.lower() == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise RequestError(f"cannot resolve the host {host!r} of the URL ({e})") from e
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global:
            raise RequestError(f"the URL's host {host!r} is a local or private address ({address}); this server "
                               "only fetches public URLs (start it with --allow-local-urls to allow them)")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows at most MAX_REDIRECTS redirects, each to a URL that passes `_check_url`."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, allow_local: bool):
        super().__init__()
        self.allow_local = allow_local

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        _check_url(newurl, self.allow_local)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_image_url(url: str, max_bytes: int, timeout: float = 10.0, allow_local: bool = False) -> bytes:
    """The body of a GET of `url` (http or https; proxies from the environment are not used).

    Raises RequestError: 413 when the body is over `max_bytes`; 400 for anything else (a bad or
    local URL, an HTTP error, no answer within `timeout` seconds in all).
    """
    url = url.strip()
    _check_url(url, allow_local)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _CheckedRedirects(allow_local))
    request = urllib.request.Request(url, headers={"User-Agent": "deftly-serve", "Accept": "image/*"})
    deadline = time.monotonic() + timeout
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise RequestError(f"the URL's image is {int(length):,} bytes, over the limit of {max_bytes:,}",
                                   status=413)
            body = bytearray()
            while chunk := response.read(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise RequestError(f"the URL's image is over the limit of {max_bytes:,} bytes", status=413)
                if time.monotonic() > deadline:
                    raise RequestError(f"the URL took more than {timeout:g} s to send its image")
            return bytes(body)
    except urllib.error.HTTPError as e:
        e.close()
        raise RequestError(f"fetching the URL gave HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise RequestError(f"the URL did not answer within {timeout:g} s") from e
        raise RequestError(f"cannot fetch the URL ({reason})") from e
    except (socket.timeout, TimeoutError) as e:
        raise RequestError(f"the URL did not answer within {timeout:g} s") from e
    except (ConnectionError, http.client.HTTPException, OSError) as e:
        raise RequestError(f"cannot fetch the URL ({type(e).__name__}: {e})") from e
