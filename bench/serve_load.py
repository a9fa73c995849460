"""Load on the web app: `deftly serve` (uvicorn, in a subprocess on 127.0.0.1) answering
`--requests` POST /predict uploads, `--concurrency` at a time, of real bundled images.

Model: an exported resnet18 (pretrained=False, random weights: the time does not depend on them) at
`--size` px, built on a few images of the bundled Pets-shaped sample (`untar_data(URLs.PETS)`, labels
from the file names), as `bench/predict_latency.py` builds its learner; `--model FILE` serves an
export of your own instead. Requests: multipart uploads of the sample's JPEGs, in turn, from one
httpx.AsyncClient with `--concurrency` connections. The server runs as a user would start it:
`python -m deftly serve MODEL --port 0 --quiet --parallel P --threads T` (P predictions at once, in
worker threads; T torch threads each, default: the usable cores divided by P).

Printed: errors (any answer but 200 with a prediction; the first few shown), latency p50/p99/max
(client side, request sent to answer read), requests/s over the whole run, and the server's
resident memory (VmRSS from /proc/<pid>/status) when it is ready, after `--warmup` requests
(untimed; thread pools and allocator arenas fill here) and after the run. The last two lines:

    serve_memory_growth: X.XX     after the run / after the warm-up - 1 (goal < 0.10)
    serve_errors: N               (goal 0)
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAT = r"([^/]+)_\d+\.jpg$"


def pets_images() -> list[Path]:
    """The bundled Pets-shaped sample's JPEGs, sorted."""
    from deftly.datasets import URLs, untar_data

    return sorted((untar_data(URLs.PETS, show_progress=False) / "images").glob("*.jpg"))


def export_model(images: list[Path], size: int, folder: Path, per_label: int = 4) -> Path:
    """An exported resnet18 (random weights) on `per_label` images of each label, at `size` px."""
    from deftly.core import set_seed
    from deftly.vision import ImageDataBunch, cnn_learner, imagenet_stats, models

    by_label: dict[str, list[Path]] = defaultdict(list)
    for f in images:
        label = re.search(PAT, str(f)).group(1)
        if len(by_label[label]) < per_label:
            by_label[label].append(f)
    files = [f for fs in by_label.values() for f in fs]
    set_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a label only in the validation split is dropped, said as a warning
        data = ImageDataBunch.from_name_re(images[0].parent, files, PAT, valid_pct=0.25, seed=0, size=size, bs=4,
                                           num_workers=0).normalize(imagenet_stats)
    learn = cnn_learner(data, models.resnet18, pretrained=False, progress=False)
    return learn.export(folder / "pets_resnet18.pkl")


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start_server(model: Path, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    """`deftly serve` on a free port of 127.0.0.1; returns the process and its base URL."""
    env = {**os.environ, "DEFTLY_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "deftly", "serve", str(model), "--port", "0", "--quiet",
           "--parallel", str(args.parallel), "--threads", str(args.threads)] + (["--bf16"] if args.bf16 else [])
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    match = re.search(r" on (http://\S+/) ", line)
    if not match:
        server.kill()
        raise SystemExit(f"deftly serve did not start (exit status {server.wait()}): {line!r}")
    return server, match.group(1)


async def load(base: str, bodies: list[tuple[str, bytes]], n: int, concurrency: int) -> tuple[list[float], list[str],
                                                                                              float]:
    """Send `n` uploads, `concurrency` at a time; returns latencies (s), errors and the wall time."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(n))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            name, data = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            try:
                answer = await client.post("predict", files={"file": (name, data, "image/jpeg")})
                ok = answer.status_code == 200 and "prediction" in answer.json()
                if not ok:
                    errors.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
            except (httpx.HTTPError, ValueError) as e:
                errors.append(f"{type(e).__name__}: {e}")
                continue
            latencies.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return latencies, errors, wall


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000, help="POST /predict requests to send")
    p.add_argument("--concurrency", type=int, default=50, help="requests in flight at once")
    p.add_argument("--warmup", type=int, default=50, help="untimed requests before the run")
    p.add_argument("--model", type=Path, default=None, help="an exported image classifier (default: build one)")
    p.add_argument("--size", type=int, default=128, help="image size of the built model")
    p.add_argument("--parallel", type=int, default=0, help="the server's --parallel (0: its default, cores up to 4)")
    p.add_argument("--threads", type=int, default=0, help="the server's --threads (0: cores / parallel)")
    p.add_argument("--images", type=int, default=64, help="distinct bundled images sent in turn")
    p.add_argument("--bf16", action="store_true", help="the server's --bf16 (bf16 autocast predictions)")
    args = p.parse_args(argv)

    images = pets_images()
    bodies = [(f.name, f.read_bytes()) for f in images[:: max(1, len(images) // args.images)][: args.images]]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or export_model(images, args.size, Path(tmp))
        described = (str(args.model) if args.model
                     else f"resnet18 at {args.size} px (random weights), labels from the Pets sample's file names")
        print(f"model: {described}; images: {len(bodies)} bundled Pets-sample JPEGs "
              f"({min(len(b) for _, b in bodies)}-{max(len(b) for _, b in bodies)} bytes); usable cores: "
              f"{len(os.sched_getaffinity(0))}", flush=True)
        server, base = start_server(model, args)
        try:
            rss_start = rss_mb(server.pid)
            _, warm_errors, _ = asyncio.run(load(base, bodies, args.warmup, min(args.concurrency, args.warmup)))
            rss_before = rss_mb(server.pid)
            latencies, errors, wall = asyncio.run(load(base, bodies, args.requests, args.concurrency))
            rss_after = rss_mb(server.pid)
            alive = server.poll() is None
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    errors += warm_errors
    if not alive:
        errors.append("the server died during the run")
    print(f"server: deftly serve --parallel {args.parallel or 'auto'} --threads {args.threads or 'auto'}"
          f"{' --bf16' if args.bf16 else ''}; "
          f"{args.requests} requests, {args.concurrency} concurrent, after {args.warmup} warm-up")
    print(f"errors: {len(errors)}")
    for message, count in Counter(errors).most_common(5):
        print(f"  {count} x {message}")
    if latencies:
        ms = [t * 1e3 for t in latencies]
        print(f"latency_ms: p50 {percentile(ms, 50):.1f}  p99 {percentile(ms, 99):.1f}  max {max(ms):.1f}")
        print(f"requests_per_s: {len(latencies) / wall:.1f}  ({len(latencies)} answered in {wall:.1f} s)")
    print(f"server_rss_mb: ready {rss_start:.1f}, after warm-up {rss_before:.1f}, after the run {rss_after:.1f} "
          f"(growth from ready: {rss_after / rss_start - 1:+.1%})")
    print(f"serve_memory_growth: {round(rss_after / rss_before - 1, 2) + 0.0:.2f}")  # + 0.0: no "-0.00"
    print(f"serve_errors: {len(errors)}")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
