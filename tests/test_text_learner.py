"""deftly.text.learner: ULMFiT on the bundled real reviews (imdb_sample) with a tiny AWD-LSTM: the
language model trains and generates, its encoder moves into the classifier, gradual unfreezing,
ordered predictions, interpretation, and pretrained weights (a tiny saved LM; none offline)."""
from __future__ import annotations

import pytest
import torch

from deftly.core.errors import ConfigError, DataError, ExportError
from deftly.data.items import Category
from deftly.text.data import TextList
from deftly.text.learner import (
    LanguageLearner, RNNLearner, TextClassificationInterpretation, language_model_learner, text_classifier_learner,
)
from deftly.text.models import AWD_LSTM, awd_lstm_clas_config, awd_lstm_lm_config, get_language_model
from deftly.text.pretrained import save_pretrained_lm
from deftly.text.transform import UNK

torch.set_num_threads(1)

LM_CFG = dict(awd_lstm_lm_config, emb_sz=32, n_hid=64, n_layers=2)
CLAS_CFG = dict(awd_lstm_clas_config, emb_sz=32, n_hid=64, n_layers=2)




@pytest.fixture(scope="module")
def data_lm(imdb):
    return (TextList.from_csv(imdb, "texts.csv", cols="text")
            .split_by_rand_pct(0.1, seed=1)
            .label_for_lm()
            .databunch(bs=16, bptt=40))


@pytest.fixture(scope="module")
def trained_lm(data_lm):
    """A tiny language model fine-tuned for 2 short epochs; its valid losses before and after."""
    torch.manual_seed(0)
    learn = language_model_learner(data_lm, AWD_LSTM, config=LM_CFG, pretrained=False, drop_mult=0.3,
                                   progress=False)
    before = learn.validate()[0]
    learn.fit_one_cycle(2, 1e-2, moms=(0.8, 0.7))
    return learn, before


@pytest.fixture(scope="module")
def data_clas(imdb, data_lm):
    return (TextList.from_csv(imdb, "texts.csv", cols="text", vocab=data_lm.vocab)
            .split_from_df(col=2)
            .label_from_df(cols=0)
            .databunch(bs=16))


@pytest.fixture(scope="module")
def trained_clas(trained_lm, data_clas):
    """The classifier with the LM's encoder, trained one short epoch with the encoder frozen."""
    lm, _ = trained_lm
    lm.save_encoder("enc_test")
    torch.manual_seed(0)
    learn = text_classifier_learner(data_clas, AWD_LSTM, config=CLAS_CFG, drop_mult=0.5, bptt=30, progress=False)
    learn.load_encoder("enc_test")
    learn.fit_one_cycle(1, 2e-2, mom=(0.8, 0.7))
    return learn


def _trainable(group) -> list[bool]:
    return [p.requires_grad for p in group.parameters()]


# ---------------------------------------------------------------------------- language model


def test_language_model_trains(trained_lm):
    learn, before = trained_lm
    assert isinstance(learn, LanguageLearner)
    losses = learn.recorder.value_history("valid_loss")
    assert len(losses) == 2
    assert losses[1] < losses[0] < before - 0.5  # random init starts near ln(vocab size)
    assert learn.recorder.losses[-1] < learn.recorder.losses[0] - 1.0
    acc = learn.recorder.value_history("accuracy")[-1]
    assert 0.05 < float(acc) < 1.0


def test_lm_layer_groups(trained_lm):
    learn, _ = trained_lm
    assert len(learn.layer_groups) == 3  # each RNN, then embedding + decoder (tied)
    enc = learn.model[0]
    assert enc.encoder.weight is learn.model[1].decoder.weight


def test_lm_predict_continues_the_text(trained_lm):
    learn, _ = trained_lm
    torch.manual_seed(1)
    start = "I liked this dress because"
    out = learn.predict(start, 12, temperature=0.8)
    assert out.startswith(start + " ")
    assert len(out.split(" ")) == len(start.split(" ")) + 12
    assert UNK not in out.split(" ")[5:]
    assert learn.predict(start, 0) == start


def test_lm_predict_no_unk(trained_lm):
    learn, _ = trained_lm
    bias = learn.model[1].decoder.bias
    saved = bias.detach().clone()
    unk = learn.data.vocab.stoi[UNK]
    try:
        with torch.no_grad():
            bias[unk] = 50.0  # the model now all but always says xxunk
        torch.manual_seed(0)
        with_unk = learn.predict("the dress", 8, no_unk=False).split(" ")[2:]
        assert with_unk == [UNK] * 8
        torch.manual_seed(0)
        without = learn.predict("the dress", 8, no_unk=True).split(" ")[2:]
        assert len(without) == 8 and UNK not in without
    finally:
        with torch.no_grad():
            bias.copy_(saved)


def test_lm_predict_validates_its_arguments(trained_lm):
    learn, _ = trained_lm
    for t in (0, -1.0):
        with pytest.raises(ConfigError, match="temperature"):
            learn.predict("the dress", 3, temperature=t)
    with pytest.raises(DataError, match="str"):
        learn.predict(123, 3)


