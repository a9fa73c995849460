"""deftly.serve: every route and every refusal of the web app at the request level (Starlette's
TestClient), URL fetching against a server on 127.0.0.1, and `deftly serve` as a real uvicorn
server in a subprocess (wrong model files, a port in use, raw paths that try to reach files)."""
from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import PIL.Image
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from starlette.testclient import TestClient  # noqa: E402

from deftly.core.errors import ConfigError  # noqa: E402
from deftly.serve import RequestError, ServeSettings, create_app, ranked_prediction  # noqa: E402

ROOT = Path(__file__).parent.parent


def export_digit_model(tiny: Path, folder: Path) -> Path:
    """A small resnet18 on a few of the bundled MNIST 3s and 7s (28 px), trained one epoch on one
    thread (a few seconds) and exported to `folder/digits.pkl`; returns the file."""
    import torch

    from deftly.core.seed import set_seed
    from deftly.vision import ImageList, cnn_learner, get_transforms, imagenet_stats, models

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        set_seed(0)
        data = (ImageList.from_folder(tiny).filter_by_folder(include=["train", "valid"])
                .filter_by_rand(0.12, seed=0).split_by_folder().label_from_folder()
                .transform(get_transforms(do_flip=False), size=28).databunch(bs=16, num_workers=0)
                .normalize(imagenet_stats))
        learn = cnn_learner(data, models.resnet18, pretrained=False, lin_ftrs=[32], ps=0.2, progress=False)
        learn.fit(1, 1e-3)
        return learn.export(folder / "digits.pkl")
    finally:
        torch.set_num_threads(threads)


def digit_files(tiny: Path, n: int = 2) -> list[Path]:
    """`n` validation images of each digit."""
    return [f for d in ("3", "7") for f in sorted((tiny / "valid" / d).glob("*.png"))[:n]]


@pytest.fixture(scope="module")
def model_file(tiny, tmp_path_factory) -> Path:
    return export_digit_model(tiny, tmp_path_factory.mktemp("serve_model"))


@pytest.fixture(scope="module")
def learn(model_file):
    from deftly.export import load_learner

    return load_learner(model_file.parent, model_file.name)


@pytest.fixture(scope="module")
def client(learn):
    return TestClient(create_app(learn, name="digits.pkl"))


@contextlib.contextmanager
def uvicorn_thread(app):
    """`app` under uvicorn on a free port of 127.0.0.1, in a thread; yields its base URL."""
    import uvicorn

    from deftly.serve import listen

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def upload(client: TestClient, data: bytes, name: str = "digit.png", **fields: str):
    """POST /predict with `data` as the file field (and other form fields)."""
    return client.post("/predict", files={"file": (name, data, "application/octet-stream")}, data=fields or None)


