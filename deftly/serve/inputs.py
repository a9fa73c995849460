"""What the web app accepts as an image, checked before any pixel is decoded.

- `check_image`: the bytes must be an image of a common format (JPEG, PNG, GIF, WebP, BMP, TIFF)
  whose header says at most `max_pixels` pixels, so a small file that would decode into gigabytes
  (a decompression bomb) is refused from its header alone. Only these formats are tried: PIL's
  other plugins (EPS through Ghostscript, for one) are never reached by a request.

It raises `RequestError`, which carries the HTTP status of the JSON error the app answers with (and
which `deftly.serve.fetch`, the fetching of image URLs, raises too).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import PIL.Image

from deftly.core.errors import DataError

__all__ = ["IMAGE_FORMATS", "ImageInfo", "RequestError", "check_image"]

#: the image formats a request may send (PIL's names); everything else is refused unopened
IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")  # JPEG includes phones' MPO


class RequestError(DataError):
    """A request the web app refuses; `status` is the HTTP status of its JSON answer (4xx)."""

    def __init__(self, message: str, status: int = 400):
        self.status = status
        super().__init__(message)


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
    except Exception as e:  # a header PIL recognised but cannot read (fuzzed files raise all sorts of errors)
        raise RequestError(f"{name} is not a readable image ({type(e).__name__}: {e})") from e
    pixels = info.width * info.height
    if pixels < 1:
        raise RequestError(f"{name} is an image of {info.width}x{info.height} pixels; expected at least one")
    if pixels > max_pixels:
        raise RequestError(f"{name} is {info.width}x{info.height} pixels ({_megapixels(pixels)}), over the limit "
                           f"of {_megapixels(max_pixels)} (a guard against decompression bombs)", status=413)
    return info
