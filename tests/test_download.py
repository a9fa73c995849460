"""untar_data / download_url against a local HTTP server: caching, resume, retries, checksums, and
hostile archives that must be refused without writing anything outside (or half-done) on disk."""
from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from deftly.core.errors import DataError
from deftly.core.paths import DeftlyPath
from deftly.datasets import URLs, download_url, load_mnist_sample, untar_data
from deftly.datasets.download import extract_archive, file_sha256
from deftly.datasets.urls import archive_url, url_name

# ------------------------------------------------------------------------------------------ fixtures


class _State:
    """What the test server serves and what it saw."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.fail_next = 0  # answer this many requests with 500 first
        self.support_range = True
        self.cut_next = 0  # send only half the body (with the full Content-Length) this many times
        self.lock = threading.Lock()


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            with state.lock:
                state.requests.append((self.path, rng))
                fail = state.fail_next > 0
                if fail:
                    state.fail_next -= 1
            if fail:
                self.send_error(500, "deliberate failure")
                return
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404, "not here")
                return
            if rng and state.support_range and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[6:-1])
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                body = body[start:]
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            with state.lock:
                cut = state.cut_next > 0
                if cut:
                    state.cut_next -= 1
            if cut:  # the connection drops half-way
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


class _Server:
    def __init__(self, state: _State, port: int):
        self.state, self.port = state, port

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/data/{name}"

    def serve(self, name: str, body: bytes, suffix: str = ".tgz") -> str:
        """Serve `body` as the archive of dataset `name`; return the dataset URL (no extension)."""
        self.state.files[f"/data/{name}{suffix}"] = body
        return self.url(name)


@pytest.fixture
def server():
    state = _State()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield _Server(state, httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("DEFTLY_HOME", str(path))
    return path


_DIGITS = None


def _digit_pngs(n: int = 6) -> list[tuple[str, bytes]]:
    """(relative name, PNG bytes) of n real MNIST digits, as `train/<label>/<i>.png`."""
    global _DIGITS
    if _DIGITS is None:
        (x, y), _ = load_mnist_sample(flatten=False)
        _DIGITS = (x[:n].mul(255).byte().numpy(), y[:n].tolist())
    images, labels = _DIGITS
    out = []
    for i, (img, label) in enumerate(zip(images, labels)):
        buf = io.BytesIO()
        Image.fromarray(img, mode="L").save(buf, format="PNG")
        out.append((f"train/{label}/{i}.png", buf.getvalue()))
    return out


def _tgz(top: str, files: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [("labels.csv", b"name,label\n")] + files:
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _hostile_tgz(kind: str, outside: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("evilset/ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        if kind == "absolute":
            info = tarfile.TarInfo(str(outside / "pwned.txt"))
            info.size = 5
            tar.addfile(info, io.BytesIO(b"pwned"))
        elif kind == "dotdot":
            info = tarfile.TarInfo("evilset/../../../outside/pwned.txt")
            info.size = 5
            tar.addfile(info, io.BytesIO(b"pwned"))
        elif kind == "symlink":
            link = tarfile.TarInfo("evilset/link")
            link.type, link.linkname = tarfile.SYMTYPE, str(outside)
            tar.addfile(link)
            info = tarfile.TarInfo("evilset/link/pwned.txt")
            info.size = 5
            tar.addfile(info, io.BytesIO(b"pwned"))
        elif kind == "symlink_relative":
            link = tarfile.TarInfo("evilset/sub/link")
            link.type, link.linkname = tarfile.SYMTYPE, "../../../outside"
            tar.addfile(link)
        elif kind == "hardlink":
            link = tarfile.TarInfo("evilset/hard")
            link.type, link.linkname = tarfile.LNKTYPE, str(outside / "secret.txt")
            tar.addfile(link)
        elif kind == "hardlink_relative":
            link = tarfile.TarInfo("evilset/hard")
            link.type, link.linkname = tarfile.LNKTYPE, "../outside/secret.txt"
            tar.addfile(link)
        elif kind == "device":
            dev = tarfile.TarInfo("evilset/null")
            dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
            tar.addfile(dev)
        else:
            raise AssertionError(kind)
    return buf.getvalue()


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ------------------------------------------------------------------------------------------ paths


def test_deftly_path_ls_and_division(tmp_path):
    for name in ["b.txt", "a.txt", "c"]:
        (tmp_path / name).touch()
    p = DeftlyPath(tmp_path)
    assert isinstance(p / "a.txt", DeftlyPath) and isinstance((p / "a.txt").parent, DeftlyPath)
    listing = p.ls()
    assert [q.name for q in listing] == ["a.txt", "b.txt", "c"]
    assert all(isinstance(q, DeftlyPath) for q in listing)
    assert not hasattr(Path(tmp_path), "ls")  # pathlib itself is untouched


def test_url_names_and_archives():
    assert URLs.MNIST_SAMPLE == "http://files.fast.ai/data/examples/mnist_sample"
    assert URLs.PETS == "https://s3.amazonaws.com/fast-ai-imageclas/oxford-iiit-pet"
    assert URLs.CAMVID == "https://s3.amazonaws.com/fast-ai-imagelocal/camvid"
    assert url_name(URLs.MNIST_SAMPLE) == "mnist_sample"
    assert archive_url(URLs.MNIST_SAMPLE) == URLs.MNIST_SAMPLE + ".tgz"
    assert archive_url(URLs.ML_100k).endswith("ml-100k.zip")
    assert url_name("http://x/y/data.tar.gz") == "data"
    for attr in ["PETS", "MNIST_SAMPLE", "MNIST_TINY", "MNIST", "PLANET_TINY", "CAMVID", "CAMVID_TINY",
                 "BIWI_HEAD_POSE", "IMDB", "IMDB_SAMPLE", "WT103", "ADULT_SAMPLE", "ML_SAMPLE", "ML_100k",
                 "HUMAN_NUMBERS"]:
        assert getattr(URLs, attr).startswith("http")


# ------------------------------------------------------------------------------------------ downloads


def test_download_extract_cache_and_force(server, home):
    pngs = _digit_pngs()
    url = server.serve("digits", _tgz("digits", pngs))
    path = untar_data(url, show_progress=False)
    assert isinstance(path, DeftlyPath) and path == home / "data" / "digits"
    assert [p.name for p in path.ls()] == ["labels.csv", "train"]
    first = path / pngs[0][0]
    assert isinstance(first, DeftlyPath)
    with Image.open(first) as im:
        assert im.size == (28, 28)
    assert (home / "archive" / "digits.tgz").is_file()
    assert len(server.state.requests) == 1

    assert untar_data(url, show_progress=False) == path  # cached: no new request
    assert len(server.state.requests) == 1

    server.serve("digits", _tgz("digits", pngs[:2] + [("extra.txt", b"new")]))
    again = untar_data(url, force_download=True, show_progress=False)
    assert len(server.state.requests) == 2
    assert (again / "extra.txt").read_bytes() == b"new"
    assert not (again / pngs[3][0]).exists()  # the old folder was replaced, not merged
    assert sorted(p.name for p in (home / "data").iterdir()) == ["digits"]  # no temp folders left


def test_dest_and_fname_arguments(server, home, tmp_path):
    url = server.serve("digits", _tgz("digits", _digit_pngs(2)))
    path = untar_data(url, fname=tmp_path / "arch" / "d.tgz", dest=tmp_path / "elsewhere", show_progress=False)
    assert path == tmp_path / "elsewhere" / "digits" and (path / "labels.csv").exists()
    assert (tmp_path / "arch" / "d.tgz").is_file()


def test_zip_archive(server, home):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ratings/u.data", "196\t242\t3\t881250949\n")
        zf.writestr("ratings/README", "movielens-like")
    url = server.serve("ratings", buf.getvalue(), suffix=".zip")
    path = untar_data(url + ".zip", show_progress=False)
    assert path == home / "data" / "ratings"
    assert (path / "u.data").read_text().startswith("196")


def test_resume_with_range(server, home):
    body = _tgz("digits", _digit_pngs())
    url = server.serve("digits", body)
    part = home / "archive" / "digits.tgz.part"
    part.parent.mkdir(parents=True)
    half = len(body) // 2
    part.write_bytes(body[:half])
    path = untar_data(url, show_progress=False)
    assert server.state.requests == [("/data/digits.tgz", f"bytes={half}-")]
    assert (home / "archive" / "digits.tgz").read_bytes() == body
    assert not part.exists() and (path / "labels.csv").exists()


def test_server_without_range_restarts_from_zero(server, tmp_path):
    body = b"0123456789" * 1000
    server.state.support_range = False
    server.state.files["/f.bin"] = body
    dest = tmp_path / "f.bin"
    Path(str(dest) + ".part").write_bytes(b"garbage!")
    download_url(f"http://127.0.0.1:{server.port}/f.bin", dest, show_progress=False)
    assert dest.read_bytes() == body


def test_retries_then_success(server, tmp_path):
    body = b"payload" * 100
    server.state.files["/f.bin"] = body
    server.state.fail_next = 2
    dest = download_url(f"http://127.0.0.1:{server.port}/f.bin", tmp_path / "f.bin", retries=3, backoff=0.01,
                        show_progress=False)
    assert dest.read_bytes() == body
    assert len(server.state.requests) == 3


def test_dropped_connection_is_resumed(server, tmp_path):
    body = bytes(range(256)) * 200
    server.state.files["/f.bin"] = body
    server.state.cut_next = 1
    dest = download_url(f"http://127.0.0.1:{server.port}/f.bin", tmp_path / "f.bin", backoff=0.01,
                        show_progress=False)
    assert dest.read_bytes() == body
    assert [r for _, r in server.state.requests] == [None, f"bytes={len(body) // 2}-"]


def test_too_many_failures(server, tmp_path):
    server.state.files["/f.bin"] = b"x"
    server.state.fail_next = 10
    url = f"http://127.0.0.1:{server.port}/f.bin"
    with pytest.raises(DataError, match="gave up after 3 attempts") as err:
        download_url(url, tmp_path / "f.bin", retries=2, backoff=0.01, show_progress=False)
    assert url in str(err.value)
    assert not (tmp_path / "f.bin").exists()


def test_404_is_a_clear_error(server, home):
    url = server.url("missing")
    with pytest.raises(DataError, match="HTTP 404") as err:
        untar_data(url, show_progress=False)
    assert archive_url(url) in str(err.value)
    assert len(server.state.requests) == 1  # a 404 is not retried
    assert not (home / "data" / "missing").exists()


def test_checksums(server, home, monkeypatch):
    body = _tgz("digits", _digit_pngs(2))
    url = server.serve("digits", body)
    with pytest.raises(DataError, match="checksum mismatch") as err:
        untar_data(url, checksums={url: "0" * 64}, show_progress=False)
    assert url in str(err.value)
    assert not (home / "archive" / "digits.tgz").exists()
    assert not (home / "archive" / "digits.tgz.part").exists()
    assert not (home / "data" / "digits").exists()

    monkeypatch.setitem(URLs.checksums, url, hashlib.sha256(body).hexdigest())
    path = untar_data(url, show_progress=False)
    assert (path / "labels.csv").exists()
    assert file_sha256(home / "archive" / "digits.tgz") == URLs.checksums[url]


def test_progress_output(server, tmp_path, capsys):
    server.state.files["/f.bin"] = b"z" * 50_000
    url = f"http://127.0.0.1:{server.port}/f.bin"
    download_url(url, tmp_path / "a.bin", show_progress=False)
    assert capsys.readouterr().err == ""
    download_url(url, tmp_path / "b.bin", chunk_size=4096)  # stderr is not a TTY under capsys
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert 1 <= len(lines) <= 6 and url in lines[0]
    assert "\r" not in err and "\x1b" not in err


# ------------------------------------------------------------------------------------------ hostile


@pytest.mark.parametrize("data_filter", [True, False], ids=["with_data_filter", "without_data_filter"])
@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink", "symlink_relative", "hardlink",
                                  "hardlink_relative", "device"])
def test_hostile_tar_is_refused(server, home, tmp_path, monkeypatch, kind, data_filter):
    if not data_filter and hasattr(tarfile, "data_filter"):  # as on Pythons before 3.11.4
        monkeypatch.delattr(tarfile, "data_filter")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    url = server.serve("evilset", _hostile_tgz(kind, outside))
    before = _snapshot(tmp_path)
    with pytest.raises(DataError, match="unsafe archive") as err:
        untar_data(url, show_progress=False)
    assert "evilset.tgz" in str(err.value)
    assert not (outside / "pwned.txt").exists()
    assert (outside / "secret.txt").read_text() == "secret"
    assert list((home / "data").iterdir()) == []  # no partial or temporary folder
    created = _snapshot(tmp_path) - before
    assert created <= {"home", "home/data", "home/archive", "home/archive/evilset.tgz"}


def test_hostile_zip_is_refused(server, home, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("evilzip/ok.txt", "ok")
        zf.writestr("evilzip/../../../pwned.txt", "pwned")
    url = server.serve("evilzip", buf.getvalue(), suffix=".zip")
    with pytest.raises(DataError, match="unsafe archive.*'..'"):
        untar_data(url + ".zip", show_progress=False)
    assert not (tmp_path / "pwned.txt").exists() and not (home / "pwned.txt").exists()
    assert list((home / "data").iterdir()) == []


def test_truncated_archive(server, home):
    body = _tgz("digits", _digit_pngs())
    url = server.serve("digits", body[: len(body) // 2])
    with pytest.raises(DataError, match="truncated") as err:
        untar_data(url, show_progress=False)
    assert "digits.tgz" in str(err.value)
    assert list((home / "data").iterdir()) == []


def test_extract_archive_flat_layout(tmp_path):
    arch = tmp_path / "flat.tar"
    with tarfile.open(arch, "w") as tar:
        for name in ["a.txt", "b/c.txt"]:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"1"))
    path = extract_archive(arch, tmp_path / "out")
    assert [p.name for p in path.ls()] == ["a.txt", "b"]


def test_bundled_sample_needs_no_network(home, monkeypatch):
    monkeypatch.setenv("DEFTLY_OFFLINE", "1")
    path = untar_data(URLs.MNIST_TINY, show_progress=False)
    assert path == home / "data" / "mnist_tiny" and path.ls()
    assert not (home / "archive").exists()


def test_a_failed_download_of_a_course_dataset_falls_back_to_the_bundled_stand_in(home, monkeypatch):
    from deftly.datasets import download

    monkeypatch.delenv("DEFTLY_OFFLINE", raising=False)

    def unreachable(url, *args, **kwargs):
        raise DataError(f"cannot reach {url}")

    monkeypatch.setattr(download, "download_url", unreachable)
    with pytest.warns(UserWarning, match="bundled stand-in for mnist_tiny"):
        path = untar_data(URLs.MNIST_TINY, show_progress=False)
    assert sorted(p.name for p in path.ls()) == ["labels.csv", "models", "test", "train", "valid"]
    with pytest.raises(DataError, match="cannot reach"):
        untar_data(URLs.MNIST, show_progress=False)  # nothing bundled for the full set: the error stands