def assert_error(response, status: int, pattern: str) -> None:
    """A JSON refusal with `status` whose message matches `pattern`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == status and re.search(pattern, body["error"]), body["error"]


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header announces width x height pixels, with next to no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def encoded(file: Path, fmt: str) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.open(file).save(buffer, format=fmt)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ routes


def test_health_and_page(client, learn):
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model": "digits.pkl", "classes": ["3", "7"],
                             "max_upload_bytes": 10 * 2 ** 20, "max_pixels": 40_000_000, "urls": True,
                             "bf16": False}

    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<title>digits.pkl: image classifier</title>" in html and "2 classes: 3, 7" in html
    assert 'type="file"' in html and 'id="url"' in html and 'data-max-bytes="10485760"' in html
    assert not re.search(r"(src|href)=\"(?!data:)", html) and "@import" not in html  # nothing loaded from elsewhere
    # the inline script and style are the only ones allowed, by their hashes
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    for tag in ("script", "style"):
        body = re.search(f"<{tag}>(.*?)</{tag}>", html, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.head("/").status_code == 200


def test_predict_upload_matches_learn_predict(client, learn, tiny):
    classes = ["3", "7"]
    for file in digit_files(tiny):
        answer = upload(client, file.read_bytes(), file.name)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        label, _, probs = learn.predict(str(file))
        assert body["prediction"] == str(label)
        assert body == {**ranked_prediction(learn, classes, str(file)),
                        "image": {"name": file.name, "format": "PNG", "width": 28, "height": 28}}
        probs_sent = [p for _, p in body["probabilities"]]
        assert probs_sent == sorted(probs_sent, reverse=True) and abs(sum(probs_sent) - 1) < 1e-4
        assert body["probabilities"][0][0] == body["prediction"]
        assert answer.headers["cache-control"] == "no-store"

    file = digit_files(tiny)[-1]
    for fmt in ("JPEG", "GIF", "WEBP", "BMP", "TIFF"):
        data = encoded(file, fmt)
        body = upload(client, data, f"digit.{fmt.lower()}").json()
        assert body["image"]["format"] == fmt and body == {
            **ranked_prediction(learn, classes, data), "image": body["image"]}
    top = upload(client, file.read_bytes(), top="1").json()
    assert len(top["probabilities"]) == 1 and top["probabilities"][0][0] == top["prediction"]


def test_bf16_predictions_agree_with_float32(model_file, learn, tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # to_bf16 warns on a CPU without native bf16: still correct, slower
        fast = TestClient(create_app(model_file, ServeSettings(bf16=True, parallel=1)))
    assert fast.get("/health").json()["bf16"] is True
    for file in digit_files(tiny):
        body = upload(fast, file.read_bytes(), file.name).json()
        label, _, probs = learn.predict(str(file))  # the float32 learner of the other tests
        assert body["prediction"] == str(label)
        sent = dict(body["probabilities"])
        assert max(abs(sent[c] - float(p)) for c, p in zip(["3", "7"], probs)) < 0.03

def test_routes_refuse_other_paths_and_methods(client, model_file):
    assert_error(client.get("/predict"), 405, r"GET is not allowed on '/predict' \(allowed: POST\)")
    assert_error(client.post("/"), 405, r"POST is not allowed on '/'")
    assert_error(client.post("/health"), 405, r"allowed: GET, HEAD\)")
    for path in ("/nope", "/static/app.py", f"/{model_file.name}", "/deftly/serve/app.py", "/etc/passwd",
                 "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd", "//etc/passwd", "/predict/x"):
        response = client.get(path)
        assert_error(response, 404, r"nothing at .*this server has GET /, POST /predict and GET /health")
        assert "root:" not in response.text


# ------------------------------------------------------------------------------------------ refusals


def test_bad_requests_say_what_was_wrong(client, tiny):
    good = digit_files(tiny)[0].read_bytes()
    assert_error(client.post("/predict", json={"file": "x"}), 415, r"takes multipart/form-data .* not application/json")
    assert_error(client.post("/predict", content=good, headers={"content-type": "image/png"}), 415, "not image/png")
    assert_error(client.post("/predict", content=good), 415, "without a Content-Type")
    assert_error(client.post("/predict", files={"top": (None, "2")}), 400, r"^no image: send a field `file`")
    assert_error(client.post("/predict", files={"file": (None, "hello")}), 400, "must be a file upload")
    assert_error(client.post("/predict", files={"url": ("u.txt", b"http://x/")}), 400, "`url` must be text")
    assert_error(upload(client, good, url="http://example.com/a.png"), 400, "either a `file` or a `url`, not both")
    assert_error(upload(client, good, colour="red"), 400, r"unknown form field 'colour'")
    assert_error(client.post("/predict", files=[("file", ("a.png", good)), ("file", ("b.png", good))]), 400,
                 r"cannot read the form: Too many files")
    assert_error(client.post("/predict", content=b"--xx\r\nnonsense", headers={
        "content-type": "multipart/form-data; boundary=yy"}), 400, "cannot read the form")
    assert_error(upload(client, good, top="two"), 400,
                 r"`top` must be a whole number >= 0 of at most 6 digits, got 'two'")
    assert_error(upload(client, b"", "empty.png"), 400, r"'empty.png' is empty \(0 bytes\)")
    assert_error(upload(client, b"hello, I am text", "notes.png"), 400,
                 r"'notes.png' is not an image; expected one of JPEG, PNG")
    assert_error(upload(client, b"<!doctype html><p>hi", "page.jpg"), 400, "looks like a web page")
    assert_error(upload(client, good[: len(good) // 2], "cut.png"), 400, r"'cut.png' is not a readable image")
    # formats PIL knows but a request may not use (EPS would run Ghostscript)
    assert_error(upload(client, b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "x.eps"), 400, "not an image")


def test_odd_numbers_and_undecodable_files_are_400s_not_500s(client, tiny):
    good = digit_files(tiny)[0].read_bytes()
    # str.isdigit() accepts these, int() does not (or refuses so many digits): a 400, never a 500
    for top in ("²", "٣", "1" * 5000, "-1", "1e3"):
        assert_error(upload(client, good, top=top), 400, r"`top` must be a whole number >= 0 of at most 6 digits")
    multipart = {"content-type": "multipart/form-data; boundary=b"}
    for length in ("²", "٣", "12 34", "-5"):
        headers = {**multipart, "content-length": length.encode()}
        assert_error(client.post("/predict", content=b"--b--\r\n", headers=headers), 400,
                     r"the Content-Length header must be a whole number of bytes")
    assert_error(client.post("/predict", content=b"--b--\r\n", headers={**multipart, "content-length": "9" * 5000}),
                 413, r"the request is a 5000-digit number of bytes, over the upload limit")

    # a TIFF whose header reads fine but whose strip offsets are a float: PIL's decoder raises a
    # TypeError, which is the file's fault (a 400), not the server's
    tiff = bytearray(encoded(digit_files(tiny)[0], "TIFF"))
    assert tiff[:4] == b"II*\x00"
    ifd = struct.unpack_from("<I", tiff, 4)[0]
    for i in range(struct.unpack_from("<H", tiff, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", tiff, entry)[0] == 273:  # StripOffsets: LONG -> DOUBLE
            struct.pack_into("<H", tiff, entry + 2, 12)
    assert_error(upload(client, bytes(tiff), "fuzzed.tif"), 400,
                 r"^the file 'fuzzed.tif' is not a readable image \(\w+: .*\)$")


def test_size_and_pixel_limits(learn, tiny):
    good = digit_files(tiny)[0].read_bytes()
    small = TestClient(create_app(learn, ServeSettings(max_upload_bytes=len(good) + 10, max_pixels=900)))
    assert upload(small, good).status_code == 200  # 784 pixels, under both limits
    big = encoded(digit_files(tiny)[0], "BMP")  # 28x28 BMP: over the byte limit
    assert len(big) > len(good) + 10
    assert_error(upload(small, big, "big.bmp"), 413, rf"the file is {len(big):,} bytes, over the upload limit")
    huge = b"x" * (len(good) + 64 * 1024)
    assert_error(upload(small, huge), 413, r"the request is [\d,]+ bytes, over the upload limit of")

    def chunks():  # no Content-Length: the body is counted as it comes
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
        for _ in range(10):
            yield b"x" * 8192

    multipart = {"content-type": "multipart/form-data; boundary=b"}
    assert_error(small.post("/predict", content=chunks(), headers=multipart), 413, "the request is over the upload limit")

    # decompression bombs: refused from the header, before any pixel is decoded
    assert_error(upload(small, png_header(31, 30), "wide.png"), 413,
                 r"31x30 pixels \(0.00093 megapixels\), over the limit")
    assert_error(upload(small, png_header(50_000, 50_000), "bomb.png"), 413,
                 "too large an image to decode|over the limit")
    default = TestClient(create_app(learn))
    assert_error(upload(default, png_header(8_000, 6_000), "bomb.png"), 413,
                 r"8000x6000 pixels \(48 megapixels\), over the limit of 40 megapixels \(a guard against decompression")
    assert_error(upload(default, png_header(50_000, 50_000), "bomb.png"), 413, "too large an image to decode")


def test_settings_and_model_kind_are_checked(learn):
    with pytest.raises(ConfigError, match="max_upload_bytes must be a whole number >= 1, got 0"):
        ServeSettings(max_upload_bytes=0)
    with pytest.raises(ConfigError, match="url_timeout must be more than 0"):
        ServeSettings(url_timeout=0)
    with pytest.raises(ConfigError, match="max_pending must be a whole number >= 1, got 2.5"):
        ServeSettings(max_pending=2.5)
    assert 1 <= ServeSettings().parallel <= 4
    from deftly.collab import CollabDataBunch, collab_learner
    import pandas as pd

    ratings = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [1, 2, 1, 3, 2], "rating": [4.0, 3.0, 5.0, 2.0, 1.0]})
    collab = collab_learner(CollabDataBunch.from_df(ratings, seed=0, bs=2), n_factors=2)
    with pytest.raises(ConfigError, match=r"ratings.pkl holds a collab model, not an image classifier: `deftly serve` "
                                          r"serves image classifiers"):
        create_app(collab, name="ratings.pkl")


def test_server_failures_are_json_without_details(learn, tiny):
    class Failing(type(learn)):
        """The same learner, but its predict fails as a bug in a model would."""

        def predict(self, item, **kwargs):
            raise RuntimeError("secret detail at /srv/models")

    failing = Failing.__new__(Failing)
    failing.__dict__.update(learn.__dict__)
    client = TestClient(create_app(failing), raise_server_exceptions=False)
    response = upload(client, digit_files(tiny)[0].read_bytes())
    assert_error(response, 500, r"^the server failed \(RuntimeError\); its log has the details$")
    assert "secret" not in response.text


def test_a_body_too_slow_to_arrive_is_refused(learn, tiny):
    good = digit_files(tiny)[0].read_bytes()
    head = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n" + good
            + b"\r\n--b--\r\n")
    with uvicorn_thread(create_app(learn, ServeSettings(read_timeout=0.5))) as base:
        port = int(base.rsplit(":", 1)[1].strip("/"))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.putrequest("POST", "/predict")
        connection.putheader("Content-Type", "multipart/form-data; boundary=b")
        connection.putheader("Content-Length", str(len(head)))
        connection.endheaders()
        connection.send(head[:40])  # ... and the rest never comes
        response = connection.getresponse()
        assert response.status == 408
        assert json.loads(response.read())["error"] == "the request body took more than 0.5 s to arrive"
        connection.close()


# ------------------------------------------------------------------------------------------ URLs


@pytest.fixture
def redirects():
    """A server on 127.0.0.1 whose /go?to=URL answers 302 to URL."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", parse_qs(urlsplit(self.path).query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/go?to="
    httpd.shutdown()
    httpd.server_close()


def test_predict_from_url(learn, tiny, file_server, redirects):
    files, base = file_server
    image = digit_files(tiny)[-1]
    files.files["/seven.png"] = image.read_bytes()
    files.files["/page.html"] = b"<html><body>not an image</body></html>"
    files.files["/big.png"] = b"\x89PNG" + b"x" * 5000
    files.slow.add("/slow.png")
    files.files["/slow.png"] = image.read_bytes()
    files.delay = 3.0
    local = TestClient(create_app(learn, ServeSettings(allow_local_urls=True, max_upload_bytes=4000, url_timeout=1)))

    def by_url(client, url):
        return client.post("/predict", files={"url": (None, url)})

    answer = by_url(local, f"{base}/seven.png")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {**ranked_prediction(learn, ["3", "7"], str(image)),
                             "image": {"name": f"{base}/seven.png", "format": "PNG", "width": 28, "height": 28}}
    assert by_url(local, f"{redirects}{base}/seven.png").json()["prediction"] == answer.json()["prediction"]
    assert_error(by_url(local, f"{base}/missing.png"), 400, "fetching the URL gave HTTP 404")
    assert_error(by_url(local, f"{base}/page.html"), 400,
                 rf"^the URL '{base}/page.html' is not an image \(it looks like a web page or text\)")
    assert_error(by_url(local, f"{base}/big.png"), 413, "the URL's image is 5,004 bytes, over the limit of 4,000")
    assert_error(by_url(local, f"{base}/slow.png"), 400, r"^the URL took more than 1 s to send its image$")
    assert_error(by_url(local, "ftp://127.0.0.1/a.png"), 400, "only http and https URLs can be fetched")
    assert_error(by_url(local, "file:///etc/passwd"), 400, "only http and https URLs")
    assert_error(by_url(local, f"{redirects}ftp://127.0.0.1/a.png"), 400, "only http and https")  # each hop checked
    assert_error(by_url(local, f"{redirects}file:///etc/passwd"), 400,
                 "the URL redirects to a URL this server does not fetch: only http and https URLs can be fetched")
    assert_error(by_url(local, f"{redirects}{redirects}{redirects}{redirects}{redirects}{redirects}{base}/seven.png"),
                 400, "the URL redirected more than 5 times")
    assert_error(by_url(local, "http://"), 400, "has no host")
    secret = f"http://me:hunter2@{base.split('//')[1]}/seven.png"
    response = by_url(local, secret)
    assert_error(response, 400, r"^the URL holds a user name or password \(user:password@host\)")
    assert "hunter2" not in response.text
    closed = base.rsplit(":", 1)[0] + ":1"
    assert_error(by_url(local, f"{closed}/a.png"), 400, r"cannot fetch the URL \(.*refused")

    public_only = TestClient(create_app(learn))  # the default: a request cannot reach the server's own network
    for url in (f"{base}/seven.png", "http://localhost:1/a.png", "http://10.1.2.3/a.png", "http://[::1]/a.png",
                "http://169.254.169.254/latest/meta-data/", "http://[::ffff:127.0.0.1]/a.png",
                "http://[64:ff9b::7f00:1]/a.png", "http://[2002:7f00:1::]/a.png", "http://0.0.0.0/a.png",
                "http://224.0.0.1/a.png"):
        assert_error(by_url(public_only, url), 400, r"is a local or private address; .* --allow-local-urls")
    no_urls = TestClient(create_app(learn, ServeSettings(urls=False)))
    assert_error(by_url(no_urls, f"{base}/seven.png"), 400, "this server does not fetch URLs")
    assert 'data-urls="0"' in no_urls.get("/").text
    assert files.requests.count("/seven.png") == 2  # the refused requests never reached it


@pytest.fixture
def drip():
    """A server on 127.0.0.1 that sends one byte every 0.25 s (for at most 12 s): /body after
    headers announcing 100,000 bytes, /head before its headers are complete. Yields its base URL."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            try:
                if self.path == "/body":
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                else:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(48):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    if stop.wait(0.25):
                        return
            except OSError:  # the client gave up
                pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    stop.set()
    httpd.shutdown()
    httpd.server_close()


def test_a_url_that_drips_is_cut_off_at_the_timeout(learn, drip):
    from deftly.serve import fetch_image_url

    for path in ("/body", "/head"):  # a byte every 0.25 s: each read is quick, the whole is not
        start = time.monotonic()
        with pytest.raises(RequestError, match=r"^the URL took more than 1 s to send its image$"):
            fetch_image_url(f"{drip}{path}", 10 ** 6, timeout=1.0, allow_local=True)
        assert time.monotonic() - start < 4, path  # it used to wait for the whole body: 12 s here
    client = TestClient(create_app(learn, ServeSettings(allow_local_urls=True, url_timeout=1)))
    start = time.monotonic()
    assert_error(client.post("/predict", files={"url": (None, f"{drip}/body")}), 400,
                 r"^the URL took more than 1 s to send its image$")
    assert time.monotonic() - start < 4


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2606:4700::1111", True), ("::ffff:8.8.8.8", True), ("64:ff9b::808:808", True),
    ("2002:808:808::", True),
    ("127.0.0.1", False), ("10.0.0.1", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("240.0.0.1", False), ("255.255.255.255", False), ("::1", False), ("::", False), ("fe80::1", False),
    ("fc00::1", False), ("fec0::1", False), ("ff02::1", False), ("2001:db8::1", False),
    # IPv4 inside IPv6: judged by the IPv4 address they reach
    ("::ffff:127.0.0.1", False), ("::ffff:10.0.0.1", False), ("64:ff9b::7f00:1", False),
    ("64:ff9b::a9fe:a9fe", False), ("2002:7f00:1::", False), ("2002:a00:1::1", False), ("::127.0.0.1", False),
])
def test_which_addresses_are_public(address, public):
    import ipaddress

    from deftly.serve.fetch import is_public

    assert is_public(ipaddress.ip_address(address)) is public


@pytest.fixture
def fake_dns(monkeypatch):
    """Names under .test resolve to what `answers[name]` lists (taken in turn, the last one
    repeated); `asked` counts the look-ups. 127.0.0.1 counts as a public address here, so the
    servers of these tests, on 127.0.0.1, stand for public ones; every other local address does not."""
    import ipaddress

    from deftly.serve import fetch

    real_getaddrinfo, real_is_public = socket.getaddrinfo, fetch.is_public
    answers: dict[str, list[str]] = {}
    asked: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if not str(host).endswith(".test"):
            return real_getaddrinfo(host, port, *args, **kwargs)
        asked.append(host)
        turns = answers[host]
        address = turns.pop(0) if len(turns) > 1 else turns[0]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(fetch, "is_public", lambda a: a == ipaddress.ip_address("127.0.0.1") or real_is_public(a))
    return answers, asked


def test_a_url_connects_to_the_address_it_checked(file_server, redirects, fake_dns, tiny):
    from deftly.serve import fetch_image_url

    files, base = file_server
    files.files["/seven.png"] = image = digit_files(tiny)[-1].read_bytes()
    port = base.rsplit(":", 1)[1]
    answers, asked = fake_dns
    # DNS rebinding: the first answer is "public", any later one local. The host is resolved once and
    # the connection goes to the address checked, so the local one is never asked for, let alone used
    answers["rebind.test"] = ["127.0.0.1", "10.0.0.1"]
    assert fetch_image_url(f"http://rebind.test:{port}/seven.png", 10 ** 6, timeout=5) == image
    assert asked == ["rebind.test"]
    # a name with any local address is refused before any connection, IPv4-mapped and NAT64 ones too
    for name, address in (("private.test", "10.0.0.1"), ("mapped.test", "::ffff:10.0.0.1"),
                          ("nat64.test", "64:ff9b::a00:1"), ("sixtofour.test", "2002:a00:1::")):
        answers[name] = [address]
        with pytest.raises(RequestError, match=rf"^the URL's host '{name}' is a local or private address; this "
                                               r"server only fetches public URLs \(start it with --allow-local-urls"):
            fetch_image_url(f"http://{name}:{port}/seven.png", 10 ** 6, timeout=5)
    # every redirect hop goes through the same check
    answers["inside.test"] = ["10.0.0.1"]
    with pytest.raises(RequestError, match=r"^the URL's host 'inside.test' is a local or private address"):
        fetch_image_url(f"{redirects}http://inside.test:{port}/seven.png", 10 ** 6, timeout=5)
    assert files.requests == ["/seven.png"]


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command to make a certificate")
def test_https_urls_verify_the_certificate_against_the_host_name(tmp_path, monkeypatch):
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from deftly.serve import fetch, fetch_image_url

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            body = f"GET {self.path} for {self.headers['Host']}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    httpd.socket = server_tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    port = httpd.server_address[1]
    try:
        with pytest.raises(RequestError, match=r"certificate cannot be trusted \(self.signed certificate"):
            fetch_image_url(f"https://localhost:{port}/a b.png", 1000, timeout=5, allow_local=True)
        monkeypatch.setattr(fetch, "_tls_context", lambda: ssl.create_default_context(cafile=str(cert)))
        assert fetch_image_url(f"https://localhost:{port}/a b.png?x=é", 1000, timeout=5, allow_local=True) == (
            f"GET /a%20b.png?x=%C3%A9 for localhost:{port}".encode())
        # the certificate names localhost, not 127.0.0.1: checked against the URL's host, not the address
        with pytest.raises(RequestError, match=r"certificate cannot be trusted \(.*mismatch"):
            fetch_image_url(f"https://127.0.0.1:{port}/a.png", 1000, timeout=5, allow_local=True)
    finally:
        httpd.shutdown()
        httpd.server_close()


# ------------------------------------------------------------------------------------------ the Host header


def test_a_loopback_server_answers_only_its_own_host_names(learn):
    from deftly.serve import listen
    from deftly.serve.app import LOOPBACK_HOSTS, served_hosts

    with contextlib.closing(listen("127.0.0.1", 0)) as loopback, contextlib.closing(listen("0.0.0.0", 0)) as every:
        assert served_hosts("127.0.0.1", loopback) == LOOPBACK_HOSTS
        assert served_hosts("0.0.0.0", every) is None  # any Host: the server is meant to be reached from afar
    client = TestClient(create_app(learn, ServeSettings(allowed_hosts=LOOPBACK_HOSTS)), base_url="http://127.0.0.1")
    for host in ("127.0.0.1", "127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000", "[::1]"):
        assert client.get("/health", headers={"host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil.example", "::1"):
        assert_error(client.get("/health", headers={"host": host}), 400,
                     r"^this server does not answer the Host '.*'; it answers localhost, 127.0.0.1, ::1 \(start it "
                     r"with --allowed-hosts")
    assert_error(client.post("/predict", files={"url": (None, "http://x/")}, headers={"host": "evil.example"}),
                 400, "does not answer the Host 'evil.example'")
    wildcard = TestClient(create_app(learn, ServeSettings(allowed_hosts=("*.example.com",))))
    assert wildcard.get("/health", headers={"host": "a.example.com"}).status_code == 200
    assert wildcard.get("/health", headers={"host": "example.com.evil"}).status_code == 400
    assert TestClient(create_app(learn)).get("/health", headers={"host": "evil.example"}).status_code == 200
    for hosts, match in ((("a*b",), "'a\\*b' is not a host name"), (("*example.com",), "is not a host name"),
                         ((), "is empty"), ("localhost", "not the string 'localhost'")):
        with pytest.raises(ConfigError, match=match):
            ServeSettings(allowed_hosts=hosts)


# ------------------------------------------------------------------------------------------ the command


def deftly(*args: str, **kwargs) -> subprocess.Popen:
    """`python -m deftly args...` offline, one torch thread, output captured as text."""
    env = {**os.environ, "DEFTLY_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "deftly", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def finished(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    process = deftly(*args)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def raw_get(port: int, path: str, host: str | None = None) -> tuple[int, str]:
    """GET `path` exactly as written (http.client does not normalise it), with `host` as the Host header."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host} if host else {})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def test_deftly_serve_runs_uvicorn(model_file, learn, tiny, tmp_path):
    server = deftly("serve", str(model_file), "--port", "0", "--quiet", "--threads", "1", "--parallel", "2")
    try:
        line = server.stdout.readline()
        match = re.fullmatch(r"serving digits\.pkl on http://127\.0\.0\.1:(\d+)/ \(Ctrl-C stops\)\n", line)
        assert match, (line, server.stderr.read() if server.poll() is not None else "")
        port = int(match.group(1))
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/health", timeout=10) as response:
            assert json.load(response)["classes"] == ["3", "7"]
        with urllib.request.urlopen(f"{base}/", timeout=10) as response:
            assert b'type="file"' in response.read() and "sha256-" in response.headers["Content-Security-Policy"]

        import httpx

        images = digit_files(tiny, 3)
        with httpx.Client(base_url=base, timeout=30) as http:
            def post(file: Path) -> dict:
                answer = http.post("/predict", files={"file": (file.name, file.read_bytes(), "image/png")})
                assert answer.status_code == 200, answer.text
                return answer.json()

            with ThreadPoolExecutor(8) as pool:  # more requests at once than predictions run
                answers = list(pool.map(post, images * 3))
            for file, body in zip(images * 3, answers):
                assert body["prediction"] == str(learn.predict(str(file))[0])
            refused = http.post("/predict", files={"file": ("x.png", b"nope")})
            assert refused.status_code == 400 and "not an image" in refused.json()["error"]
        for path in ("/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2f..%2fetc%2fpasswd",
                     f"/../{model_file.name}", "/.%2e/deftly/serve/app.py", "//etc/passwd",
                     "/./health/../../etc/passwd"):
            status, text = raw_get(port, path)
            assert status == 404 and "root:" not in text and '"error"' in text, (path, status, text[:200])
        # bound to 127.0.0.1: a page on a name that rebinds to 127.0.0.1 sends its own Host, refused
        status, text = raw_get(port, "/health", host="evil.example")
        assert status == 400 and json.loads(text)["error"].startswith("this server does not answer the Host "
                                                                      "'evil.example'; it answers localhost")
        assert raw_get(port, "/health", host=f"localhost:{port}")[0] == 200

        busy_status, busy_out, busy_err = finished("serve", str(model_file), "--port", str(port), "--quiet")
        assert busy_status == 1 and busy_out == ""
        assert re.fullmatch(rf"deftly serve: error: cannot listen on 127\.0\.0\.1:{port}: .*in use\n",
                            busy_err), busy_err
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
    assert server.returncode == 0


def test_deftly_serve_refuses_wrong_model_files(tmp_path, tiny):
    status, out, err = finished("serve", str(tmp_path / "missing.pkl"))
    assert status == 1 and err == f"deftly serve: error: no such model file: {tmp_path / 'missing.pkl'}\n"
    picture = tmp_path / "photo.pkl"
    picture.write_bytes(digit_files(tiny)[0].read_bytes())
    status, out, err = finished("serve", str(picture))
    assert status == 1 and "it is an image; expected a deftly export" in err and err.count("\n") == 1

    from deftly.collab import CollabDataBunch, collab_learner
    import pandas as pd

    ratings = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [1, 2, 1, 3, 2], "rating": [4.0, 3.0, 5.0, 2.0, 1.0]})
    collab = collab_learner(CollabDataBunch.from_df(ratings, seed=0, bs=2, path=tmp_path), n_factors=2)
    model = collab.export(tmp_path / "ratings.pkl")
    status, out, err = finished("serve", str(model), "--port", "0")
    assert status == 1 and out == ""
    assert err == (f"deftly serve: error: {model} holds a collab model, not an image classifier: `deftly serve` "
                   "serves image classifiers\n")
    status, out, err = finished("serve", "--help")
    assert status == 0 and "--max-upload-mb" in out and "--allow-local-urls" in out and "--allowed-hosts" in out
