"""Data augmentation with fastai v1's names, run the way fastai v2 runs it on the GPU.

Three steps, in the order a batch meets them:

- `ItemResize` (per item, in DataLoader workers, on PIL images): resize, crop or pad to the
  training size, with the target (mask, image, points) moved the same way.
- `BatchAugment` (per batch, after the move to the device): every coordinate transform that fires
  for a sample (flip, dihedral, rotate, zoom, symmetric warp) is folded into ONE 3x3 projective
  matrix per sample, and the whole batch is resampled by ONE `F.grid_sample`; lighting
  (brightness, contrast) is one per-sample affine map in logit space.
- `Normalize`: per-channel standardisation, with `decode` to undo it for display.

Coordinates are grid_sample's normalised ones (align_corners=False): x (columns) and y (rows) in
[-1, 1], where -1 is the outer edge of the first pixel and +1 the outer edge of the last one. A
sampling matrix maps an output location to the input location it reads from; points therefore
move with the inverse matrix, so that they follow the pixels.
"""
from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import Tensor

from deftly.core.errors import ConfigError, DataError

__all__ = [
    "RandTransform", "AugmentParams", "ItemResize", "BatchAugment", "Normalize",
    "flip_lr", "dihedral", "dihedral_affine", "rotate", "zoom", "rand_zoom", "symmetric_warp",
    "brightness", "contrast", "crop_pad", "rand_crop", "rand_pad", "zoom_crop", "get_transforms",
    "imagenet_stats", "cifar_stats", "mnist_stats", "batch_stats",
    "pixels_to_normalized", "normalized_to_pixels",
    "TRANSFORM_KINDS", "RESIZE_METHODS", "PADDING_MODES", "Y_KINDS",
]

#: What a transform acts on: the crop/pad position (per item), the sampling coordinates (per batch,
#: affine or projective warp) or the pixel values (per batch, lighting).
TRANSFORM_KINDS: tuple[str, ...] = ("crop", "affine", "warp", "lighting")
#: How `ItemResize` reaches the target size.
RESIZE_METHODS: tuple[str, ...] = ("crop", "pad", "squish")
#: How pixels outside the image are filled (the names grid_sample uses).
PADDING_MODES: tuple[str, ...] = ("reflection", "zeros", "border")
#: Kinds of target: the first ones never move, the last three move with the image.
Y_KINDS: tuple[str | None, ...] = (None, "category", "multicategory", "float", "mask", "image", "points")
_GEOMETRIC_Y: tuple[str, ...] = ("mask", "image", "points")
_SAMPLE_MODES: tuple[str, ...] = ("bilinear", "nearest", "bicubic")
#: padding_mode -> numpy.pad mode; 'symmetric' repeats the edge pixel, as grid_sample's reflection does.
_NUMPY_PAD: dict[str, str] = {"reflection": "symmetric", "zeros": "constant", "border": "edge"}
#: The transform names BatchAugment knows, with their kinds.
_BATCH_NAMES: dict[str, str] = {
    "flip_lr": "affine", "dihedral": "affine", "rotate": "affine", "zoom": "affine",
    "symmetric_warp": "warp", "brightness": "lighting", "contrast": "lighting",
}
_CROP_NAMES: tuple[str, ...] = ("crop_pad", "pad")

Range = float | tuple[float, float]
#: logit(v / 255) of the 256 pixel levels (eps 1e-6, as BatchAugment's lighting), for lighting tables.
_LOGIT_LEVELS: np.ndarray = np.log(np.clip(np.arange(256) / 255, 1e-6, 1 - 1e-6)) - \
    np.log1p(-np.clip(np.arange(256) / 255, 1e-6, 1 - 1e-6))

imagenet_stats: tuple[list[float], list[float]] = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
cifar_stats: tuple[list[float], list[float]] = ([0.491, 0.482, 0.447], [0.247, 0.243, 0.261])
mnist_stats: tuple[list[float], list[float]] = ([0.15, 0.15, 0.15], [0.15, 0.15, 0.15])


def _check_choice(value: Any, allowed: Sequence[Any], what: str) -> None:
    """Raise ConfigError naming the allowed values when `value` is not one of them."""
    if value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}; allowed: {', '.join(repr(a) for a in allowed)}")


# ------------------------------------------------------------------------------------------------
# Transform descriptions (pure data, so they can go into an export manifest)
# ------------------------------------------------------------------------------------------------

@dataclass
class RandTransform:
    """One random transform as data: its `name`, `kind`, parameters and probability `p`.

    A parameter is a fixed number or a (low, high) range drawn uniformly for every sample.
    """

    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    p: float = 1.0

    def __post_init__(self) -> None:
        _check_choice(self.kind, TRANSFORM_KINDS, "transform kind")
        if not 0.0 <= float(self.p) <= 1.0:
            raise ConfigError(f"{self.name}: probability p must be in [0, 1], got {self.p}")
        for key, value in self.params.items():
            if isinstance(value, (tuple, list)) and len(value) != 2:
                raise ConfigError(f"{self.name}: parameter {key} must be a number or a (low, high) pair, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (ranges become lists), for export manifests."""
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in self.params.items()}
        return {"name": self.name, "kind": self.kind, "params": params, "p": float(self.p)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RandTransform":
        """Rebuild what `to_dict` wrote."""
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in d.get("params", {}).items()}
        return cls(name=d["name"], kind=d["kind"], params=params, p=float(d.get("p", 1.0)))


def flip_lr(p: float = 0.5) -> RandTransform:
    """Mirror left-right with probability p."""
    return RandTransform("flip_lr", "affine", {}, p)


def dihedral(p: float = 1.0, k: int | tuple[int, int] = (0, 7)) -> RandTransform:
    """One of the 8 flips/right-angle rotations (k: bit 0 flips x, bit 1 flips y, bit 2 transposes;
    a transpose of a non-square image stretches it to keep its shape, as in v1)."""
    return RandTransform("dihedral", "affine", {"k": k}, p)


def dihedral_affine(p: float = 1.0, k: int | tuple[int, int] = (0, 7)) -> RandTransform:
    """v1 name for `dihedral` done as an affine matrix (every dihedral transform is one here)."""
    return dihedral(p=p, k=k)


def rotate(degrees: Range = (-10.0, 10.0), p: float = 1.0) -> RandTransform:
    """Rotate by `degrees` (positive = counter-clockwise on screen, as torch.rot90)."""
    return RandTransform("rotate", "affine", {"degrees": degrees}, p)


def zoom(scale: Range = (1.0, 1.1), row_pct: Range = (0.0, 1.0), col_pct: Range = (0.0, 1.0),
         p: float = 1.0) -> RandTransform:
    """Zoom in by `scale` around a centre placed at (row_pct, col_pct) of the free room."""
    return RandTransform("zoom", "affine", {"scale": scale, "row_pct": row_pct, "col_pct": col_pct}, p)


def rand_zoom(scale: Range = (1.0, 1.1), p: float = 1.0) -> RandTransform:
    """Zoom in by a random `scale` at a random position."""
    return zoom(scale=scale, row_pct=(0.0, 1.0), col_pct=(0.0, 1.0), p=p)


def symmetric_warp(magnitude: Range = (-0.2, 0.2), p: float = 1.0) -> RandTransform:
    """Perspective warp: each edge of the view stretched symmetrically by its own draw of `magnitude`."""
    return RandTransform("symmetric_warp", "warp", {"magnitude": magnitude}, p)


def brightness(change: Range = (0.4, 0.6), p: float = 1.0) -> RandTransform:
    """Brightness: 0 gives black, 1 white, 0.5 leaves the image unchanged (added in logit space)."""
    return RandTransform("brightness", "lighting", {"change": change}, p)


def contrast(scale: Range = (0.8, 1.25), p: float = 1.0) -> RandTransform:
    """Contrast: 0 gives flat grey, 1 leaves the image unchanged (multiplied in logit space)."""
    return RandTransform("contrast", "lighting", {"scale": scale}, p)


def crop_pad(row_pct: Range = 0.5, col_pct: Range = 0.5, size: int | tuple[int, int] | None = None) -> RandTransform:
    """Where the per-item crop (or pad) sits: 0 = top/left, 0.5 = centre, 1 = bottom/right."""
    params: dict[str, Any] = {"row_pct": row_pct, "col_pct": col_pct}
    if size is not None:
        params["size"] = size
    return RandTransform("crop_pad", "crop", params, 1.0)


def rand_crop() -> RandTransform:
    """Crop at a random position (the training default)."""
    return crop_pad(row_pct=(0.0, 1.0), col_pct=(0.0, 1.0))


def rand_pad(padding: int, size: int | tuple[int, int], mode: str = "reflection") -> list[RandTransform]:
    """Pad every side by `padding` then crop `size` at a random position (v1: use as `*rand_pad(...)`)."""
    _check_choice(mode, PADDING_MODES, "padding mode")
    if padding < 0:
        raise ConfigError(f"rand_pad: padding must be >= 0, got {padding}")
    return [RandTransform("pad", "crop", {"padding": int(padding), "mode": mode}, 1.0),
            crop_pad(row_pct=(0.0, 1.0), col_pct=(0.0, 1.0), size=size)]


def zoom_crop(scale: Range, do_rand: bool = False, p: float = 1.0) -> list[RandTransform]:
    """Zoom by `scale` then crop: centred, or both at random positions with `do_rand`."""
    if do_rand:
        return [rand_zoom(scale=scale, p=p), rand_crop()]
    return [zoom(scale=scale, row_pct=0.5, col_pct=0.5, p=p), crop_pad()]


def get_transforms(do_flip: bool = True, flip_vert: bool = False, max_rotate: float = 10.0, max_zoom: float = 1.1,
                   max_lighting: float = 0.2, max_warp: float = 0.2, p_affine: float = 0.75,
                   p_lighting: float = 0.75, xtra_tfms: RandTransform | Iterable[RandTransform] | None = None,
                   ) -> tuple[list[RandTransform], list[RandTransform]]:
    """The usual (train, valid) transforms: random crop, flip, warp, rotate, zoom, lighting; a
    transform whose maximum is 0 (or 1 for zoom) is left out; valid only centre-crops."""
    if max_lighting >= 1:
        raise ConfigError(f"max_lighting must be < 1 (contrast range is 1/(1-max_lighting)), got {max_lighting}")
    train: list[RandTransform] = [rand_crop()]
    if do_flip:
        train.append(dihedral_affine() if flip_vert else flip_lr(p=0.5))
    if max_warp:
        train.append(symmetric_warp(magnitude=(-max_warp, max_warp), p=p_affine))
    if max_rotate:
        train.append(rotate(degrees=(-max_rotate, max_rotate), p=p_affine))
    if max_zoom > 1:
        train.append(rand_zoom(scale=(1.0, max_zoom), p=p_affine))
    if max_lighting:
        train.append(brightness(change=(0.5 * (1 - max_lighting), 0.5 * (1 + max_lighting)), p=p_lighting))
        train.append(contrast(scale=(1 - max_lighting, 1 / (1 - max_lighting)), p=p_lighting))
    if isinstance(xtra_tfms, RandTransform):
        xtra_tfms = [xtra_tfms]
    return train + list(xtra_tfms or []), [crop_pad()]


