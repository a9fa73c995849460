"""Data augmentation on real MNIST digits: v1 transform lists, one-pass batch augmentation (exact
flips and right-angle rotations, targets that stay aligned), per-item resizing, normalisation."""
import itertools
import json
from unittest import mock

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F

from deftly.core import ConfigError, DataError, set_seed
from deftly.vision.transform import (
    BatchAugment, ItemResize, Normalize, RandTransform, batch_stats, brightness, contrast, crop_pad, dihedral,
    flip_lr, get_transforms, imagenet_stats, mnist_stats, normalized_to_pixels, pixels_to_normalized, rand_crop,
    rand_pad, rand_zoom, rotate, symmetric_warp, zoom, zoom_crop,
)


@pytest.fixture(scope="module")
def digits():
    """32 real digits as a uint8 batch (32, 3, 28, 28)."""
    from deftly.datasets import load_mnist_sample

    (x, _), _ = load_mnist_sample(flatten=False)
    return (x[:32] * 255).round().to(torch.uint8)[:, None].repeat(1, 3, 1, 1)


def big_digits(digits, size):
    """The digits upsampled to `size` (h, w), float in [0, 1], one channel."""
    return F.interpolate(digits[:, :1].float() / 255, size=size, mode="bilinear", align_corners=False)


def pil_digit(digits, i=0, size=None):
    """Digit i as a grey PIL image, optionally resized to `size` (w, h)."""
    im = PIL.Image.fromarray(digits[i, 0].numpy())
    return im if size is None else im.resize(size, PIL.Image.BILINEAR)


# ------------------------------------------------------------------------------------------------
# transform lists
# ------------------------------------------------------------------------------------------------

def test_get_transforms_builds_the_v1_lists():
    train, valid = get_transforms()
    assert [t.name for t in train] == ["crop_pad", "flip_lr", "symmetric_warp", "rotate", "zoom", "brightness",
                                       "contrast"]
    assert train[0].params == {"row_pct": (0.0, 1.0), "col_pct": (0.0, 1.0)}  # rand_crop
    assert train[1].p == 0.5
    assert train[2].params["magnitude"] == (-0.2, 0.2) and train[2].p == 0.75
    assert train[3].params["degrees"] == (-10.0, 10.0)
    assert train[4].params["scale"] == (1.0, 1.1) and train[4].params["row_pct"] == (0.0, 1.0)
    assert train[5].params["change"] == pytest.approx((0.4, 0.6)) and train[5].p == 0.75
    assert train[6].params["scale"] == pytest.approx((0.8, 1.25))
    assert valid == [crop_pad()] and valid[0].params == {"row_pct": 0.5, "col_pct": 0.5}

    planet, _ = get_transforms(flip_vert=True, max_lighting=0.1, max_zoom=1.05, max_warp=0.0)
    assert [t.name for t in planet] == ["crop_pad", "dihedral", "rotate", "zoom", "brightness", "contrast"]
    assert planet[1].p == 1.0 and planet[1].params["k"] == (0, 7)
    assert planet[4].params["change"] == pytest.approx((0.45, 0.55))
    assert planet[5].params["scale"] == pytest.approx((0.9, 1 / 0.9))

    none, _ = get_transforms(do_flip=False, max_rotate=0, max_zoom=1, max_lighting=0, max_warp=0)
    assert [t.name for t in none] == ["crop_pad"]
    extra, _ = get_transforms(xtra_tfms=[brightness()], p_affine=1.0)
    assert extra[-1].name == "brightness" and extra[3].p == 1.0
    assert len(get_transforms(xtra_tfms=zoom())[0]) == 8


def test_transform_helpers_and_export_round_trip():
    pad, crop = rand_pad(3, 28, mode="zeros")
    assert (pad.name, pad.kind, pad.params) == ("pad", "crop", {"padding": 3, "mode": "zeros"})
    assert crop.params["size"] == 28 and crop.params["row_pct"] == (0.0, 1.0)
    assert [t.name for t in zoom_crop(1.2)] == ["zoom", "crop_pad"]
    assert zoom_crop(1.2)[0].params["row_pct"] == 0.5 and zoom_crop((1.0, 1.3), do_rand=True)[1] == rand_crop()
    for t in get_transforms()[0] + rand_pad(4, 32):
        assert RandTransform.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    with pytest.raises(ConfigError, match="kind"):
        RandTransform("flip_lr", "pixel")
    with pytest.raises(ConfigError, match=r"p must be in \[0, 1\]"):
        flip_lr(p=1.5)


