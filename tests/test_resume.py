"""Kill a training process with SIGKILL mid-fit, resume it, and get bit-identical weights."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from deftly.train.checkpoint import load_state

JOB = Path(__file__).parent / "jobs" / "resume_job.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_to_end(workdir: Path) -> str:
    result = subprocess.run([sys.executable, str(JOB), str(workdir)], capture_output=True, text=True,
                            env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_sigkill_then_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    assert "done" in run_to_end(straight)

    # Start the same run and kill it in the middle of the second epoch.
    proc = subprocess.Popen([sys.executable, str(JOB), str(crashed), "--slow", "0.01"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    seen = []
    for line in proc.stdout:
        seen.append(line.strip())
        if line.strip() == "batch 1 10":
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, seen[-5:], proc.stderr.read()[-2000:])
    models = crashed / "models"
    assert (models / "run.resume.safetensors").exists()
    assert not (models / "final.safetensors").exists()
    log_before = (crashed / "history.csv").read_text().splitlines()
    assert len(log_before) == 2  # header + epoch 1: epoch 2 never finished

    out = run_to_end(crashed)
    assert "resumed 1" in out and "batch 0 " not in out, out[:500]
    assert not (models / "run.resume.safetensors").exists(), "the checkpoint is removed after a completed fit"

    a = load_state(straight / "models" / "final.safetensors")
    b = load_state(crashed / "models" / "final.safetensors")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for i, state in a["opt"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["opt"]["state"][i][name]), (i, name)

    # The CSV log continues across the crash and matches the uninterrupted run (apart from times).
    def rows(path):
        return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]
    assert rows(crashed / "history.csv") == rows(straight / "history.csv")
    assert len(rows(straight / "history.csv")) == 4