# ------------------------------------------------------------------------------------------------
# Points <-> normalised coordinates
# ------------------------------------------------------------------------------------------------

def pixels_to_normalized(points: Tensor, size: tuple[int, int]) -> Tensor:
    """(x, y) pixel coordinates (pixel (row r, col c) centred at (c, r)) of an image of `size` (h, w)
    as grid_sample's normalised coordinates."""
    h, w = size
    scale = points.new_tensor([2.0 / w, 2.0 / h])
    return (points.float() + 0.5) * scale - 1


def normalized_to_pixels(points: Tensor, size: tuple[int, int]) -> Tensor:
    """Inverse of `pixels_to_normalized`."""
    h, w = size
    scale = points.new_tensor([w / 2.0, h / 2.0])
    return (points.float() + 1) * scale - 0.5


# ------------------------------------------------------------------------------------------------
# Per item: resize / crop / pad on PIL images
# ------------------------------------------------------------------------------------------------

def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    """An int or (h, w) as (h, w)."""
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) == 3:  # v1 accepted (C, H, W)
        size = size[1:]
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"size must be an int or (h, w) of positive sizes, got {size!r}")
    return size


def _draw_value(spec: Range) -> float:
    """One value of a per-item parameter: fixed, or uniform over (low, high) from Python's RNG
    (seeded per DataLoader worker and by set_seed; cheaper per item than a torch draw)."""
    if isinstance(spec, (tuple, list)):
        lo, hi = spec
        return float(lo + (hi - lo) * random.random())
    return float(spec)


@dataclass
class _ResizePlan:
    """How one item is resized: a source box (fractions of the source size) resampled to `resized`
    (h, w), then `pads` (top, bottom, left, right) to reach the target size, then the rand_pad shift
    (dy, dx): a pad-then-crop that moves the content dy rows down and dx columns right."""

    box: tuple[float, float, float, float]
    resized: tuple[int, int]
    pads: tuple[int, int, int, int]
    shift: tuple[int, int]