# ------------------------------------------------------------------------------------------------
# BatchAugment: geometry
# ------------------------------------------------------------------------------------------------

def test_uint8_becomes_float_and_inputs_are_untouched(digits):
    before = digits.clone()
    out, y = BatchAugment([])(digits, "labels")
    assert out.dtype == torch.float32 and torch.equal(out, digits.float() / 255) and y == "labels"
    x = digits.float() / 255
    x_before = x.clone()
    BatchAugment([flip_lr(0.5), brightness(p=0.5)])(x)
    assert torch.equal(digits, before) and torch.equal(x, x_before)


def test_the_images_returned_are_always_a_new_tensor(digits):
    """The contract NormalizeBatch(inplace=True) relies on: never x itself, never a kept buffer."""
    x = digits.float() / 255
    for aug in (BatchAugment([]), BatchAugment([flip_lr(p=0.0)]), BatchAugment([flip_lr(p=1.0)])):
        for inp in (x, digits):
            out, _ = aug(inp)
            assert out.data_ptr() != inp.data_ptr() and out.data_ptr() not in {
                t.data_ptr() for t in aug._work.__dict__.values()}
            assert torch.equal(out, x) or aug.tfms[0].p == 1.0


def test_normalize_in_place_only_when_asked(digits):
    x = digits.float() / 255
    kept = x.clone()
    norm = Normalize(*imagenet_stats)
    y = norm(x)
    assert torch.equal(x, kept) and y.data_ptr() != x.data_ptr()
    z = norm(x, inplace=True)
    assert z.data_ptr() == x.data_ptr() and torch.allclose(z, y)
    u = digits.clone()
    assert torch.allclose(norm(u, inplace=True), y) and torch.equal(u, digits)  # uint8 input: never overwritten


def test_flip_lr_with_p1_is_torch_flip(digits):
    out, _ = BatchAugment([flip_lr(p=1.0)])(digits)
    assert torch.allclose(out, torch.flip(digits.float() / 255, dims=(-1,)), atol=1e-5)


def test_flip_fires_per_sample_with_its_probability(digits):
    set_seed(0)
    x = digits.float() / 255
    out, _ = BatchAugment([flip_lr(p=0.5)])(x)
    flipped = torch.flip(x, dims=(-1,))
    is_flipped = [(o - f).abs().max() < 1e-5 for o, f in zip(out, flipped)]
    # untouched samples get the identity: the input to float precision
    is_same = [(o - i).abs().max() < 1e-5 for o, i in zip(out, x)]
    assert all(a != b for a, b in zip(is_flipped, is_same))
    assert 5 < sum(is_flipped) < 27


