"""Run examples/lesson2_sgd.py end to end and check that it fits the line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lesson2_sgd.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.parametrize("seed", ["0", "42"])
def test_lesson2_sgd_fits_line(tmp_path: Path, seed: str):
    out = tmp_path / "plots" / "fit.png"
    proc = _run(tmp_path, "--out", str(out), "--seed", seed)
    assert proc.returncode == 0, proc.stderr

    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and b"IHDR" in data[:32] and data.rstrip().endswith(b"IEND\xaeB`\x82")

    final = re.search(r"^lesson2_sgd: a=\[(-?[\d.]+), (-?[\d.]+)\] loss=([\d.]+)$", proc.stdout, re.M)
    assert final, proc.stdout
    a1, a2, loss = map(float, final.groups())
    # the lesson's noise is uniform in [0, 1), so the intercept settles near 2 + 0.5
    assert abs(a1 - 3) < 0.3 and abs(a2 - 2.5) < 0.3, (a1, a2)

    printed = [float(v) for v in re.findall(r"^step +\d+ +loss ([\d.]+)$", proc.stdout, re.M)]
    assert len(printed) == 10, proc.stdout  # every 10th of 100 steps
    assert loss < printed[0]


def test_lesson2_sgd_default_out_in_cwd(tmp_path: Path):
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "lesson2_sgd.png").read_bytes().startswith(PNG_SIGNATURE)
