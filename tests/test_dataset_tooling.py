"""Lesson 2's dataset tooling: download_images against a server on 127.0.0.1 (good, corrupt,
non-image, slow, flaky and missing files) and verify_images on a folder of real good, broken and
odd images."""
from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest

from deftly.core.errors import ConfigError, DataError
from deftly.datasets import download_images, verify_images

HTML = b"<!DOCTYPE html><html><head><title>Not found</title></head><body>gone</body></html>"


@pytest.fixture(scope="module")
def real_images(data_home):
    """Bytes of real images: a Pets-sample JPEG (RGB) and an MNIST PNG (greyscale), and their PIL images."""
    jpg_file = sorted((data_home["pets"] / "images").glob("*.jpg"))[0]
    png_file = sorted((data_home["tiny"] / "train" / "3").glob("*.png"))[0]
    return SimpleNamespace(jpg=jpg_file.read_bytes(), png=png_file.read_bytes(),
                           pil=PIL.Image.open(jpg_file).convert("RGB"), grey=PIL.Image.open(png_file).convert("L"))


def encode(im: PIL.Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ download


def test_download_images_keeps_real_images_and_skips_the_rest(file_server, real_images, tmp_path):
    state, base = file_server
    state.files.update({"/a.jpg": real_images.jpg, "/b.png": real_images.png, "/photo?id=3": real_images.jpg,
                        "/corrupt.jpg": real_images.jpg[: len(real_images.jpg) // 2], "/page.jpg": HTML,
                        "/slow.jpg": real_images.jpg, "/flaky.png": real_images.png})
    state.slow.add("/slow.jpg")
    state.flaky["/flaky.png"] = 1
    names = ["/a.jpg", "/b.png", "/photo?id=3", "/corrupt.jpg", "/page.jpg", "/slow.jpg", "/missing.jpg",
             "/flaky.png"]
    urls = tmp_path / "urls.txt"
    urls.write_text("# black bears\n" + "\n".join(base + n for n in names) + "\n\n" + base + "/a.jpg\n")
    dest = tmp_path / "bears" / "black"

    result = download_images(urls, dest, max_workers=4, timeout=0.5, retries=1, show_progress=False)

    assert [p.name for p in result.saved] == ["00000000.jpg", "00000001.png", "00000002.jpg", "00000007.png"]
    assert (dest / "00000000.jpg").read_bytes() == real_images.jpg  # saved as served
    assert (dest / "00000007.png").read_bytes() == real_images.png  # after one 503, the retry worked
    for file in result.saved:
        with PIL.Image.open(file) as im:
            im.load()
    reasons = dict(result.failed)
    assert set(reasons) == {base + n for n in ("/corrupt.jpg", "/page.jpg", "/slow.jpg", "/missing.jpg")}
    assert "not a readable image" in reasons[base + "/corrupt.jpg"]
    assert "web page" in reasons[base + "/page.jpg"]
    assert "timed out" in reasons[base + "/slow.jpg"] and "2 attempts" in reasons[base + "/slow.jpg"]
    assert "HTTP 404" in reasons[base + "/missing.jpg"]
    assert state.requests.count("/a.jpg") == 1  # the repeated URL is fetched once
    assert sorted(p.name for p in dest.iterdir()) == [p.name for p in result.saved]  # no partial files left


def test_download_images_serial_shows_each_error_and_max_pics(file_server, real_images, tmp_path, capsys):
    state, base = file_server
    state.files.update({"/a.jpg": real_images.jpg, "/page.jpg": HTML, "/c.jpg": real_images.jpg})
    urls = [base + "/a.jpg", base + "/missing.jpg", base + "/page.jpg", base + "/c.jpg"]

    result = download_images(urls, tmp_path / "out", max_pics=3, max_workers=0, timeout=1, show_progress=False)

    assert [p.name for p in result.saved] == ["00000000.jpg"]
    assert "/c.jpg" not in state.requests  # beyond max_pics
    err = capsys.readouterr().err.splitlines()
    assert err == [f"Error {base}/missing.jpg: HTTP 404 not here",
                   f"Error {base}/page.jpg: a web page or text, not an image"]


def test_download_images_progress_in_a_log_is_plain_lines(file_server, real_images, tmp_path, capsys):
    state, base = file_server
    state.files["/a.jpg"] = real_images.jpg
    download_images([base + "/a.jpg", base + "/gone.jpg"], tmp_path / "out", show_progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    assert f"downloading images to {tmp_path / 'out'}: 2 files" in err
    assert "100% [2/2]" in err and f"skipped {base}/gone.jpg: HTTP 404" in err
    assert err.rstrip().endswith("1 of 2 images saved in " + str(tmp_path / "out") + " (1 skipped)")


def test_download_images_refuses_a_decompression_bomb(file_server, tmp_path):
    state, base = file_server
    state.files["/bomb.png"] = encode(PIL.Image.new("L", (2000, 1000)), "PNG")  # 2 MP in a few kB
    result = download_images([base + "/bomb.png"], tmp_path / "out", max_pixels=1_000_000, show_progress=False)
    assert not result.saved and "decompression bomb" in result.failed[0][1]


def test_download_images_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="no such file of URLs"):
        download_images(tmp_path / "nothing.txt", tmp_path / "out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        download_images(["http://127.0.0.1:9/a.jpg"], tmp_path / "file")
    with pytest.raises(ConfigError):
        download_images(["http://127.0.0.1:9/a.jpg"], tmp_path / "out", max_pics=-1)
    result = download_images(["ftp://example.org/a.jpg", "file:///etc/passwd"], tmp_path / "out",
                             show_progress=False)
    assert not result.saved and all("not an http(s) URL" in r for _, r in result.failed)


# ------------------------------------------------------------------------------------------ verify


@pytest.fixture
def messy_folder(tmp_path, real_images):
    """A folder of good, broken and odd images, a bad file outside it reached by a symlink, and a
    sub-folder verify_images leaves alone without `recurse`."""
    folder = tmp_path / "bears"
    (folder / "sub").mkdir(parents=True)
    (folder / "good.jpg").write_bytes(real_images.jpg)
    (folder / "grey.png").write_bytes(real_images.png)
    (folder / "truncated.jpg").write_bytes(real_images.jpg[: len(real_images.jpg) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "page.png").write_bytes(HTML)
    (folder / "cmyk.jpg").write_bytes(encode(real_images.pil.convert("CMYK"), "JPEG", quality=95))
    rgba = real_images.pil.convert("RGBA")
    alpha = np.full((rgba.height, rgba.width), 255, np.uint8)
    alpha[:, : rgba.width // 2] = 0  # left half transparent
    rgba.putalpha(PIL.Image.fromarray(alpha))
    (folder / "rgba.png").write_bytes(encode(rgba, "PNG"))
    (folder / "big.jpg").write_bytes(encode(real_images.pil.resize((300, 150)), "JPEG"))
    (folder / "notes.txt").write_text("not an image file name: never looked at")
    (folder / "sub" / "bad.jpg").write_bytes(b"junk")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"junk outside the folder")
    (folder / "link.jpg").symlink_to(outside)
    return folder


def test_verify_images_deletes_broken_files_resizes_and_converts(messy_folder, real_images, tmp_path):
    folder = messy_folder
    result = verify_images(folder, delete=True, max_size=100, max_workers=2, show_progress=False)

    bad = {p.name for p, _ in result.bad}
    assert bad == {"truncated.jpg", "empty.jpg", "page.png", "link.jpg"}
    assert {p.name for p in result.deleted} == bad and result.ok
    assert result.checked == 9
    assert sorted(p.name for p in folder.iterdir()) == ["big.jpg", "cmyk.jpg", "good.jpg", "grey.png", "notes.txt",
                                                        "rgba.png", "sub"]
    assert (tmp_path / "outside.jpg").read_bytes() == b"junk outside the folder"  # only the link went
    assert (folder / "sub" / "bad.jpg").exists()  # not recursed into
    assert (folder / "good.jpg").read_bytes() == real_images.jpg  # nothing to do: untouched
    assert {p.name for p in result.written} == {"big.jpg", "cmyk.jpg", "grey.png", "rgba.png"}
    for name in ("big.jpg", "cmyk.jpg", "grey.png", "rgba.png"):
        with PIL.Image.open(folder / name) as im:
            assert im.mode == "RGB", name
            size = im.size
    with PIL.Image.open(folder / "big.jpg") as im:
        assert im.size == (100, 50)  # longer side 100, aspect ratio kept
    with PIL.Image.open(folder / "rgba.png") as im:
        a = np.asarray(im)
    assert (a[:, : a.shape[1] // 2] == 255).all()  # transparency became white, not black
    with PIL.Image.open(folder / "cmyk.jpg") as im:
        diff = np.abs(np.asarray(im, dtype=np.int16) - np.asarray(real_images.pil, dtype=np.int16))
    assert diff.mean() < 12 and size == (28, 28)


def test_verify_images_reports_without_deleting_and_writes_to_dest(messy_folder, capsys):
    folder = messy_folder
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    result = verify_images(folder, delete=False, max_size=64, dest="small", max_workers=0, show_progress=False,
                           ext=".png", recurse=True)

    assert not result.ok and not result.deleted
    assert {p.name for p, _ in result.bad} == {"truncated.jpg", "empty.jpg", "page.png", "link.jpg", "bad.jpg"}
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before  # originals untouched
    assert sorted(p.name for p in (folder / "small").iterdir()) == ["big.png", "cmyk.png", "grey.png", "rgba.png"]
    with PIL.Image.open(folder / "small" / "big.png") as im:
        assert im.format == "PNG" and im.size == (64, 32)
    err = capsys.readouterr().err  # one at a time: each problem printed as it is found
    assert f"cannot read image {folder / 'empty.jpg'}: not an image" in err
    assert f"cannot read image {folder / 'truncated.jpg'}:" in err and "(deleted)" not in err

    again = verify_images(folder, delete=False, max_size=64, dest="small", show_progress=False, ext=".png",
                          recurse=True)
    assert again.written == []  # resumed: the copies in dest are there already


def test_verify_images_channels_format_and_bombs(tmp_path, real_images):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(real_images.jpg)
    (folder / "huge.png").write_bytes(encode(PIL.Image.new("L", (2000, 1000)), "PNG"))
    result = verify_images(folder, n_channels=1, ext="png", max_pixels=1_000_000, delete=False, show_progress=False)
    assert [p.name for p in result.written] == ["a.png"]
    assert not (folder / "a.jpg").exists()  # rewritten in place under its new extension
    with PIL.Image.open(folder / "a.png") as im:
        assert im.mode == "L" and im.format == "PNG"
    assert result.bad == [(folder / "huge.png", result.bad[0][1])] and "decompression bomb" in result.bad[0][1]
    assert (folder / "huge.png").exists()

    other = tmp_path / "other"
    other.mkdir()
    (other / "x.jpg").write_bytes(real_images.jpg)
    (other / "x.png").write_bytes(real_images.png)
    clash = verify_images(other, n_channels=1, ext=".png", show_progress=False)  # x.jpg -> x.png: taken
    assert [(p.name, r) for p, r in clash.failed] == [("x.jpg", "its converted copy x.png would replace another file")]
    assert not clash.ok and (other / "x.jpg").read_bytes() == real_images.jpg
    with pytest.raises(ConfigError):
        verify_images(folder, n_channels=2)
    with pytest.raises(ConfigError, match="interpolation"):
        verify_images(folder, max_size=10, interp="sharpest")
    with pytest.raises(DataError, match="not a folder"):
        verify_images(folder / "a.png")