def test_rotate_90_is_rot90(digits):
    out, _ = BatchAugment([rotate(degrees=(90.0, 90.0))])(digits)
    ref = torch.rot90(digits.float() / 255, k=1, dims=(-2, -1))
    assert torch.allclose(out[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-4)
    minus, _ = BatchAugment([rotate(degrees=-90.0)])(digits)
    ref = torch.rot90(digits.float() / 255, k=-1, dims=(-2, -1))
    assert torch.allclose(minus[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-4)


def test_dihedral_gives_the_eight_symmetries(digits):
    x = digits.float() / 255
    expected = {
        0: x, 1: x.flip(-1), 2: x.flip(-2), 3: x.flip(-1).flip(-2),
        4: x.transpose(-1, -2), 5: x.transpose(-1, -2).flip(-2), 6: x.transpose(-1, -2).flip(-1),
        7: x.transpose(-1, -2).flip(-1).flip(-2),
    }
    for k, ref in expected.items():
        out, _ = BatchAugment([dihedral(k=k)])(x)
        assert torch.allclose(out, ref, atol=1e-5), k
    set_seed(1)
    out, _ = BatchAugment([dihedral()])(x[:1].repeat(64, 1, 1, 1))
    matches = {k for k, ref in expected.items() for o in out if torch.allclose(o, ref[0], atol=1e-5)}
    assert matches == set(range(8))


def test_zoom_reads_the_chosen_window(digits):
    x = big_digits(digits, (32, 32))
    centre, _ = BatchAugment([zoom(scale=2.0, row_pct=0.5, col_pct=0.5)])(x)
    ref = F.interpolate(x[..., 8:24, 8:24], scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(centre[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5)
    corner, _ = BatchAugment([zoom(scale=2.0, row_pct=0.0, col_pct=1.0)])(x)  # top right quarter
    ref = F.interpolate(x[..., :16, 16:], scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(corner[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5)


def test_equal_symmetric_warp_is_a_zoom_out(digits):
    x = digits.float() / 255
    warped, _ = BatchAugment([symmetric_warp(magnitude=0.5)], padding_mode="zeros")(x)
    zoomed, _ = BatchAugment([zoom(scale=1 / 1.5, row_pct=0.5, col_pct=0.5)], padding_mode="zeros")(x)
    assert torch.allclose(warped, zoomed, atol=1e-4)
    tilted, _ = BatchAugment([symmetric_warp(magnitude=(-0.3, 0.3))])(x)
    assert (tilted - x).abs().mean() > 0.01


def test_nothing_fired_means_no_resampling(digits):
    x = digits.float() / 255
    with mock.patch("torch.nn.functional.grid_sample", wraps=F.grid_sample) as spy:
        out, _ = BatchAugment([zoom(scale=(1.5, 2.0), p=0.0), rotate(p=0.0), crop_pad()])(x)
        assert spy.call_count == 0 and torch.equal(out, x)
        BatchAugment([zoom(scale=(1.5, 2.0), p=1.0), rotate(p=1.0), symmetric_warp(p=1.0)])(x)
        assert spy.call_count == 1  # every coordinate transform in one pass


def test_padding_modes_differ(digits):
    x = (digits.float() / 255)[..., 6:22, 6:22]  # the strokes reach the edges
    outs = {m: BatchAugment([rotate(degrees=45.0)], padding_mode=m)(x)[0] for m in ("zeros", "border", "reflection")}
    assert torch.equal(outs["zeros"][..., 0, 0], torch.zeros_like(outs["zeros"][..., 0, 0]))
    for a, b in [("zeros", "border"), ("zeros", "reflection"), ("border", "reflection")]:
        assert (outs[a] - outs[b]).abs().max() > 0.1, (a, b)


def test_set_seed_reproduces_a_batch(digits):
    ba = BatchAugment(get_transforms(max_rotate=30)[0])
    set_seed(7)
    first, _ = ba(digits)
    set_seed(7)
    again, _ = ba(digits)
    set_seed(8)
    other, _ = ba(digits)
    assert torch.equal(first, again) and not torch.equal(first, other)


# ------------------------------------------------------------------------------------------------
# BatchAugment: targets
# ------------------------------------------------------------------------------------------------

def iou(a, b):
    return ((a & b).sum((1, 2)).float() / (a | b).sum((1, 2)).float())


@pytest.mark.parametrize("padding_mode", ["zeros", "reflection"])
def test_mask_stays_aligned_with_the_image(digits, padding_mode):
    x = big_digits(digits, (64, 64))
    mask = (x[:, 0] > 0.5).long() * 7 + ((x[:, 0] > 0.1) & (x[:, 0] <= 0.5)).long() * 3  # classes 0, 3, 7
    tfms = [flip_lr(), symmetric_warp(magnitude=(-0.3, 0.3)), rotate(degrees=(-30, 30)), rand_zoom(scale=(1.0, 1.5))]
    set_seed(0)
    ba = BatchAugment(tfms, padding_mode=padding_mode, tfm_y=True, y_kind="mask")
    out, moved_mask = ba(x, mask)
    assert moved_mask.dtype == torch.int64 and moved_mask.shape == mask.shape
    assert set(moved_mask.unique().tolist()) == {0, 3, 7}  # nearest: no class in between
    moved_mask = moved_mask == 7
    aligned = iou((out[:, 0] > 0.5), moved_mask)  # differs only where bilinear and nearest disagree
    off_by_one = iou((out[:, 0] > 0.5), moved_mask.roll(1, dims=-1))
    assert aligned.min() > 0.8 and aligned.mean() > 0.88 and off_by_one.mean() < aligned.mean() - 0.08
    assert iou(mask == 7, moved_mask).mean() < 0.5  # it did move
    assert iou((out[:, 0] > 0.5), moved_mask.roll(1, 0)).mean() < 0.5


def test_points_follow_the_pixels(digits):
    b, h, w = 32, 48, 64  # not square
    x = big_digits(digits, (h, w)) * 0.1
    g = torch.Generator().manual_seed(1)
    rows, cols = torch.randint(12, h - 12, (b,), generator=g), torch.randint(16, w - 16, (b,), generator=g)
    x[torch.arange(b), 0, rows, cols] = 1.0  # one bright pixel per image
    pts = pixels_to_normalized(torch.stack([cols, rows], 1).float()[:, None], (h, w))
    assert torch.allclose(normalized_to_pixels(pts, (h, w))[:, 0], torch.stack([cols, rows], 1).float())
    tfms = [flip_lr(), dihedral(p=0.5), symmetric_warp(), rotate(degrees=(-30, 30)), rand_zoom(scale=(1.0, 1.3))]
    for seed in range(3):
        set_seed(seed)
        out, moved = BatchAugment(tfms, padding_mode="zeros", tfm_y=True, y_kind="points")(x, pts)
        assert moved.shape == pts.shape and not torch.allclose(moved, pts)
        where = out[:, 0].flatten(1).argmax(1)
        found = torch.stack([where % w, where // w], 1).float()
        assert (normalized_to_pixels(moved[:, 0], (h, w)) - found).abs().max() <= 1.0


def test_rotation_keeps_proportions_on_non_square_images(digits):
    h, w = 32, 64
    x = big_digits(digits[:1], (h, w)) * 0.1
    x[0, 0, 15, 41] = 1.0  # 9 px right of the centre (15.5, 31.5), half a pixel up
    out, _ = BatchAugment([rotate(degrees=90.0)], padding_mode="zeros")(x)
    where = int(out[0, 0].flatten().argmax())
    assert (where // w, where % w) == (6, 31)  # 9 px above the centre (counter-clockwise), not 4.5


def test_image_targets_move_but_are_not_lit(digits):
    x = digits.float() / 255
    set_seed(3)
    out, y = BatchAugment([rotate(degrees=(-20, 20)), brightness(change=(0.7, 0.8))], tfm_y=True,
                          y_kind="image")(digits, digits.clone())
    set_seed(3)
    geometry_only, _ = BatchAugment([rotate(degrees=(-20, 20)), brightness(change=(0.7, 0.8), p=0.0)])(x)
    assert torch.allclose(y, geometry_only, atol=1e-6)
    grey = (y > 0.2) & (y < 0.8)
    assert (out - y)[grey].min() > 0.05  # x got brighter, y did not


def test_tfm_y_needs_a_geometric_target():
    with pytest.raises(ConfigError, match="mask"):
        BatchAugment([flip_lr()], tfm_y=True, y_kind="category")
    with pytest.raises(ConfigError, match="y_kind"):
        BatchAugment([flip_lr()], y_kind="bbox")


# ------------------------------------------------------------------------------------------------
# BatchAugment: lighting
# ------------------------------------------------------------------------------------------------

def test_lighting_in_logit_space(digits):
    x = digits.float() / 255
    same, _ = BatchAugment([brightness(change=0.5), contrast(scale=1.0)])(x)
    assert torch.allclose(same, x, atol=1e-5)
    brighter, _ = BatchAugment([brightness(change=0.8)])(x)
    grey = (x > 0.2) & (x < 0.8)
    assert (brighter >= x - 1e-6).all() and (brighter - x)[grey].min() > 0.05
    assert (brighter[x == 0] < 1e-5).all()  # in logit space black stays black, as in v1
    grey, _ = BatchAugment([contrast(scale=0.0)])(x)
    assert torch.allclose(grey, torch.full_like(x, 0.5))
    # brightness then contrast: sigmoid(scale * (logit(x) + logit(change)))
    both, _ = BatchAugment([brightness(change=0.6), contrast(scale=1.25)])(x)
    ref = torch.sigmoid(1.25 * (torch.logit(x, eps=1e-6) + torch.logit(torch.tensor(0.6))))
    assert torch.allclose(both, ref, atol=1e-5)


def test_bad_batch_transforms_raise():
    with pytest.raises(ConfigError, match="unknown batch transform 'cutout'"):
        BatchAugment([RandTransform("cutout", "lighting")])
    with pytest.raises(ConfigError, match="'reflection', 'zeros', 'border'"):
        BatchAugment([], padding_mode="mirror")
    with pytest.raises(DataError, match=r"\(B, C, H, W\)"):
        BatchAugment([])(torch.zeros(3, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_matches_cpu(digits):
    ba = BatchAugment(get_transforms()[0], tfm_y=True, y_kind="mask")
    mask = (digits[:, 0] > 127).long()
    set_seed(5)
    cpu, cpu_mask = ba(digits, mask)
    set_seed(5)
    gpu, gpu_mask = ba(digits.cuda(), mask.cuda())
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, atol=1e-3)
    assert (gpu_mask.cpu() != cpu_mask).float().mean() < 0.01


# ------------------------------------------------------------------------------------------------
# ItemResize
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["crop", "pad", "squish"])
@pytest.mark.parametrize("size", [20, (20, 30), (30, 20)])
def test_item_resize_shapes(digits, method, size):
    wide = pil_digit(digits, size=(60, 30))  # w=60, h=30
    x, y = ItemResize(size, resize_method=method)(wide, 3)
    h, w = (size, size) if isinstance(size, int) else size
    assert x.shape == (1, h, w) and x.dtype == torch.uint8 and y == 3
    rgb, _ = ItemResize(size, resize_method=method, convert_mode="RGB")(wide)
    assert rgb.shape == (3, h, w)


def test_item_resize_crop_pad_squish_content(digits):
    wide = pil_digit(digits, 0, size=(56, 28))  # the digit stretched to twice its width
    squished, _ = ItemResize(28, resize_method="squish")(wide)
    assert (squished[0].int() - digits[0, 0].int()).abs().float().mean() < 8
    cropped, _ = ItemResize(28, resize_method="crop")(wide)  # centre 28 columns of the 56
    assert torch.equal(cropped[0], torch.from_numpy(np.array(wide))[:, 14:42])
    padded, _ = ItemResize(28, resize_method="pad", padding_mode="zeros")(pil_digit(digits, 1, size=(56, 28)))
    assert torch.equal(padded[0, :7], torch.zeros(7, 28, dtype=torch.uint8))  # 28x14 content centred
    assert padded[0, 7:21].float().mean() > 10
    bright_edges = pil_digit(digits, 2).crop((6, 6, 22, 22)).resize((32, 16))  # strokes reach the edges
    modes = {m: ItemResize(32, resize_method="pad", padding_mode=m)(bright_edges)[0] for m in
             ("zeros", "border", "reflection")}
    assert torch.equal(modes["border"][0, :8], modes["border"][0, 8:9].expand(8, 32))
    assert torch.equal(modes["reflection"][0, :8], modes["reflection"][0, 8:16].flip(0))
    assert not torch.equal(modes["zeros"], modes["border"]) and not torch.equal(modes["border"], modes["reflection"])


def test_random_crop_moves_and_targets_follow(digits):
    wide = pil_digit(digits, 0, size=(56, 28))
    mask = wide.point(lambda v: 1 if v > 127 else 0)
    resize = ItemResize(28, random_crop=True, y_kind="mask")
    set_seed(0)
    seen = set()
    for _ in range(10):
        x, m = resize(wide, mask)
        assert m.dtype == torch.int64 and m.shape == (28, 28)
        assert torch.equal(m, (x[0] > 127).long())  # the crop of the mask is the crop of the image
        seen.add(bytes(x.numpy()))
    assert len(seen) > 3


def test_item_resize_points(digits):
    im = pil_digit(digits, 0, size=(60, 30)).point(lambda v: v // 8)  # dim, then one bright pixel
    im.putpixel((45, 10), 255)
    pts = torch.tensor([[45.0, 10.0]])
    set_seed(0)
    checked = 0
    for method, size, pad in itertools.product(("crop", "pad", "squish"), (30, (15, 40)), (0, 4)):
        for _ in range(3):
            resize = ItemResize(size, resize_method=method, padding_mode="zeros", y_kind="points",
                                col_pct=(0.0, 1.0), row_pct=(0.0, 1.0), pad=pad)
            x, moved = resize(im, pts)
            h, w = x.shape[1:]
            px = normalized_to_pixels(moved, (h, w))[0]
            if not (0 <= px[0] < w and 0 <= px[1] < h):
                continue  # cropped away
            where = int(x[0].flatten().argmax())
            assert abs(px[0] - where % w) <= 1 and abs(px[1] - where // w) <= 1, (method, size, pad)
            checked += 1
    assert checked > 24
    squished, same = ItemResize((15, 40), resize_method="squish", y_kind="points")(im, pts)
    assert torch.allclose(same, pixels_to_normalized(pts, (30, 60)), atol=1e-6)  # squish keeps normalised coords


def test_rand_pad_shifts_the_digit(digits):
    im = pil_digit(digits, 0)
    resize = ItemResize.from_tfms(rand_pad(padding=3, size=28, mode="zeros"))
    assert resize.size == (28, 28) and resize.pad == 3 and resize.pad_mode == "zeros"
    ref = F.pad(digits[0, 0], (3, 3, 3, 3))
    set_seed(0)
    shifts = set()
    for _ in range(12):
        x, _ = resize(im)
        assert x.shape == (1, 28, 28)
        found = [(dy, dx) for dy in range(7) for dx in range(7) if torch.equal(x[0], ref[dy:dy + 28, dx:dx + 28])]
        assert found
        shifts.add(found[0])
    assert len(shifts) > 4
    centred, _ = ItemResize.from_tfms(get_transforms()[1], size=28)(im)
    assert torch.equal(centred[0], digits[0, 0])


def test_item_resize_on_mnist_tiny_files(tmp_path, monkeypatch):
    from deftly.datasets import URLs, untar_data
    from deftly.vision import get_image_files

    monkeypatch.setenv("DEFTLY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DEFTLY_OFFLINE", "1")
    files = get_image_files(untar_data(URLs.MNIST_TINY, show_progress=False) / "train" / "3")[:8]
    resize = ItemResize.from_tfms(get_transforms()[0], size=(20, 24), convert_mode="RGB")
    batch = torch.stack([resize(PIL.Image.open(f))[0] for f in files])
    assert batch.shape == (8, 3, 20, 24) and batch.dtype == torch.uint8
    out, _ = BatchAugment(get_transforms()[0])(batch)
    assert out.shape == (8, 3, 20, 24) and 0 <= out.min() and out.max() <= 1


def test_jpeg_is_decoded_at_reduced_scale(digits, tmp_path):
    big = pil_digit(digits, 0, size=(448, 448))
    big.save(tmp_path / "digit.jpg", quality=95)
    lazy = PIL.Image.open(tmp_path / "digit.jpg")
    fast, _ = ItemResize(28, convert_mode="L")(lazy)
    assert lazy.size == (56, 56)  # decoded at 1/8 scale
    full = PIL.Image.open(tmp_path / "digit.jpg")
    full.load()
    slow, _ = ItemResize(28, convert_mode="L")(full)
    assert fast.shape == slow.shape == (1, 28, 28)
    assert (fast.float() - slow.float()).abs().mean() < 4


def test_item_resize_bad_arguments(digits):
    with pytest.raises(ConfigError, match="'crop', 'pad', 'squish'"):
        ItemResize(28, resize_method="stretch")
    with pytest.raises(ConfigError, match="'reflection', 'zeros', 'border'"):
        ItemResize(28, padding_mode="wrap")
    with pytest.raises(ConfigError, match=r"size must be an int or \(h, w\)"):
        ItemResize(0)
    with pytest.raises(ConfigError, match=r"size must be an int or \(h, w\)"):
        ItemResize((1, 2, 3, 4))
    with pytest.raises(DataError, match="PIL image"):
        ItemResize(28)(digits[0])
    with pytest.raises(DataError, match="mask"):
        ItemResize(28, y_kind="mask")(pil_digit(digits), "not a mask")


# ------------------------------------------------------------------------------------------------
# Normalize and stats
# ------------------------------------------------------------------------------------------------

def test_normalize_and_decode(digits):
    x = digits.float() / 255
    norm = Normalize(*imagenet_stats)
    y = norm(x)
    assert torch.allclose(y[:, 1], (x[:, 1] - 0.456) / 0.224)
    assert torch.allclose(norm.decode(y), x, atol=1e-6)
    assert torch.allclose(norm(digits), y)  # uint8 scaled first
    assert torch.allclose(norm(x[0]), y[0])  # a single image
    assert mnist_stats == ([0.15] * 3, [0.15] * 3)
    with pytest.raises(DataError, match="3 channels"):
        norm(x[:, :1].repeat(1, 2, 1, 1))
    with pytest.raises(ConfigError, match="one value per channel"):
        Normalize([0.5, 0.5], [0.2])


def test_batch_stats(digits):
    mean, std = batch_stats(digits)
    x = digits.float() / 255
    assert mean == pytest.approx([x.mean().item()] * 3, abs=1e-5)
    assert std == pytest.approx([x.std().item()] * 3, abs=1e-5)
    assert 0.05 < mean[0] < 0.3  # MNIST: mostly black
    normed = Normalize(mean, std)(x)
    assert normed.mean().abs() < 1e-4 and (normed.std() - 1).abs() < 1e-3


def test_batches_never_share_memory_with_the_reused_buffers(digits):
    aug = BatchAugment([rotate(degrees=(-20, 20), p=0.3), brightness(p=0.5)])
    set_seed(1)
    first, _ = aug(digits)
    kept = first.clone()
    for _ in range(4):
        aug(digits)
    assert torch.equal(first, kept)