class ItemResize:
    """Per-item resize to `size` by cropping, padding or squishing (PIL's C resampling, in workers).

    `row_pct`/`col_pct` place the crop or pad (fixed, or a (low, high) range drawn per item;
    `random_crop` means (0, 1)). `pad`/`pad_mode` add rand_pad's pad-then-crop at the same
    position. The target moves the same way (`y_kind`). JPEGs not yet loaded are decoded at a
    reduced scale (PIL's `draft`) when the target is much smaller; `convert_mode` ('RGB', 'L')
    converts after that. `lighting` (brightness and contrast transforms, each firing with its p)
    also runs here, per item, as a 256-entry lookup table on the 8-bit pixels after the resize:
    far cheaper than logit and sigmoid over a float batch, and the same map up to rounding.
    """

    def __init__(self, size: int | tuple[int, int] | None = None, resize_method: str = "crop",
                 padding_mode: str = "reflection", random_crop: bool = False, y_kind: str | None = None,
                 row_pct: Range = 0.5, col_pct: Range = 0.5, pad: int = 0, pad_mode: str | None = None,
                 convert_mode: str | None = None, lighting: Iterable[RandTransform] = ()):
        _check_choice(resize_method, RESIZE_METHODS, "resize_method")
        _check_choice(padding_mode, PADDING_MODES, "padding_mode")
        _check_choice(y_kind, Y_KINDS, "y_kind")
        if pad_mode is not None:
            _check_choice(pad_mode, PADDING_MODES, "pad_mode")
        if pad < 0:
            raise ConfigError(f"pad must be >= 0, got {pad}")
        self.size = None if size is None else _pair(size)
        self.resize_method = resize_method
        self.padding_mode = padding_mode
        self.random_crop = random_crop
        self.y_kind = y_kind
        self.row_pct: Range = (0.0, 1.0) if random_crop else row_pct
        self.col_pct: Range = (0.0, 1.0) if random_crop else col_pct
        self.pad = int(pad)
        self.pad_mode = pad_mode or padding_mode
        self.convert_mode = convert_mode
        self.lighting = list(lighting)
        for t in self.lighting:
            if t.kind != "lighting" or t.name not in _BATCH_NAMES:
                raise ConfigError(f"ItemResize lighting takes brightness and contrast transforms, got {t.name!r}")

    @classmethod
    def from_tfms(cls, tfms: Iterable[RandTransform], size: int | tuple[int, int] | None = None,
                  resize_method: str = "crop", padding_mode: str = "reflection", y_kind: str | None = None,
                  convert_mode: str | None = None, lighting: bool = False) -> "ItemResize":
        """The per-item step asked for by the 'crop' transforms of a list (crop_pad, rand_crop,
        rand_pad), and by its 'lighting' ones too when `lighting`."""
        kwargs: dict[str, Any] = {}
        tfms = list(tfms)
        if lighting:
            kwargs["lighting"] = [t for t in tfms if t.kind == "lighting"]
        for t in tfms:
            if t.kind != "crop":
                continue
            _check_choice(t.name, _CROP_NAMES, "crop transform")
            if t.name == "pad":
                kwargs["pad"], kwargs["pad_mode"] = t.params.get("padding", 0), t.params.get("mode", padding_mode)
            else:
                kwargs["row_pct"] = t.params.get("row_pct", 0.5)
                kwargs["col_pct"] = t.params.get("col_pct", 0.5)
                if size is None and t.params.get("size") is not None:
                    size = t.params["size"]
        return cls(size, resize_method=resize_method, padding_mode=padding_mode, y_kind=y_kind,
                   convert_mode=convert_mode, **kwargs)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(size={self.size}, resize_method={self.resize_method!r}, "
                f"padding_mode={self.padding_mode!r}, row_pct={self.row_pct}, col_pct={self.col_pct}, "
                f"pad={self.pad}, y_kind={self.y_kind!r}, lighting={[t.name for t in self.lighting]})")

    def _plan(self, source_size: tuple[int, int]) -> _ResizePlan:
        """Draw this item's crop/pad position and work out its resize, for a source of (h, w)."""
        h0, w0 = source_size
        th, tw = self.size or (h0, w0)
        row, col = _draw_value(self.row_pct), _draw_value(self.col_pct)
        box, resized, pads = (0.0, 0.0, 1.0, 1.0), (th, tw), (0, 0, 0, 0)
        if self.size is not None and self.resize_method == "crop":
            s = max(tw / w0, th / h0)
            bw, bh = min(w0, tw / s), min(h0, th / s)  # the box in source pixels, placed on whole pixels
            left, top = round((w0 - bw) * col), round((h0 - bh) * row)
            box = (left / w0, top / h0, (left + bw) / w0, (top + bh) / h0)
        elif self.size is not None and self.resize_method == "pad":
            s = min(tw / w0, th / h0)
            rh, rw = min(th, max(1, round(h0 * s))), min(tw, max(1, round(w0 * s)))
            resized = (rh, rw)
            top, left = round((th - rh) * row), round((tw - rw) * col)
            pads = (top, th - rh - top, left, tw - rw - left)
        shift = (self.pad - round(2 * self.pad * row), self.pad - round(2 * self.pad * col))
        return _ResizePlan(box, resized, pads, shift)

    def __call__(self, img: PIL.Image.Image, y: Any = None) -> tuple[Tensor, Any]:
        """Resize `img` (and `y` as `y_kind` says); returns (uint8 tensor (C, h, w), y)."""
        if not isinstance(img, PIL.Image.Image):
            raise DataError(f"ItemResize needs a PIL image, got {type(img).__name__}")
        w0, h0 = img.size
        plan = self._plan((h0, w0))
        x = _check_uint8(self._apply(img, plan, PIL.Image.BILINEAR, self.convert_mode, self._light_table()), "image")
        if self.y_kind == "mask":
            y = self._apply(_check_pil(y, "mask"), plan, PIL.Image.NEAREST, None)
            if y.shape[0] != 1:
                raise DataError(f"a mask must be a single-channel image, got {y.shape[0]} channels")
            y = y[0].long()
        elif self.y_kind == "image":
            y = self._apply(_check_pil(y, "image"), plan, PIL.Image.BILINEAR, self.convert_mode)
            y = _check_uint8(y, "target image")
        elif self.y_kind == "points":
            y = _move_points(y, plan, (h0, w0))
        return x, y

    def _light_table(self) -> np.ndarray | None:
        """This item's lighting as a uint8 table of 256 entries: v -> 255 * sigmoid(mul * logit(v / 255)
        + add), the map BatchAugment applies to floats; None when no lighting transform fires."""
        mul, add, fired = 1.0, 0.0, False
        for t in self.lighting:
            if random.random() >= t.p:
                continue
            fired = True
            if t.name == "brightness":
                change = min(max(_draw_value(t.params.get("change", 0.5)), 1e-6), 1 - 1e-6)
                add += math.log(change / (1 - change))
            else:
                scale = _draw_value(t.params.get("scale", 1.0))
                mul, add = mul * scale, add * scale
        if not fired:
            return None
        return np.rint(255 / (1 + np.exp(-(mul * _LOGIT_LEVELS + add)))).astype(np.uint8)

    def _apply(self, img: PIL.Image.Image, plan: _ResizePlan, resample: int, convert_mode: str | None,
               table: np.ndarray | None = None) -> Tensor:
        """Run `plan` on one PIL image (at its own size: the plan is in fractions) -> uint8 (C, h, w),
        with the lighting `table` applied to the resized pixels."""
        rh, rw = plan.resized
        w, h = img.size
        box = tuple(_snap(f * n) for f, n in zip(plan.box, (w, h, w, h)))
        if resample != PIL.Image.NEAREST and getattr(img, "format", None) == "JPEG":
            # Decode at 1/2, 1/4 or 1/8 scale when that still leaves at least the pixels we need.
            need = (math.ceil(w * rw / (box[2] - box[0])), math.ceil(h * rh / (box[3] - box[1])))
            if w >= 2 * need[0] and h >= 2 * need[1]:
                drafted = img.draft(None, need)
                if drafted is not None:
                    f = drafted[1][2] / w
                    box = (box[0] * f, box[1] * f, box[2] * f, box[3] * f)
                    w, h = img.size
        if convert_mode is not None and img.mode != convert_mode:
            img = img.convert(convert_mode)
        if (rw, rh) != (w, h) or box != (0.0, 0.0, float(w), float(h)):
            img = img.resize((rw, rh), resample, box=box)
        a = np.asarray(img)
        if a.ndim == 2:
            a = a[:, :, None]
        if any(plan.pads):
            top, bottom, left, right = plan.pads
            a = np.pad(a, ((top, bottom), (left, right), (0, 0)), mode=_NUMPY_PAD[self.padding_mode])
        if any(plan.shift):
            a = _shift(a, plan.shift, self.pad_mode)
        chw = a.transpose(2, 0, 1)
        if table is not None and a.dtype == np.uint8:
            out = np.empty(chw.shape, np.uint8)  # the lighting table and the HWC -> CHW copy in one pass
            return torch.from_numpy(np.take(table, chw, out=out))
        return torch.from_numpy(np.array(chw, order="C"))  # a writable copy: torch shares its memory


