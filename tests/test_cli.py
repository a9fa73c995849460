"""The `deftly` command, run as `python -m deftly` in a subprocess: help, exit statuses, errors on
stderr, train -> predict on real images, download-images and verify-images against 127.0.0.1."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
COMMANDS = ("train", "predict", "download-images", "verify-images")


def deftly(*args: str, cwd: Path, progress: bool = False, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m deftly args...` offline with one thread; stdout and stderr captured as text."""
    env = {**os.environ, "DEFTLY_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "MPLBACKEND": "Agg", "DEFTLY_PROGRESS": "1" if progress else "0",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "deftly", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_help_lists_the_commands_and_usage_errors_exit_2(tmp_path):
    out = deftly("--help", cwd=tmp_path)
    assert out.returncode == 0 and out.stderr == ""
    for name in (*COMMANDS, "demo"):
        assert name in out.stdout
    assert "Exit status" in out.stdout
    for name in COMMANDS:
        sub = deftly(name, "--help", cwd=tmp_path)
        assert sub.returncode == 0 and f"usage: deftly {name}" in sub.stdout, sub.stderr
    assert "--max-size" in deftly("verify-images", "--help", cwd=tmp_path).stdout

    none = deftly(cwd=tmp_path)
    assert none.returncode == 2 and "usage: deftly" in none.stderr
    bad = deftly("train", "data", "--valid-pct", "2", cwd=tmp_path)
    assert bad.returncode == 2 and "--valid-pct: must be between 0 and 1" in bad.stderr
    unknown = deftly("frobnicate", cwd=tmp_path)
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr


def test_pyproject_script_points_at_main():
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"deftly": "deftly.cli:main"}
    from deftly.cli import main

    assert callable(main)


def test_train_then_predict_on_real_images(tiny, tmp_path):
    model = tmp_path / "models" / "digits.pkl"
    model.parent.mkdir()
    train = deftly("train", str(tiny), "--arch", "resnet18", "--no-pretrained", "--size", "28", "--epochs", "1",
                   "--lr", "1e-2", "--bs", "64", "--threads", "1", "--out", str(model), cwd=tmp_path, progress=True)
    assert train.returncode == 0, train.stderr
    lines = train.stdout.splitlines()
    assert lines[0] == "709 training and 392 validation images; 2 classes: 3, 7"
    assert lines[1].split() == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]  # plain lines in a log
    assert lines[2].startswith("1 ") and "\r" not in train.stdout
    assert lines[-1] == f"saved {model}" and model.is_file()

    files = [str(p) for p in sorted((tiny / "valid" / "7").glob("*.png"))[:2]] + [str(sorted(
        (tiny / "valid" / "3").glob("*.png"))[0])]
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    pred = deftly("predict", str(model), *files, str(not_an_image), cwd=tmp_path)
    assert pred.returncode == 1  # one file could not be read; the others were still predicted
    rows = [json.loads(line) for line in pred.stdout.splitlines()]
    assert [r["file"] for r in rows] == files
    for row in rows:
        probs = row["probabilities"]
        assert [c for c, _ in probs] in (["3", "7"], ["7", "3"])
        assert probs[0][1] >= probs[1][1] and abs(sum(p for _, p in probs) - 1) < 1e-4
        assert row["prediction"] == probs[0][0]
    err = pred.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deftly predict: error: cannot read an image") and "notes.png" in err[0]


def test_a_wrong_model_file_is_one_clear_line(tmp_path):
    fake = tmp_path / "model.pkl"
    fake.write_text("this is not a model\n")
    out = deftly("predict", str(fake), "x.jpg", cwd=tmp_path)
    assert out.returncode == 1 and out.stdout == ""
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deftly predict: error: ")
    assert "not a deftly export" in err[0] and "Traceback" not in out.stderr

    debug = deftly("predict", str(fake), "x.jpg", "--debug", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ExportError" in debug.stderr

    missing = deftly("predict", str(tmp_path / "nothing.pkl"), "x.jpg", cwd=tmp_path)
    assert missing.returncode == 1 and "no such model file" in missing.stderr
    no_data = deftly("train", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert no_data.returncode == 1 and no_data.stderr.startswith("deftly train: error: no such folder or CSV")


def test_download_then_verify_images(file_server, data_home, tmp_path):
    files, base = file_server
    jpgs = sorted((data_home["pets"] / "images").glob("*.jpg"))[:3]
    for i, f in enumerate(jpgs):
        files.files[f"/bear{i}.jpg"] = f.read_bytes()
    files.files["/page.jpg"] = b"<html><body>moved</body></html>"
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"{base}/{name}\n" for name in ("bear0.jpg", "page.jpg", "bear1.jpg", "bear2.jpg",
                                                              "gone.jpg")))
    dest = tmp_path / "bears" / "black"

    out = deftly("download-images", str(urls), str(dest), "--max-workers", "2", "--timeout", "2", cwd=tmp_path,
                 progress=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"dest": str(dest), "saved": 3, "failed": 2}
    assert "\r" not in out.stderr and f"skipped {base}/gone.jpg: HTTP 404" in out.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["00000000.jpg", "00000002.jpg", "00000003.jpg"]

    (dest / "00000009.jpg").write_bytes(jpgs[0].read_bytes()[:300])  # a download cut short
    kept = deftly("verify-images", str(dest), cwd=tmp_path)
    assert kept.returncode == 1 and (dest / "00000009.jpg").exists()
    assert json.loads(kept.stdout)["bad"] == 1
    assert kept.stderr.strip().splitlines()[-1] == ("deftly verify-images: error: 1 unreadable image left in place "
                                                    "(run with --delete to remove them)")
    cleaned = deftly("verify-images", str(dest), "--delete", "--max-size", "20", "--max-workers", "0", cwd=tmp_path)
    assert cleaned.returncode == 0, cleaned.stderr
    assert json.loads(cleaned.stdout) == {"checked": 4, "bad": 1, "deleted": 1, "written": 3, "failed": 0}
    assert not (dest / "00000009.jpg").exists()

    urls.write_text(f"{base}/gone.jpg\n")
    nothing = deftly("download-images", str(urls), str(tmp_path / "empty"), cwd=tmp_path)
    assert nothing.returncode == 1 and "none of the 1 URLs gave an image (first error: HTTP 404" in nothing.stderr


def test_demo_forwards_its_arguments(tmp_path):
    out = deftly("demo", "--help", cwd=tmp_path)
    assert out.returncode == 0 and "--epochs2" in out.stdout
