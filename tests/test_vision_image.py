"""open_image, Image and get_image_files on real digits written as image files."""
import io

import matplotlib
import numpy as np
import PIL.Image
import pytest
import torch

from deftly.core import DataError
from deftly.vision import Image, get_image_files, open_image

matplotlib.use("Agg")


@pytest.fixture
def digit(mnist_sample):
    (x, y), _ = mnist_sample
    return (x[0].view(28, 28).numpy() * 255).round().astype(np.uint8), int(y[0])


def test_open_image_gives_float_chw_in_unit_range(tmp_path, digit):
    pixels, _ = digit
    PIL.Image.fromarray(pixels).save(tmp_path / "d.png")
    im = open_image(tmp_path / "d.png")
    assert im.shape == (3, 28, 28) and im.size == (28, 28) and im.data.dtype == torch.float32
    assert torch.equal((im.data[0] * 255).round().to(torch.uint8), torch.from_numpy(pixels))
    assert torch.equal(im.data[0], im.data[2])  # grey converted to RGB
    gray = open_image(tmp_path / "d.png", convert_mode="L")
    assert gray.shape == (1, 28, 28)
    from_bytes = open_image((tmp_path / "d.png").read_bytes())
    assert torch.equal(from_bytes.data, im.data)


def test_resize_save_and_show(tmp_path, digit):
    pixels, _ = digit
    im = Image(torch.from_numpy(pixels).float().div(255)[None].repeat(3, 1, 1))
    big = im.resize(56)
    assert big.shape == (3, 56, 56) and 0 <= big.data.min() and big.data.max() <= 1
    assert im.resize((14, 20)).size == (14, 20)
    big.save(tmp_path / "big.jpg")
    again = open_image(tmp_path / "big.jpg")
    assert again.size == (56, 56) and (again.data - big.data).abs().mean() < 0.02  # JPEG is lossy
    ax = im.show(title="a digit")
    assert ax.get_title() == "a digit"
    assert im._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_images_give_clear_errors(tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image")
    with pytest.raises(DataError, match=r"cannot read an image .*notes\.png"):
        open_image(tmp_path / "notes.png")
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[:60])
    with pytest.raises(DataError, match=r"cut\.png"):
        open_image(tmp_path / "cut.png")
    with pytest.raises(DataError, match="no such image file"):
        open_image(tmp_path / "missing.png")


def test_get_image_files_filters_sorts_and_recurses(tmp_path, digit):
    pixels, _ = digit
    for rel in ["b.png", "a.JPG", "sub/c.png", "other/d.png", ".hidden.png", "notes.txt"]:
        f = tmp_path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        if f.suffix.lower() in (".png", ".jpg"):
            PIL.Image.fromarray(pixels).save(f, format="PNG" if f.suffix == ".png" else "JPEG")
        else:
            f.write_text("x")
    assert [p.name for p in get_image_files(tmp_path)] == ["a.JPG", "b.png"]
    assert [p.relative_to(tmp_path).as_posix() for p in get_image_files(tmp_path, recurse=True)] == \
        ["a.JPG", "b.png", "other/d.png", "sub/c.png"]
    assert [p.name for p in get_image_files(tmp_path, recurse=True, include=["sub"])] == ["a.JPG", "b.png", "c.png"]
    with pytest.raises(DataError, match="not a folder"):
        get_image_files(tmp_path / "b.png")


def _float_to_8bit(im):
    """The float64 formula `to_8bit` used before it went integer: the reference its results must equal."""
    a = np.asarray(im).astype(np.float64)
    if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) > 255):
        a = a / 257.0
    elif im.mode == "F" and a.max(initial=0) <= 1.0:
        a = a * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def test_16bit_and_float_greyscale_scale_to_8_bits_as_the_float_formula_did(tmp_path):
    from deftly.vision.image import to_8bit

    gradient = np.arange(65536, dtype=np.uint16).reshape(256, 256)  # every 16-bit value once
    cases = [gradient, gradient.astype(">u2"), gradient.astype(np.int32),
             np.arange(-70000, 70000, 7, dtype=np.int32).reshape(100, 200),  # 32-bit, out of 16-bit range
             np.arange(256, dtype=np.int32).reshape(16, 16),  # 32-bit holding 8-bit values: not scaled
             np.linspace(0, 1, 1000, dtype=np.float32).reshape(10, 100),
             np.linspace(-3, 300, 1000, dtype=np.float32).reshape(10, 100)]
    for a in cases:
        im = PIL.Image.fromarray(a)
        out = to_8bit(im)
        assert out.mode == "L" and np.array_equal(np.asarray(out), _float_to_8bit(im)), (im.mode, a.dtype)
    PIL.Image.fromarray(gradient).save(tmp_path / "sixteen.png")  # a real 16-bit PNG through open_image
    im = open_image(tmp_path / "sixteen.png", convert_mode="L")
    assert im.data[0, 0, 0] == 0 and im.data[0, -1, -1] == 1  # scaled by the bit depth, not clipped
    assert torch.equal((im.data[0] * 255).round().to(torch.uint8), torch.from_numpy(_float_to_8bit(
        PIL.Image.fromarray(gradient))))


def test_16bit_conversion_needs_no_float64_temporaries():
    import tracemalloc

    from deftly.vision.image import to_8bit

    side = 1000
    im = PIL.Image.fromarray((np.arange(side * side) % 65536).astype(np.uint16).reshape(side, side))
    tracemalloc.start()
    try:
        to_8bit(im)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / side**2 < 8, f"{peak / side**2:.1f} bytes a pixel"  # float64 temporaries took ~24