def _snap(v: float) -> float:
    """A box coordinate, rounded when it is a whole pixel up to float error (so PIL just copies)."""
    r = round(v)
    return float(r) if abs(v - r) < 1e-6 else v


def _check_uint8(t: Tensor, what: str) -> Tensor:
    """8-bit pixels (bilevel images become 0/255); other depths need a convert_mode."""
    if t.dtype == torch.bool:
        return t.to(torch.uint8) * 255
    if t.dtype != torch.uint8:
        raise DataError(f"the {what} has {t.dtype} pixels; pass convert_mode='RGB' or 'L' to get 8-bit ones")
    return t


def _check_pil(y: Any, kind: str) -> PIL.Image.Image:
    """The target as a PIL image, or a DataError saying what was expected."""
    if not isinstance(y, PIL.Image.Image):
        raise DataError(f"y_kind={kind!r} needs a PIL image target, got {type(y).__name__}")
    return y


def _shift(a: np.ndarray, shift: tuple[int, int], mode: str) -> np.ndarray:
    """Move the content of an (h, w, C) array by (dy, dx), keeping its size: rand_pad's pad then
    crop, done as a crop on one side and a pad on the other."""
    h, w = a.shape[:2]
    dy, dx = shift  # > 0: the content moves down / right
    a = a[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    pad = ((max(0, dy), max(0, -dy)), (max(0, dx), max(0, -dx)), (0, 0))
    return np.pad(a, pad, mode=_NUMPY_PAD[mode])


def _move_points(points: Any, plan: _ResizePlan, source_size: tuple[int, int]) -> Tensor:
    """Map (N, 2) pixel (x, y) points of the source through `plan` to normalised coordinates."""
    pts = torch.as_tensor(points, dtype=torch.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise DataError(f"points must be an (N, 2) array of (x, y), got shape {tuple(pts.shape)}")
    h0, w0 = source_size
    rh, rw = plan.resized
    top, bottom, left, right = plan.pads
    dy, dx = plan.shift
    x0, y0, x1, y1 = plan.box
    ex = ((pts[:, 0] + 0.5) / w0 - x0) / (x1 - x0) * rw + left + dx  # pixel-edge units of the output
    ey = ((pts[:, 1] + 0.5) / h0 - y0) / (y1 - y0) * rh + top + dy
    out_w, out_h = rw + left + right, rh + top + bottom
    return torch.stack([ex / out_w * 2 - 1, ey / out_h * 2 - 1], dim=1).float()


# ------------------------------------------------------------------------------------------------
# Per batch: one grid_sample for every coordinate transform, lighting in logit space
# ------------------------------------------------------------------------------------------------

@dataclass
class AugmentParams:
    """What `BatchAugment.sample` drew for a batch (CPU tensors, float64 matrices).

    `matrix` (B, 3, 3) maps output to input coordinates; `moved` marks the samples any coordinate
    transform fired for, `projective` whether any warp fired; lighting is
    x -> sigmoid(light_mul * logit(x) + light_add) for the samples marked `lit`.
    """

    matrix: Tensor
    moved: Tensor
    projective: bool
    light_mul: Tensor
    light_add: Tensor
    lit: Tensor


def _draw(spec: Any, n: int) -> Tensor:
    """n values of a parameter: uniform over a (low, high) range, or a fixed number repeated."""
    if isinstance(spec, (tuple, list)):
        lo, hi = float(spec[0]), float(spec[1])
        return lo + (hi - lo) * torch.rand(n, dtype=torch.float64)
    return torch.full((n,), float(spec), dtype=torch.float64)


def _eye(n: int) -> Tensor:
    return torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)


def _affine_matrix(t: RandTransform, n: int, size: tuple[int, int]) -> Tensor:
    """(n, 3, 3) sampling matrices of one affine transform, with parameters drawn per sample."""
    m = _eye(n)
    if t.name == "flip_lr":
        m[:, 0, 0] = -1
    elif t.name == "dihedral":
        k = t.params.get("k", (0, 7))
        if isinstance(k, (tuple, list)):
            k = torch.randint(int(k[0]), int(k[1]) + 1, (n,))
        else:
            k = torch.full((n,), int(k))
        sx, sy = 1.0 - 2.0 * (k & 1).double(), 1.0 - 2.0 * ((k >> 1) & 1).double()
        swap = ((k >> 2) & 1).bool()
        m[:, 0, 0] = torch.where(swap, 0.0, sx)
        m[:, 0, 1] = torch.where(swap, sx, 0.0)
        m[:, 1, 1] = torch.where(swap, 0.0, sy)
        m[:, 1, 0] = torch.where(swap, sy, 0.0)
    elif t.name == "rotate":
        theta = _draw(t.params.get("degrees", 0.0), n) * (math.pi / 180)
        cos, sin = torch.cos(theta), torch.sin(theta)
        h, w = size  # rotate in pixel units, so non-square images are not sheared
        m[:, 0, 0], m[:, 0, 1] = cos, -sin * h / w
        m[:, 1, 0], m[:, 1, 1] = sin * w / h, cos
    elif t.name == "zoom":
        inv = 1 / _draw(t.params.get("scale", 1.0), n)
        row, col = _draw(t.params.get("row_pct", 0.5), n), _draw(t.params.get("col_pct", 0.5), n)
        m[:, 0, 0], m[:, 1, 1] = inv, inv
        m[:, 0, 2], m[:, 1, 2] = (1 - inv) * (2 * col - 1), (1 - inv) * (2 * row - 1)
    return m


def _warp_matrix(t: RandTransform, n: int) -> Tensor:
    """(n, 3, 3) homographies of a symmetric warp: each edge of the output reads a span of the
    input stretched symmetrically by its own magnitude (left, right, top, bottom)."""
    spec = t.params.get("magnitude", 0.0)
    m_left, m_right, m_top, m_bottom = (_draw(spec, n) for _ in range(4))
    src = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    dst = torch.stack([
        torch.stack([-1 - m_top, -1 - m_left], 1), torch.stack([1 + m_top, -1 - m_right], 1),
        torch.stack([-1 - m_bottom, 1 + m_left], 1), torch.stack([1 + m_bottom, 1 + m_right], 1),
    ], dim=1)  # (n, 4, 2): where each output corner reads from
    return _homography(src, dst)


def _homography(src: Tensor, dst: Tensor) -> Tensor:
    """(n, 3, 3) projective maps taking the 4 points `src` (4, 2) to `dst` (n, 4, 2)."""
    n = dst.shape[0]
    a = torch.zeros(n, 8, 8, dtype=torch.float64)
    for i in range(4):
        x, y = float(src[i, 0]), float(src[i, 1])
        u, v = dst[:, i, 0], dst[:, i, 1]
        a[:, 2 * i, 0], a[:, 2 * i, 1], a[:, 2 * i, 2] = x, y, 1
        a[:, 2 * i, 6], a[:, 2 * i, 7] = -x * u, -y * u
        a[:, 2 * i + 1, 3], a[:, 2 * i + 1, 4], a[:, 2 * i + 1, 5] = x, y, 1
        a[:, 2 * i + 1, 6], a[:, 2 * i + 1, 7] = -x * v, -y * v
    h = torch.linalg.solve(a, dst.reshape(n, 8))
    return torch.cat([h, torch.ones(n, 1, dtype=torch.float64)], dim=1).view(n, 3, 3)


def _to_float(x: Tensor) -> Tensor:
    """uint8 images to float in [0, 1]; float images unchanged."""
    if x.dtype == torch.uint8:
        return x.float().div_(255)
    if not x.is_floating_point():
        raise DataError(f"images must be uint8 or floating point, got {x.dtype}")
    return x


def _fresh_float(x: Tensor) -> Tensor:
    """`_to_float(x)`, copied when that is `x` itself: a tensor the caller owns."""
    out = _to_float(x)
    return out.clone() if out is x else out


class BatchAugment:
    """Random augmentation of a whole batch on its device: one grid_sample for all coordinate
    transforms, one logit-space affine map for lighting, each transform firing per sample with its p."""

    def __init__(self, tfms: Iterable[RandTransform], padding_mode: str = "reflection", mode: str = "bilinear",
                 tfm_y: bool = False, y_kind: str | None = None):
        _check_choice(padding_mode, PADDING_MODES, "padding_mode")
        _check_choice(mode, _SAMPLE_MODES, "interpolation mode")
        _check_choice(y_kind, Y_KINDS, "y_kind")
        if tfm_y and y_kind not in _GEOMETRIC_Y:
            raise ConfigError(f"tfm_y=True moves targets of kind {', '.join(_GEOMETRIC_Y)}; got y_kind={y_kind!r}")
        tfms = list(tfms)
        for t in tfms:
            if not isinstance(t, RandTransform):
                raise ConfigError(f"transforms must be RandTransform objects, got {type(t).__name__}")
            if t.kind != "crop" and _BATCH_NAMES.get(t.name) != t.kind:
                known = ", ".join(f"{k} ({v})" for k, v in _BATCH_NAMES.items())
                raise ConfigError(f"unknown batch transform {t.name!r} of kind {t.kind!r}; known: {known}")
        self.tfms = [t for t in tfms if t.kind != "crop"]
        self.padding_mode, self.mode, self.tfm_y, self.y_kind = padding_mode, mode, tfm_y, y_kind
        self._work = _Workspace()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_work"}  # buffers stay behind

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._work = _Workspace()

    def __repr__(self) -> str:
        names = ", ".join(f"{t.name}(p={t.p})" for t in self.tfms)
        return f"{type(self).__name__}([{names}], padding_mode={self.padding_mode!r}, tfm_y={self.tfm_y})"

    def sample(self, n: int, size: tuple[int, int]) -> AugmentParams:
        """Draw the parameters of `n` samples of `size` (h, w) from torch's global CPU RNG."""
        affine, warp = _eye(n), _eye(n)
        moved = torch.zeros(n, dtype=torch.bool)
        projective = False
        mul, add = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        lit = torch.zeros(n, dtype=torch.bool)
        for t in self.tfms:
            fire = torch.rand(n) < t.p
            if t.kind == "affine":
                m = torch.where(fire[:, None, None], _affine_matrix(t, n, size), _eye(n))
                affine, moved = affine @ m, moved | fire
            elif t.kind == "warp":
                m = torch.where(fire[:, None, None], _warp_matrix(t, n), _eye(n))
                warp, moved, projective = warp @ m, moved | fire, projective or bool(fire.any())
            elif t.name == "brightness":
                change = _draw(t.params.get("change", 0.5), n).clamp(1e-6, 1 - 1e-6)
                add = torch.where(fire, add + torch.logit(change), add)
                lit = lit | fire
            elif t.name == "contrast":
                scale = _draw(t.params.get("scale", 1.0), n)
                mul, add = torch.where(fire, mul * scale, mul), torch.where(fire, add * scale, add)
                lit = lit | fire
        # v1 order: the warp bends the output grid first, then the affine matrices act on it.
        return AugmentParams(affine @ warp, moved, projective, mul, add, lit)

    def __call__(self, x: Tensor, y: Any = None) -> tuple[Tensor, Any]:
        """Augment a batch (B, C, H, W); returns (float images in [0, 1], y moved when tfm_y).

        The images returned are always a tensor this call created, never `x` or a buffer kept for
        later batches, so the next step may work in place on it (`NormalizeBatch(inplace=True)`).
        """
        if x.ndim != 4:
            raise DataError(f"BatchAugment needs a (B, C, H, W) batch, got shape {tuple(x.shape)}")
        if not self.tfms:  # the validation step: nothing to draw, only the float conversion
            return _fresh_float(x), y
        return self.apply(x, y, self.sample(x.shape[0], tuple(x.shape[-2:])))

    def apply(self, x: Tensor, y: Any, params: AugmentParams) -> tuple[Tensor, Any]:
        """Apply drawn `params` to a batch (and to y when tfm_y); the inputs are never modified and
        the images returned are a new tensor.

        Samples a transform did not fire for carry identity parameters, so most batches are one
        grid_sample and one in-place lighting pass over every sample, with no gather or merge
        (the identity reproduces pixels to float precision). Temporaries that never leave this
        call (the float copy fed to grid_sample, the coordinates) live in per-thread buffers
        reused from batch to batch: fresh batch-sized allocations cost page faults every time.
        """
        moved = bool(params.moved.any())
        if moved and x.dtype == torch.uint8:
            out, owned = self._work.buffer("pixels", x.shape, torch.float32, x.device), False
            out.copy_(x).div_(255)
        else:
            out = _to_float(x)
            owned = out is not x  # a fresh tensor we may write into
        if moved:
            sel = _Selection(params.moved, x.device)
            matrix = params.matrix.to(device=x.device, dtype=torch.float32)
            grid = _sampling_grid(sel.rows(matrix), tuple(out.shape[-2:]), params.projective, self._work)
            out = _resample(out, grid, sel, self.mode, self.padding_mode, owned)
            if self.mode == "bicubic":
                out = out.clamp_(0, 1)  # bicubic overshoots
            owned = True  # grid_sample's output, or a merge into a copy: never a reused buffer
            if self.tfm_y and y is not None:
                y = self._move_y(y, grid, sel, params)
        if not owned:  # float input that nothing moved: the caller gets a copy, never x itself
            out = out.clone()
        if bool(params.lit.any()):
            out = _light(out, params)
        return out, y

    def _move_y(self, y: Tensor, grid: Tensor, sel: "_Selection", params: AugmentParams) -> Tensor:
        """Move the target with the same grid (masks nearest, images as x, points by the inverse map)."""
        if self.y_kind == "mask":
            if y.ndim != 3:
                raise DataError(f"a batch of masks must be (B, H, W), got shape {tuple(y.shape)}")
            moved = _resample(y[:, None].float(), grid, sel, "nearest", self.padding_mode, True)
            return moved[:, 0].round().to(y.dtype)
        if self.y_kind == "image":
            yf = _to_float(y)
            return _resample(yf, grid, sel, self.mode, self.padding_mode, yf is not y)
        if y.ndim != 3 or y.shape[-1] != 2:
            raise DataError(f"a batch of points must be (B, N, 2), got shape {tuple(y.shape)}")
        inverse = torch.linalg.inv(params.matrix).to(device=y.device, dtype=y.dtype)
        pts = torch.cat([y, torch.ones_like(y[..., :1])], dim=-1) @ inverse.transpose(1, 2)
        pts = pts[..., :2] / pts[..., 2:] if params.projective else pts[..., :2]
        return torch.where(params.moved.to(y.device)[:, None, None], pts, y)


class _Workspace(threading.local):
    """Scratch tensors of one thread, kept between batches and reallocated when the shape changes."""

    def buffer(self, name: str, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> Tensor:
        t = self.__dict__.get(name)
        if t is None or t.shape != tuple(shape) or t.dtype != dtype or t.device != device:
            t = torch.empty(tuple(shape), dtype=dtype, device=device)
            self.__dict__[name] = t
        return t


class _Selection:
    """The samples a step computes: all of them when at least half need it (the others have
    identity parameters, so computing them too is harmless and cheaper than a gather and a merge),
    else only those, gathered by index and put back."""

    def __init__(self, flags: Tensor, device: torch.device):
        count, n = int(flags.sum()), len(flags)
        self.idx = flags.nonzero().squeeze(1).to(device) if 2 * count < n else None

    def rows(self, t: Tensor) -> Tensor:
        """The per-sample rows of `t` the step computes."""
        return t if self.idx is None else t[self.idx]

    def merge(self, x: Tensor, computed: Tensor, inplace: bool) -> Tensor:
        """`computed` (for `rows`) put back into x for the selected samples."""
        if self.idx is None:
            return computed
        out = x if inplace else x.clone()
        out[self.idx] = computed
        return out


def _light(x: Tensor, params: AugmentParams) -> Tensor:
    """x -> sigmoid(mul * logit(x) + add), in place on `x` (a buffer the caller owns); samples
    not lit have mul 1 and add 0, which gives back x within 1e-6."""
    sel = _Selection(params.lit, x.device)
    mul = sel.rows(params.light_mul.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1))
    add = sel.rows(params.light_add.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1))
    if sel.idx is None:
        return x.logit_(eps=1e-6).mul_(mul).add_(add).sigmoid_()
    return sel.merge(x, torch.logit(sel.rows(x), eps=1e-6).mul_(mul).add_(add).sigmoid_(), True)


