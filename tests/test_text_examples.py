"""The lesson 3 (IMDB_SAMPLE) and lesson 4 (ULMFiT) text examples end to end, offline, at small settings."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
# small random-init models (the shipped pretrained LM would make the run several times longer)
SMALL = ["--no-pretrained", "--emb-sz", "32", "--n-hid", "64", "--n-layers", "2", "--bs", "64", "--clas-epochs", "8",
         "--final-lr", "2e-2", "--drop-mult", "0.1"]


def load_example(name):
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _show_batch_rows(out: str, header: str) -> list[str]:
    lines = out.splitlines()
    start = lines.index(header)
    return lines[start + 1:start + 6]


def test_lesson3_imdb_sample(run_example, tmp_path):
    out = run_example("lesson3_imdb_sample.py", tmp_path, *SMALL, "--epochs", "1")
    assert "imdb_sample/texts.csv" in out
    rows = _show_batch_rows(out, "text\ttarget")  # TextClasDataBunch.load(path).show_batch()
    assert len(rows) == 5 and all(r.startswith("xxbos ") and re.search(r"\t(negative|positive)$", r) for r in rows)
    assert "['xxunk', 'xxpad', 'xxbos', 'xxeos', 'xxfld', 'xxmaj', 'xxup', 'xxrep', 'xxwrep'," in out
    assert re.search(r"^tensor\(\[\s*2,", out, re.M)  # data.train_ds[0][0].data[:10] starts with xxbos's id
    assert "TextClasDataBunch(train: 800 items; valid: 200 items" in out  # split_from_df(col=2)
    assert "AWD_LSTM emb_sz=32 n_hid=64 n_layers=2, random weights" in out
    m = re.search(r"language model: valid_loss=([\d.]+) \(a uniform guess: ([\d.]+)\)", out)
    assert m and float(m.group(1)) < float(m.group(2)) - 1, out
    assert re.search(r"^This is a review about( \S+){10}$", out, re.M), out
    assert re.search(r"predict\('This is a really lovely dress, \.\.\.'\) -> (negative|positive) \(p=[01]\.\d\d\)", out)
    assert (tmp_path / "home" / "data" / "imdb_sample" / "data_save.pkl").is_file()  # data_lm.save()
    assert (tmp_path / "out" / "models" / "ft_enc.safetensors").is_file()
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"lesson3_imdb_sample: accuracy=(0\.\d{3}|1\.000)", last)
    assert m, last
    assert float(m.group(1)) >= 0.55, out  # a tiny model from scratch, 1,000 reviews: beats chance (0.5)


def test_lesson4_ulmfit(run_example, tmp_path):
    out = run_example("lesson4_ulmfit.py", tmp_path, *SMALL, "--epochs", "1")
    lm_rows = _show_batch_rows(out, "idx\ttext")  # TextLMDataBunch.load(path, 'tmp_lm').show_batch()
    assert [r.split("\t")[0] for r in lm_rows] == ["0", "1", "2", "3", "4"]
    m = re.search(r"language model: valid_loss ([\d.]+) -> ([\d.]+), accuracy=([\d.]+) \(a uniform guess: ([\d.]+)\)",
                  out)
    assert m, out
    first, last, uniform = float(m.group(1)), float(m.group(2)), float(m.group(4))
    assert abs(first - uniform) < 0.5 and last < first - 1, out
    assert re.search(r"^I liked this dress because \S+", out, re.M), out
    clas_rows = _show_batch_rows(out, "text\ttarget")
    assert all(re.search(r"\t(negative|positive)$", r) for r in clas_rows)
    assert re.search(r"predict\('I really loved that dress, it was awesome!'\) -> (negative|positive) "
                     r"\(p=[01]\.\d\d\)", out), out
    data = tmp_path / "home" / "data" / "imdb_sample"
    assert (data / "tmp_lm").is_file() and (data / "tmp_clas").is_file()
    models = tmp_path / "out" / "models"
    for name in ("fine_tuned_enc", "first", "second", "third"):
        assert (models / f"{name}.safetensors").is_file(), name
    last_line = out.strip().splitlines()[-1]
    m = re.fullmatch(r"lesson4_ulmfit: accuracy=(0\.\d{3}|1\.000)", last_line)
    assert m, last_line
    assert float(m.group(1)) >= 0.62, out  # measured 0.73 with these settings


def test_examples_default_to_pretrained_weights_when_they_are_here(tmp_path, monkeypatch, capsys, one_thread):
    """With deftly's own pretrained LM in DEFTLY_HOME/models, the example uses it (and its sizes)."""
    import torch

    from deftly.core.errors import ExportError
    from deftly.text.models import AWD_LSTM, awd_lstm_lm_config, get_language_model
    from deftly.text.pretrained import own_lm_path, save_pretrained_lm
    from deftly.text.transform import default_spec_tok

    monkeypatch.setenv("DEFTLY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DEFTLY_OFFLINE", "1")
    monkeypatch.setenv("DEFTLY_PROGRESS", "0")
    monkeypatch.setattr("deftly.text.pretrained.SHIPPED_LM", tmp_path / "not_shipped")  # as if none shipped
    lesson3 = load_example("lesson3_imdb_sample.py")
    argv = ["--out", str(tmp_path / "out"), "--epochs", "0", "--clas-epochs", "1", "--bs", "64"]
    with pytest.raises(ExportError, match=r"scripts/pretrain_lm\.py"):  # asked for, but there are none
        lesson3.main([*argv, "--pretrained"])

    cfg = dict(awd_lstm_lm_config, emb_sz=16, n_hid=24, n_layers=2)
    itos = default_spec_tok + ["the", "dress", "i", "love", "it", ".", ","]
    torch.manual_seed(0)
    save_pretrained_lm(own_lm_path(), get_language_model(AWD_LSTM, len(itos), config=cfg), itos, cfg)
    capsys.readouterr()
    acc = lesson3.main(argv)
    out = capsys.readouterr().out
    assert "AWD_LSTM emb_sz=16 n_hid=24 n_layers=2, pretrained weights" in out
    assert "note:" not in out
    assert 0.0 <= acc <= 1.0 and f"lesson3_imdb_sample: accuracy={acc:.3f}" in out
