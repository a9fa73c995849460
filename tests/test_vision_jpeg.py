"""The JPEG fast path (deftly.vision.jpeg) gives PIL's pixels, and hands everything else to PIL."""
import io

import numpy as np
import PIL.Image
import PIL.ImageOps
import pytest
import skimage.data

from deftly.core import ConfigError, DataError
from deftly.vision.data import ImageList
from deftly.vision.image import read_pil
from deftly.vision.jpeg import decode_rgb, draft_scale

PHOTOS = ["chelsea", "coffee", "astronaut"]  # real photographs shipped by scikit-image
ENCODINGS = [dict(quality=90), dict(quality=75, progressive=True), dict(quality=95, subsampling=0),
             dict(quality=85, subsampling=1)]


def jpeg(name: str, mode: str = "RGB", **kwargs) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(getattr(skimage.data, name)()).convert(mode).save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


def pil_rgb(data: bytes, draft=None) -> np.ndarray:
    with PIL.Image.open(io.BytesIO(data)) as im:
        if draft is not None:
            im.draft("RGB", draft)
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("kwargs", ENCODINGS, ids=["baseline", "progressive", "444", "422"])
def test_same_pixels_as_pil(name, kwargs):
    data = jpeg(name, **kwargs)
    w, h = PIL.Image.open(io.BytesIO(data)).size
    for draft in (None, (w, h), (w // 2, h // 2), (w // 3, h // 5), (w // 8, h // 8), (w // 20, h // 20)):
        fast = decode_rgb(data, draft)
        assert fast is not None and fast.mode == "RGB"
        expected = pil_rgb(data, draft)
        assert np.array_equal(np.asarray(fast), expected), (draft, fast.size, expected.shape)


def test_greyscale_jpeg_becomes_rgb_as_pil_converts_it():
    data = jpeg("coffee", "L")
    assert np.array_equal(np.asarray(decode_rgb(data)), pil_rgb(data))


def test_draft_scale_is_pils_choice():
    assert draft_scale((500, 375), None) == 1
    assert draft_scale((500, 375), (224, 224)) == 1  # 375 < 2 * 224
    assert draft_scale((500, 375), (128, 128)) == 2
    assert draft_scale((500, 375), (64, 64)) == 4
    assert draft_scale((500, 375), (20, 20)) == 8
    assert draft_scale((28, 28), (128, 128)) == 1


def test_other_files_go_through_pil(tmp_path, monkeypatch):
    cmyk = jpeg("coffee", "CMYK")
    assert decode_rgb(cmyk) is None  # PIL converts CMYK itself
    (tmp_path / "cmyk.jpg").write_bytes(cmyk)
    assert np.array_equal(np.asarray(read_pil(tmp_path / "cmyk.jpg", pixels_only=True)), pil_rgb(cmyk))
    png = io.BytesIO()
    PIL.Image.fromarray(skimage.data.coffee()).save(png, format="PNG")
    assert decode_rgb(png.getvalue()) is None
    data = jpeg("chelsea")
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)  # PIL's decompression-bomb check must still run
    assert decode_rgb(data) is None
    with pytest.raises(DataError, match="cannot read an image"):
        read_pil(data, pixels_only=True)


def test_damaged_jpegs_keep_pils_errors(tmp_path):
    data = jpeg("chelsea")
    for cut in (len(data) // 2, len(data) - 10, 150, 2):
        assert decode_rgb(data[:cut]) is None
        (tmp_path / "cut.jpg").write_bytes(data[:cut])
        with pytest.raises(DataError, match=r"cannot read an image .*cut\.jpg"):
            read_pil(tmp_path / "cut.jpg", pixels_only=True)
    garbage = data[:200] + b"\x00" * 300
    assert decode_rgb(garbage) is None


def test_read_pil_uses_it_for_files_and_bytes_when_asked_for_pixels_only(tmp_path):
    data = jpeg("astronaut")
    (tmp_path / "a.jpg").write_bytes(data)
    for source in (tmp_path / "a.jpg", str(tmp_path / "a.jpg"), data):
        im = read_pil(source, draft=(100, 100), pixels_only=True)
        assert im.size == (128, 128) and np.array_equal(np.asarray(im), pil_rgb(data, (100, 100)))
        assert im.format is None  # decoded by the fast path, not a PIL JpegImageFile
        assert read_pil(source, draft=(100, 100)).format == "JPEG"  # by default: PIL, metadata and all
    grey = read_pil(data, convert_mode="L", pixels_only=True)  # other modes: PIL
    assert grey.mode == "L" and grey.size == (512, 512)
    with pytest.raises(ConfigError, match="draft"):
        read_pil(data, draft=(0, 10))


def test_exif_reaches_after_open(tmp_path):
    """A loader with an after_open function gets PIL's image, EXIF included (here: rotate by it)."""
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    PIL.Image.fromarray(skimage.data.coffee()).save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    items = ImageList([tmp_path / "rotated.jpg"], after_open=PIL.ImageOps.exif_transpose)
    assert items[0].shape == (3, 600, 400)
    assert ImageList([tmp_path / "rotated.jpg"])[0].shape == (3, 400, 600)  # pixels as stored


def test_mpo_files_are_drafted_like_jpegs(tmp_path):
    """Multi-picture JPEGs (phone photos) decode their first frame at the same draft scale either way."""
    frames = [PIL.Image.fromarray(skimage.data.coffee()), PIL.Image.fromarray(skimage.data.chelsea()).resize((600, 400))]
    frames[0].save(tmp_path / "two.mpo", format="MPO", save_all=True, append_images=frames[1:])
    data = (tmp_path / "two.mpo").read_bytes()
    slow, fast = read_pil(data, draft=(100, 100)), read_pil(data, draft=(100, 100), pixels_only=True)
    assert slow.size == fast.size == (150, 100) and np.array_equal(np.asarray(slow), np.asarray(fast))


def test_tiny_jpegs_match_pil_at_every_draft():
    for side in range(1, 20):
        buffer = io.BytesIO()
        PIL.Image.fromarray(skimage.data.astronaut()).resize((side, side)).save(buffer, format="JPEG")
        data = buffer.getvalue()
        for d in range(1, side + 1):
            fast = decode_rgb(data, (d, d))
            if fast is not None:
                assert np.array_equal(np.asarray(fast), pil_rgb(data, (d, d))), (side, d)