def _sampling_grid(matrix: Tensor, size: tuple[int, int], projective: bool, work: _Workspace | None = None) -> Tensor:
    """(n, H, W, 2) grid_sample grid: the output pixel centres mapped through `matrix` (n, 3, 3).

    Each coordinate is a*x + b*y + c, built for all three rows at once from a row and a column
    vector by broadcasting into one (n, 3, H, W) buffer (much cheaper than a (n, H*W, 3) matmul
    with an inner size of 3); the grid is a permuted view of it, which grid_sample reads as fast.
    With `work`, the buffer is reused: the grid is then valid only until the next call.
    """
    n, (h, w) = matrix.shape[0], size
    xs = ((torch.arange(w, device=matrix.device, dtype=matrix.dtype) * 2 + 1) / w - 1).view(1, 1, 1, w)
    ys = ((torch.arange(h, device=matrix.device, dtype=matrix.dtype) * 2 + 1) / h - 1).view(1, 1, h, 1)
    m = matrix[..., None, None]  # (n, 3, 3, 1, 1)
    rows = 3 if projective else 2
    shape = (n, rows, h, w)
    coords = torch.empty(shape, dtype=matrix.dtype, device=matrix.device) if work is None else \
        work.buffer("coords", shape, matrix.dtype, matrix.device)
    torch.add(m[:, :rows, 0] * xs + m[:, :rows, 2], m[:, :rows, 1] * ys, out=coords)
    if projective:
        coords[:, :2].div_(coords[:, 2:])
    return coords[:, :2].permute(0, 2, 3, 1)