def test_lm_learner_rejects_classifier_data(data_clas):
    with pytest.raises(ConfigError, match="label_for_lm"):
        language_model_learner(data_clas, AWD_LSTM, config=LM_CFG, pretrained=False)


# ---------------------------------------------------------------------------- encoder and classifier


def test_save_encoder_load_encoder(trained_lm, trained_clas, imdb):
    lm, _ = trained_lm
    assert (imdb / "models" / "enc_test.safetensors").is_file()
    fresh = text_classifier_learner(trained_clas.data, AWD_LSTM, config=CLAS_CFG, progress=False)
    lm_enc = lm.model[0].state_dict()
    before = fresh.model[0].module.state_dict()
    assert not torch.equal(before["encoder.weight"], lm_enc["encoder.weight"])
    fresh.load_encoder("enc_test")
    after = fresh.model[0].module.state_dict()
    assert set(after) == set(lm_enc)
    assert all(torch.equal(after[k], lm_enc[k]) for k in lm_enc)
    # load_encoder freezes: only the head trains
    groups = fresh.layer_groups
    assert not any(any(_trainable(g)) for g in groups[:-1]) and all(_trainable(groups[-1]))


def test_load_encoder_with_another_vocabulary_is_a_clear_error(trained_lm, imdb):
    trained_lm  # the encoder file exists
    other = (TextList.from_csv(imdb, "texts.csv", cols="text")  # no vocab=data_lm.vocab
             .split_from_df(col=2).label_from_df(cols=0).databunch(bs=16))
    learn = text_classifier_learner(other, AWD_LSTM, config=CLAS_CFG, progress=False)
    with pytest.raises(DataError, match="vocab=data_lm.vocab"):
        learn.load_encoder("enc_test")


def test_classifier_layer_groups_and_gradual_unfreezing(trained_clas):
    learn = trained_clas
    groups = learn.layer_groups
    assert len(groups) == 4  # embedding, RNN 1, RNN 2, head
    learn.freeze_to(-2)
    assert [all(_trainable(g)) for g in groups] == [False, False, True, True]
    assert [any(_trainable(g)) for g in groups] == [False, False, True, True]
    learn.fit_one_cycle(1, slice(1e-2 / (2.6 ** 4), 1e-2), moms=(0.8, 0.7))
    lrs = sorted({g["lr"] for g in learn.opt.param_groups})
    assert len(lrs) > 1  # discriminative learning rates over the layer groups
    learn.freeze_to(-3)
    assert [all(_trainable(g)) for g in groups] == [False, True, True, True]
    learn.unfreeze()
    assert all(all(_trainable(g)) for g in groups)
    learn.freeze()
    assert [any(_trainable(g)) for g in groups] == [False, False, False, True]


def test_classifier_predict(trained_clas):
    learn = trained_clas
    cat, idx, probs = learn.predict("I really love this dress, it fits perfectly")
    assert isinstance(cat, Category) and str(cat) in ("negative", "positive")
    assert str(cat) == learn.data.classes[int(idx)]
    assert probs.shape == (2,) and abs(float(probs.sum()) - 1) < 1e-5
    assert int(idx) == int(probs.argmax())
    cat2, _, probs2 = learn.predict("zzqx unseenword")  # unknown words: xxunk, still a prediction
    assert abs(float(probs2.sum()) - 1) < 1e-5


def test_get_preds_ordered_is_dataset_order(trained_clas):
    learn = trained_clas
    ds = learn.data.valid_ds
    preds, targs = learn.get_preds()
    assert preds.shape == (len(ds), 2)
    assert targs.tolist() == [int(ds.y.get(i).data) for i in range(len(ds))]
    for i in (0, 3, 57, len(ds) - 1):
        _, _, probs = learn.predict(ds.x.items[i])
        assert torch.allclose(probs, preds[i], atol=1e-5), i
    unordered, targs_u = learn.get_preds(ordered=False)  # the loader's longest-first order
    assert targs_u.tolist() != targs.tolist()
    assert torch.allclose(unordered.sort(0).values, preds.sort(0).values, atol=1e-6)


def test_show_top_losses(trained_clas, capsys):
    interp = TextClassificationInterpretation.from_learner(trained_clas)
    interp.show_top_losses(4, max_len=10)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    assert all(h in lines[0] for h in ("text", "prediction", "actual", "loss", "probability"))
    assert all("xxbos" in line for line in lines[1:])
    losses, _ = interp.top_losses(4)
    assert losses.tolist() == sorted(losses.tolist(), reverse=True)
    assert f"{float(losses[0]):.2f}" in lines[1]


def test_classifier_learner_rejects_lm_data(data_lm):
    with pytest.raises(ConfigError, match="classifier data"):
        text_classifier_learner(data_lm, AWD_LSTM, config=CLAS_CFG)


# ---------------------------------------------------------------------------- pretrained weights


