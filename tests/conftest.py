"""Shared, generic fixtures. Keep this file small: test-specific helpers live in their test files."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def mnist_sample():
    """The bundled real MNIST sample: ((x_train, y_train), (x_valid, y_valid)), x float (n, 784).

    Shared by the whole session; tests must not modify the tensors in place (slice, then clone).
    """
    from deftly.datasets import load_mnist_sample

    return load_mnist_sample()


@pytest.fixture(scope="session")
def data_home(tmp_path_factory):
    """The bundled samples (mnist_tiny, mnist_sample, pets, planet_tiny, imdb_sample, adult_sample,
    chicago_ridership) extracted offline, once per session, into a fresh DEFTLY_HOME: {'tiny': path,
    'sample': ..., 'pets': ..., 'planet': ..., 'imdb': ..., 'adult': ..., 'chicago': ...}."""
    from deftly.datasets import URLs, untar_data

    home = tmp_path_factory.mktemp("deftly_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEFTLY_HOME", str(home))
        mp.setenv("DEFTLY_OFFLINE", "1")
        return {name: untar_data(url, show_progress=False)
                for name, url in (("tiny", URLs.MNIST_TINY), ("sample", URLs.MNIST_SAMPLE),
                                  ("pets", URLs.PETS), ("planet", URLs.PLANET_TINY),
                                  ("imdb", URLs.IMDB_SAMPLE), ("adult", URLs.ADULT_SAMPLE),
                                  ("chicago", URLs.CHICAGO_RIDERSHIP))}


@pytest.fixture(scope="session")
def tiny(data_home):
    return data_home["tiny"]


@pytest.fixture(scope="session")
def sample(data_home):
    return data_home["sample"]


@pytest.fixture(scope="session")
def planet(data_home):
    return data_home["planet"]


@pytest.fixture(scope="session")
def imdb(data_home):
    return data_home["imdb"]


@pytest.fixture(scope="session")
def run_example():
    """Run `examples/<name>` offline in a subprocess with `--out tmp_path/out` and a fresh
    DEFTLY_HOME under tmp_path; returns its stdout (the test fails with its stderr on a non-zero exit)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    examples = Path(__file__).parent.parent / "examples"

    def run(name, tmp_path, *args, timeout=600):
        env = {**os.environ, "MPLBACKEND": "Agg", "DEFTLY_OFFLINE": "1", "DEFTLY_PROGRESS": "0",
               "DEFTLY_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
        result = subprocess.run([sys.executable, str(examples / name), "--out", str(tmp_path / "out"), *args],
                                capture_output=True, text=True, env=env, timeout=timeout)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    return run


@pytest.fixture
def one_thread():
    """One torch thread for the test (the suite runs serially on 2 cores), restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def close_figures():
    """Close every matplotlib figure the test opened."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture
def file_server():
    """A file server on 127.0.0.1 for download tests: yields (files, base URL); put bytes in
    `files.files['/path']`, read what was asked in `files.requests`. Paths in `files.slow` answer
    after `files.delay` seconds, paths in `files.flaky` answer 503 that many times first; anything
    else is a 404."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    release = threading.Event()
    files = SimpleNamespace(files={}, requests=[], slow=set(), delay=3.0, flaky={})

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            files.requests.append(self.path)
            try:
                if self.path in files.slow:
                    release.wait(files.delay)
                if files.flaky.get(self.path, 0) > 0:
                    files.flaky[self.path] -= 1
                    self.send_error(503, "try again")
                    return
                body = files.files.get(self.path)
                if body is None:
                    self.send_error(404, "not here")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up on a slow answer
                pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield files, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