def _resample(x: Tensor, grid: Tensor, sel: _Selection, mode: str, padding_mode: str, inplace: bool) -> Tensor:
    """grid_sample the selected samples (grid holds their rows) and keep the others as they are."""
    sampled = F.grid_sample(sel.rows(x), grid.to(x.dtype), mode=mode, padding_mode=padding_mode, align_corners=False)
    return sel.merge(x, sampled, inplace)


# ------------------------------------------------------------------------------------------------
# Normalisation
# ------------------------------------------------------------------------------------------------

class Normalize:
    """Per-channel (x - mean) / std of a batch (uint8 input is first scaled to [0, 1])."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]
        if len(self.mean) != len(self.std) or not self.mean:
            raise ConfigError(f"mean and std need one value per channel, got {len(self.mean)} and {len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std values must be > 0, got {self.std}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready stats, for export manifests."""
        return {"mean": list(self.mean), "std": list(self.std)}

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim < 3 or x.shape[-3] != len(self.mean) and len(self.mean) != 1:
            raise DataError(f"Normalize has stats for {len(self.mean)} channels, got images of shape {tuple(x.shape)}")
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return mean, std

    def __call__(self, x: Tensor, inplace: bool = False) -> Tensor:
        """Normalise (C, H, W) or (B, C, H, W) images; `inplace=True` overwrites a float `x` (for a
        batch the pipeline just made: a fresh batch-sized result costs page faults every batch)."""
        fresh = inplace or x.dtype == torch.uint8  # the float copy of uint8 input is ours anyway
        x = _to_float(x)
        mean, std = self._stats(x)
        return x.sub_(mean).div_(std) if fresh else torch.sub(x, mean).div_(std)

    def decode(self, x: Tensor) -> Tensor:
        """Undo the normalisation (for display)."""
        mean, std = self._stats(x)
        return x * std + mean


def batch_stats(x: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of a batch (B, C, H, W) (uint8 scaled to [0, 1]), for `normalize()` without stats."""
    if x.ndim != 4:
        raise DataError(f"batch_stats needs a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    std, mean = torch.std_mean(_to_float(x).float(), dim=(0, 2, 3))
    return mean.tolist(), std.tolist()