def test_pretrained_fnames_match_embeddings_by_word(data_lm):
    vocab = data_lm.vocab.itos
    words = [w for w in vocab[9:] if not w.startswith("xxfake")]
    # an "old" vocabulary: special tokens, some of this data's words in another order, foreign words
    old_itos = vocab[:9] + words[40:10:-1] + ["zyzzyva", "quux"] + words[50:60]
    torch.manual_seed(3)
    old = get_language_model(AWD_LSTM, len(old_itos), config=LM_CFG)
    with torch.no_grad():
        old[0].encoder.weight.copy_(torch.randn_like(old[0].encoder.weight))
        old[1].decoder.bias.copy_(torch.arange(len(old_itos), dtype=torch.float))
    models = data_lm.path / "models"
    save_pretrained_lm(models / "tiny_lm", old, old_itos, LM_CFG)
    learn = language_model_learner(data_lm, AWD_LSTM, config=LM_CFG, pretrained_fnames=("tiny_lm", "tiny_lm"),
                                   progress=False)
    new_w = learn.model[0].encoder.weight.detach()
    old_w = old[0].encoder.weight.detach()
    old_stoi = {w: i for i, w in enumerate(old_itos)}
    mean = old_w.mean(0)
    n_known = 0
    for i, w in enumerate(vocab):
        if w in old_stoi:
            n_known += 1
            assert torch.equal(new_w[i], old_w[old_stoi[w]]), w
            assert float(learn.model[1].decoder.bias[i].detach()) == old_stoi[w]
        else:
            assert torch.allclose(new_w[i], mean, atol=1e-6), w
    assert n_known == 9 + 30 + 10
    assert torch.equal(learn.model[0].encoder_dp.emb.weight, new_w)
    assert learn.model[1].decoder.weight is learn.model[0].encoder.weight  # still tied
    old_rnn, new_rnn = old[0].rnns[1].state_dict(), learn.model[0].rnns[1].state_dict()
    assert all(torch.equal(old_rnn[k], new_rnn[k]) for k in old_rnn)
    groups = learn.layer_groups  # frozen but for the embeddings and decoder
    assert [any(_trainable(g)) for g in groups] == [False, False, True]


def test_pretrained_fnames_missing_files(data_lm):
    with pytest.raises(ExportError, match="no_such_lm"):
        language_model_learner(data_lm, AWD_LSTM, config=LM_CFG, pretrained_fnames=("no_such_lm", "no_such_itos"))
    with pytest.raises(ConfigError, match="pretrained_fnames"):
        language_model_learner(data_lm, AWD_LSTM, config=LM_CFG, pretrained_fnames=("only_one",))


def test_pretrained_offline_without_weights_says_what_to_do(data_lm, tmp_path, monkeypatch):
    from deftly.datasets import URLs

    monkeypatch.setenv("DEFTLY_HOME", str(tmp_path / "empty_home"))
    monkeypatch.setenv("DEFTLY_OFFLINE", "1")
    monkeypatch.setattr("deftly.text.pretrained.SHIPPED_LM", tmp_path / "not_shipped")  # as if none shipped
    with pytest.raises(ExportError, match=r"scripts/pretrain_lm\.py"):
        language_model_learner(data_lm, AWD_LSTM, config=LM_CFG, pretrained=True)
    with pytest.raises(ExportError, match="pretrained=False"):
        language_model_learner(data_lm, AWD_LSTM, config=LM_CFG, pretrained=False, pretrained_model=URLs.WT103)


def test_the_shipped_english_lm_is_used_offline(data_lm, tmp_path, monkeypatch):
    """With nothing pretrained on the machine, deftly's shipped LM (float16) is used, at its own size."""
    from deftly.text.pretrained import SHIPPED_LM, load_pretrained_lm

    monkeypatch.setenv("DEFTLY_HOME", str(tmp_path / "empty_home"))
    monkeypatch.setenv("DEFTLY_OFFLINE", "1")
    shipped = load_pretrained_lm(SHIPPED_LM)
    assert shipped.arch == "AWD_LSTM" and len(shipped.itos) == 12000 and shipped.itos[:2] == ["xxunk", "xxpad"]
    learn = language_model_learner(data_lm, AWD_LSTM, pretrained=True, progress=False)
    enc = learn.model[0]
    assert (enc.emb_sz, enc.n_hid, enc.n_layers) == (shipped.config["emb_sz"], shipped.config["n_hid"],
                                                     shipped.config["n_layers"])
    for word in ("the", "dress", "love"):
        assert torch.equal(enc.encoder.weight[data_lm.vocab.stoi[word]].detach(),
                           shipped.state["0.encoder.weight"][shipped.itos.index(word)])


def test_rnn_learner_resets_hidden_state(trained_lm):
    learn, _ = trained_lm
    assert isinstance(learn, RNNLearner)
    # the LM carries its hidden state from batch to batch; each validation starts from a reset state
    first = learn.validate()
    learn.predict("the dress is", 3)  # leaves another hidden state behind
    assert learn.validate() == pytest.approx(first, abs=1e-6)
