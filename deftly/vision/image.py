"""Images as the course uses them: `open_image`, the `Image` type, `get_image_files`.

An `Image` holds a float tensor (C, H, W) with values in [0, 1], as fastai v1's `Image.data`.
"""
from __future__ import annotations

import io
import mimetypes
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import Tensor

from deftly.core.errors import ConfigError, DataError
from deftly.core.paths import get_files
from deftly.vision.jpeg import decode_rgb

#: File extensions treated as images (everything mimetypes maps to image/*).
image_extensions: set[str] = {ext for ext, kind in mimetypes.types_map.items() if kind.startswith("image/")}


def pil2tensor(image: PIL.Image.Image, dtype: torch.dtype = torch.float32) -> Tensor:
    """A PIL image as a (C, H, W) tensor of raw values (0-255 for 8-bit images)."""
    a = np.array(image)  # a writable copy: torch shares its memory
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).to(dtype)


def image2np(t: Tensor) -> np.ndarray:
    """A (C, H, W) tensor as an (H, W, C) numpy array, or (H, W) for one channel (for plotting)."""
    a = t.detach().cpu().permute(1, 2, 0).numpy()
    return a[..., 0] if a.shape[2] == 1 else a


class Image:
    """An image: `data` is a float tensor (C, H, W) in [0, 1]."""

    def __init__(self, data: Tensor):
        if data.ndim != 3:
            raise DataError(f"an Image needs a (C, H, W) tensor, got shape {tuple(data.shape)}")
        self.data = data

    @property
    def px(self) -> Tensor:
        """The pixel tensor (v1 name)."""
        return self.data

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width)."""
        return tuple(self.data.shape)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width), as v1."""
        return tuple(self.data.shape[1:])

    def resize(self, size: int | tuple[int, int]) -> "Image":
        """A resized copy (bilinear with antialiasing); `size` is an int for a square or (h, w)."""
        if isinstance(size, int):
            size = (size, size)
        if len(size) == 3:  # v1 accepted (C, H, W)
            size = size[1:]
        out = F.interpolate(self.data[None].float(), size=tuple(size), mode="bilinear", antialias=True,
                            align_corners=False)[0]
        return Image(out.clamp(0, 1))

    def to_pil(self) -> PIL.Image.Image:
        """As a PIL image (8 bits per channel)."""
        a = (image2np(self.data).clip(0, 1) * 255).round().astype(np.uint8)
        return PIL.Image.fromarray(a)

    def save(self, fn: str | os.PathLike) -> None:
        """Write to a file; the format follows the extension."""
        self.to_pil().save(fn)

    def show(self, ax: Any = None, figsize: tuple[int, int] = (3, 3), title: str | None = None,
             hide_axis: bool = True, cmap: str | None = None, **kwargs: Any) -> Any:
        """Draw with matplotlib on `ax` (a new figure if None); returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=figsize)
        if cmap is None and self.data.shape[0] == 1:
            from deftly.core.device import defaults
            cmap = defaults.cmap
        ax.imshow(image2np(self.data.clamp(0, 1)), cmap=cmap, **kwargs)
        if hide_axis:
            ax.axis("off")
        if title is not None:
            ax.set_title(title)
        return ax

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.to_pil().save(buffer, format="PNG")
        return buffer.getvalue()

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.shape}"


def read_pil(fn: str | os.PathLike | bytes | io.BytesIO, convert_mode: str = "RGB",
             draft: tuple[int, int] | None = None, pixels_only: bool = False) -> PIL.Image.Image:
    """Decode an image file (or bytes) into a loaded PIL image of `convert_mode`.

    16-bit and 32-bit greyscale are scaled to 8 bits (PIL would clip them); CMYK, palette and RGBA
    images convert as PIL does. `draft` (w, h) lets JPEGs decode at a reduced scale that is still at
    least that large (much faster when the target is small). `pixels_only=True` (what the data
    loaders ask for) lets most JPEGs be decoded by simplejpeg: PIL's pixels at half the cost, but
    without PIL's `format` and metadata (EXIF, ICC profile). Unreadable input raises DataError
    naming the file.
    """
    name = "<bytes>" if isinstance(fn, (bytes, io.BytesIO)) else str(fn)
    if draft is not None and min(draft) <= 0:
        raise ConfigError(f"draft must be a positive (width, height), got {draft}")
    source = io.BytesIO(fn) if isinstance(fn, bytes) else fn
    try:
        data = _jpeg_bytes(fn) if pixels_only and convert_mode == "RGB" else None
        if data is not None:
            fast = decode_rgb(data, draft)  # most JPEGs; None for the others, which PIL reads
            if fast is not None:
                return fast
        with PIL.Image.open(source) as im:
            if draft is not None and im.format in ("JPEG", "MPO"):  # MPO: JPEG frames (phone photos)
                im.draft("RGB" if convert_mode == "RGB" else None, draft)
            if im.mode.startswith("I") or im.mode == "F":
                im = to_8bit(im)
            if im.mode == convert_mode:
                im.load()  # decode now, while the file is open
                return im
            return im.convert(convert_mode)
    except FileNotFoundError as e:
        raise DataError("no such image file", where=name) from e
    except (PIL.UnidentifiedImageError, OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError) as e:
        raise DataError(f"cannot read an image ({e})", where=name) from e


def _jpeg_bytes(fn: Any) -> bytes | None:
    """The whole of `fn` (bytes or a file name) when it starts like a JPEG, else None after
    reading two bytes (PIL then opens the file itself)."""
    if isinstance(fn, bytes):
        return fn if fn[:2] == b"\xff\xd8" else None
    if not isinstance(fn, (str, os.PathLike)):
        return None
    with open(fn, "rb") as f:
        head = f.read(2)
        return head + f.read() if head == b"\xff\xd8" else None


def to_8bit(im: PIL.Image.Image) -> PIL.Image.Image:
    """A 16/32-bit or float greyscale image as 8-bit 'L', scaled by its bit depth, not clipped.

    16-bit values v become round(v / 257) (65535 -> 255); 32-bit integer images whose values
    exceed 255 are read as 16-bit ones (clipped to 0..65535 first); floats in [0, 1] are scaled
    by 255. Integer images are converted with integer arithmetic and in-place steps, so a large
    16-bit PNG costs about 7 bytes a pixel on top of PIL's own buffer, not float64 temporaries.
    """
    a = np.asarray(im)
    if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) > 255):
        return PIL.Image.fromarray(_scale_16bit(a), mode="L")
    if im.mode == "F":
        f = a.astype(np.float64)  # one copy, then in place: the same rounding as before
        if f.max(initial=0) <= 1.0:
            f *= 255.0
        np.rint(f, out=f)
        return PIL.Image.fromarray(np.clip(f, 0, 255, out=f).astype(np.uint8), mode="L")
    return PIL.Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), mode="L")


def _scale_16bit(a: np.ndarray) -> np.ndarray:
    """16-bit values (any integer dtype; out-of-range ones clipped to 0..65535) as uint8
    round(v / 257), computed exactly in integers: (v + 128) // 257 (v / 257 is never a tie)."""
    wide = a.astype(np.uint32) if a.dtype.kind == "u" and a.dtype.itemsize <= 2 else np.clip(a, 0, 65535)
    if wide.dtype.itemsize < 4:  # room for v + 128
        wide = wide.astype(np.uint32)
    wide += 128
    wide //= 257
    return wide.astype(np.uint8)


def open_image(fn: str | os.PathLike | bytes | io.BytesIO, convert_mode: str = "RGB", div: bool = True,
               cls: type = Image) -> Image:
    """Open an image file (or bytes) as an `Image`; `convert_mode` is PIL's ('RGB', 'L', ...).

    Unreadable or non-image input raises DataError naming the file.
    """
    t = pil2tensor(read_pil(fn, convert_mode, pixels_only=True))
    return cls(t.div_(255) if div else t)


def get_image_files(path: str | os.PathLike, recurse: bool = False, extensions: Iterable[str] | None = None,
                    include: Iterable[str] | None = None) -> list[Path]:
    """Image files under `path` (v1: `get_image_files(path)`), sorted."""
    return get_files(path, image_extensions if extensions is None else extensions, recurse, include)
