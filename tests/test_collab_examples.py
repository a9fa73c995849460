"""Lessons 4 and 5 (collaborative filtering) end to end on real MovieLens, offline, small settings."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from movielens_home import movielens_home

EXAMPLES = Path(__file__).parent.parent / "examples"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def ml(tmp_path_factory):
    return movielens_home(tmp_path_factory)


def run_example(name, ml, tmp_path, *args, timeout=600):
    env = {**os.environ, "MPLBACKEND": "Agg", "DEFTLY_OFFLINE": "1", "DEFTLY_PROGRESS": "0",
           "DEFTLY_HOME": str(ml["home"]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(EXAMPLES / name), "--out", str(tmp_path), *args],
                            capture_output=True, text=True, env=env, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_lesson4_collab_on_the_movielens_sample(ml, tmp_path):
    out = run_example("lesson4_collab.py", ml, tmp_path, "--epochs", "2")
    assert "path: movie_lens_sample ['ratings.csv']" in out
    assert re.search(r"^\s*userId\s+movieId\s+target$", out, re.M), out  # show_batch
    assert re.search(r"predict\(user \d+, movie \d+\) -> [\d.]+ \(actual [\d.]+\)", out), out
    m = re.search(r"lesson4_collab: valid_mse=([\d.]+) mean_baseline_mse=([\d.]+)", out)
    assert m, out
    assert float(m.group(1)) < 0.9 * float(m.group(2)), out


def test_lesson5_bias_and_pca_listings_on_ml_100k(ml, tmp_path):
    out = run_example("lesson5_collab_interpret.py", ml, tmp_path, "--epochs", "1", "--bs", "128")
    assert "len(ratings): 100000" in out and "Toy Story (1995)" in out
    assert re.search(r"\(u_weight\): Embedding\(944, 40\)", out), out  # 943 users + #na#
    assert "top_movies[:10]: ['Star Wars (1977)', 'Contact (1997)', 'Fargo (1996)'" in out
    assert "movie_bias.shape: torch.Size([1000])" in out
    assert "movie_w.shape: torch.Size([1000, 40])" in out and "movie_pca.shape: torch.Size([1000, 3])" in out
    lowest = out.split("lowest bias:\n")[1].split("highest bias:")[0].splitlines()
    highest = out.split("highest bias:\n")[1].split("movie_w.shape")[0].splitlines()
    assert len(lowest) == len(highest) == 15
    low_means = [float(re.search(r"\(mean ([\d.]+)\)", line).group(1)) for line in lowest]
    high_means = [float(re.search(r"\(mean ([\d.]+)\)", line).group(1)) for line in highest]
    assert max(low_means) < 3.0 and min(high_means) > 3.5, out  # bad movies at the bottom, classics on top
    for k in (0, 1):
        assert re.search(rf"^factor {k} highest: \[\(-?[\d.]+, '", out, re.M), out
        assert re.search(rf"^factor {k} lowest: \[\(-?[\d.]+, '", out, re.M), out
    m = re.search(r"lesson5_collab: valid_mse=([\d.]+) mean_baseline_mse=([\d.]+) bias_mean_rating_corr=([\d.]+)", out)
    assert m, out
    assert float(m.group(1)) < 0.8 * float(m.group(2)) and float(m.group(3)) > 0.8, out
    assert (tmp_path / "models" / "dotprod.safetensors").is_file()
    for name in ("lr_find", "pca"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG
