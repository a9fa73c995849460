"""language_model_learner(pretrained=True) online: fastai's WT103-style archive downloaded from a
server on 127.0.0.1, converted (the vocabulary pickle read without running anything) and matched to
the data's vocabulary; a hostile pickle in the archive is refused."""
from __future__ import annotations

import io
import os
import pickle
import tarfile

import pytest
import torch

from deftly.core.errors import ExportError
from deftly.text import AWD_LSTM, TextList, language_model_learner
from deftly.text.models import (TextArch, awd_lstm_clas_config, awd_lstm_clas_split, awd_lstm_lm_config,
                                awd_lstm_lm_split, get_language_model, register_text_arch)
from deftly.text.transform import default_spec_tok

TINY = dict(emb_sz=16, n_hid=24, n_layers=2)
WORDS = ["the", "dress", "i", "love", "it", ".", ",", "and", "a", "is"]


def _archive(state: dict, itos_pickle: bytes) -> bytes:
    """A wt103-fwd.tgz as fastai publishes it: lstm_fwd.pth (a torch state dict) + itos_wt103.pkl."""
    weights = io.BytesIO()
    torch.save(state, weights)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("wt103-fwd/lstm_fwd.pth", weights.getvalue()), ("wt103-fwd/itos_wt103.pkl", itos_pickle)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _tiny_arch(name: str, url: str) -> TextArch:
    return register_text_arch(TextArch(name, AWD_LSTM, dict(awd_lstm_lm_config, **TINY),
                                       dict(awd_lstm_clas_config, **TINY), awd_lstm_lm_split, awd_lstm_clas_split,
                                       pretrained_url=url))


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


@pytest.fixture
def online(monkeypatch, tmp_path):
    monkeypatch.setenv("DEFTLY_OFFLINE", "0")
    monkeypatch.setenv("DEFTLY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DEFTLY_PROGRESS", "0")


def test_wt103_style_weights_are_downloaded_converted_and_matched(file_server, online, imdb, tmp_path, one_thread):
    files, base = file_server
    torch.manual_seed(0)
    itos = default_spec_tok + WORDS
    model = get_language_model(AWD_LSTM, len(itos), config=dict(awd_lstm_lm_config, **TINY))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    files.files["/wt103-fwd.tgz"] = _archive(state, pickle.dumps(itos))
    arch = _tiny_arch("TINY_AWD_DL", f"{base}/wt103-fwd")

    data = (TextList.from_csv(imdb, "texts.csv", cols="text").split_by_rand_pct(0.1, seed=1)
            .label_for_lm().databunch(bs=16))
    learn = language_model_learner(data, arch, pretrained=True)
    enc = learn.model[0].encoder.weight.detach()
    old = state["0.encoder.weight"]
    for word in ("the", "dress", "love"):
        assert torch.equal(enc[data.vocab.stoi[word]], old[itos.index(word)]), word
    unseen = [w for w in data.vocab.itos if w not in itos and not w.startswith("xxfake")][0]
    known = torch.tensor([itos.index(w) for w in itos])
    assert torch.allclose(enc[data.vocab.stoi[unseen]], old[known].mean(0), atol=1e-6)  # unknown words: mean row
    assert torch.equal(learn.model[0].rnns[0].weight_hh_l0_raw.detach(), state["0.rnns.0.weight_hh_l0_raw"])
    assert learn.layer_groups[0][0].weight_hh_l0_raw.requires_grad is False  # starts frozen but for the last group
    assert list((tmp_path / "home" / "models").rglob("lstm_fwd.pth"))  # cached where untar_data(data=False) puts models


def test_a_hostile_vocabulary_pickle_is_refused(file_server, online, imdb, tmp_path, monkeypatch, one_thread):
    files, base = file_server
    model = get_language_model(AWD_LSTM, len(default_spec_tok) + len(WORDS), config=dict(awd_lstm_lm_config, **TINY))
    files.files["/wt103-fwd.tgz"] = _archive(model.state_dict(), pickle.dumps([*default_spec_tok, _Boom()]))
    arch = _tiny_arch("TINY_AWD_HOSTILE", f"{base}/wt103-fwd")
    monkeypatch.chdir(tmp_path)
    data = (TextList.from_csv(imdb, "texts.csv", cols="text").split_by_rand_pct(0.1, seed=1)
            .label_for_lm().databunch(bs=16))
    with pytest.raises(ExportError):
        language_model_learner(data, arch, pretrained=True)
    assert not (tmp_path / "pwned.txt").exists()
