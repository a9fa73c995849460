"""AWD-LSTM, its classifier and pretrained-weight handling (deftly.text.models / .pretrained), at tiny sizes."""
from __future__ import annotations

import os
import pickle
import warnings

import pytest
import torch
from torch import nn

from deftly.core.errors import ConfigError, ExportError
from deftly.text.models import (
    AWD_LSTM, EmbeddingDropout, LinearDecoder, MultiBatchEncoder, PoolingLinearClassifier, RNNDropout, SequentialRNN,
    WeightDropout, awd_lstm_clas_config, awd_lstm_clas_split, awd_lstm_lm_config, awd_lstm_lm_split,
    get_language_model, get_text_arch, get_text_classifier, list_text_archs, masked_concat_pool,
)
from deftly.text.pretrained import (
    RestrictedUnpickler, convert_fastai_lm_state, convert_fastai_wt103, load_pretrained_lm, match_embeds,
    read_itos_pickle, save_pretrained_lm,
)

torch.set_num_threads(1)

V = 40
LM_CFG = dict(awd_lstm_lm_config, emb_sz=8, n_hid=12, n_layers=3)
CLAS_CFG = dict(awd_lstm_clas_config, emb_sz=8, n_hid=12, n_layers=3)


def lm(drop_mult: float = 1.0) -> SequentialRNN:
    torch.manual_seed(0)
    return get_language_model(AWD_LSTM, V, config=LM_CFG, drop_mult=drop_mult)


def clas(**kw) -> SequentialRNN:
    torch.manual_seed(0)
    kw.setdefault("bptt", 5)
    kw.setdefault("max_len", 12)
    return get_text_classifier(AWD_LSTM, V, 3, config=CLAS_CFG, **kw)


def ids(bs: int, sl: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, V, (bs, sl), generator=g)


# ----------------------------------------------------------------------------------- AWD-LSTM


def test_lm_shapes_and_v1_names():
    m = lm()
    decoded, raw, out = m(ids(4, 7))
    assert decoded.shape == (4, 7, V)
    assert [r.shape for r in raw] == [(4, 7, 12), (4, 7, 12), (4, 7, 8)]
    assert len(out) == 3 and out[-1] is raw[-1]  # no hidden dropout after the last layer
    keys = set(m.state_dict())
    assert {"0.encoder.weight", "0.encoder_dp.emb.weight", "0.rnns.0.weight_hh_l0_raw", "0.rnns.0.module.weight_ih_l0",
            "0.rnns.0.module.bias_ih_l0", "0.rnns.0.module.bias_hh_l0", "1.decoder.weight", "1.decoder.bias"} <= keys
    assert "0.rnns.0.module.weight_hh_l0" not in keys


def test_default_sizes_and_bidir():
    enc = AWD_LSTM(V)
    assert (enc.emb_sz, enc.n_hid, enc.n_layers) == (400, 1152, 3)
    assert enc.rnns[0].module.hidden_size == 1152 and enc.rnns[2].module.hidden_size == 400
    bi = AWD_LSTM(V, emb_sz=8, n_hid=12, n_layers=2, bidir=True)
    raw, _ = bi(ids(2, 5))
    assert [r.shape[-1] for r in raw] == [12, 8]


def test_tied_decoder_is_the_same_tensor():
    m = lm()
    assert m[1].decoder.weight is m[0].encoder.weight
    untied = get_language_model(AWD_LSTM, V, config=dict(LM_CFG, tie_weights=False, out_bias=False))
    assert untied[1].decoder.weight is not untied[0].encoder.weight and untied[1].decoder.bias is None


def test_hidden_state_carried_detached_and_reset():
    m = lm().eval()
    x = ids(2, 6)
    with torch.no_grad():
        first = m(x)[0]
        second = m(x)[0]  # starts from the state the first call left
        m.reset()
        again = m(x)[0]
    assert not torch.allclose(first, second)
    assert torch.allclose(first, again)
    # one long call equals two calls of half the length (the state carries over)
    m.reset()
    with torch.no_grad():
        whole = m(torch.cat([x, x], 1))[0]
        m.reset()
        halves = torch.cat([m(x)[0], m(x)[0]], 1)
    assert torch.allclose(whole, halves, atol=1e-6)
    m.train()
    m(x)[0].sum().backward()
    assert all(not h.requires_grad for pair in m[0].hidden for h in pair)


def test_batch_size_changes_between_calls():
    m = lm().eval()
    x, y = ids(4, 5), ids(4, 5, seed=2)
    with torch.no_grad():
        m(x)
        full = m(y)[0]  # reference: the 4 streams go on
        m.reset()
        m(x)
        small = m(y[:3])[0]  # a smaller last batch: the first rows' state carries on
        assert m[0].hidden[0][0].shape[1] == 3
        big = m(ids(6, 4))[0]  # a bigger batch: the new rows start from zeros
        m.reset()
        m(x[:2])
        fresh_rows = m(torch.cat([ids(2, 4), ids(6, 4)[2:]]))[0]
    assert torch.allclose(small, full[:3], atol=1e-6)
    assert big.shape == (6, 4, V) and m[0].hidden[0][0].shape[1] == 6
    m.reset()
    with torch.no_grad():
        alone = m(ids(6, 4)[2:])[0]
    assert torch.allclose(fresh_rows[2:], alone, atol=1e-6)


def test_weight_dropout_train_vs_eval():
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 6, batch_first=True)
    ref = nn.LSTM(4, 6, batch_first=True)
    ref.load_state_dict(lstm.state_dict())
    wd = WeightDropout(lstm, 0.9)
    assert [n for n, _ in wd.named_parameters()] == ["weight_hh_l0_raw", "module.weight_ih_l0", "module.bias_ih_l0",
                                                     "module.bias_hh_l0"]
    x = torch.randn(2, 5, 4)
    wd.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out_eval, _ = wd(x)
    assert torch.allclose(out_eval, ref(x)[0], atol=1e-6)  # eval: the raw weights, exactly nn.LSTM
    wd.train()
    a, _ = wd(x)
    b, _ = wd(x)
    assert not torch.allclose(a, out_eval) and not torch.allclose(a, b)  # a fresh mask each call
    a.sum().backward()
    assert wd.weight_hh_l0_raw.grad is not None and wd.weight_hh_l0_raw.grad.abs().sum() > 0
    wd.weight_p = 0.0
    assert torch.allclose(wd(x)[0], out_eval, atol=1e-6)


def test_weight_dropout_generic_module_and_device_move():
    torch.manual_seed(0)
    lin = WeightDropout(nn.Linear(5, 3), 0.5, layer_names="weight")
    x = torch.randn(4, 5)
    lin.eval()
    assert torch.allclose(lin(x), x @ lin.weight_raw.T + lin.module.bias)
    lin.train()
    assert not torch.allclose(lin(x), x @ lin.weight_raw.T + lin.module.bias)
    rnn = WeightDropout(nn.LSTM(3, 4, batch_first=True), 0.3).to(torch.float64)  # _apply keeps working
    assert rnn(torch.randn(2, 3, 3, dtype=torch.float64))[0].dtype == torch.float64


def test_embedding_and_rnn_dropout():
    torch.manual_seed(0)
    emb = nn.Embedding(10, 6, padding_idx=1)
    ed = EmbeddingDropout(emb, 0.5)
    words = torch.tensor([[3, 3, 4, 5, 3]])
    out = ed(words)
    rows_zero = (out[0] == 0).all(-1)
    assert rows_zero[0] == rows_zero[1] == rows_zero[4]  # a word is dropped everywhere or nowhere
    kept = ~rows_zero
    assert torch.allclose(out[0][kept], emb(words)[0][kept] * 2)
    ed.eval()
    assert torch.equal(ed(words), emb(words))
    rd = RNNDropout(0.5)
    y = rd(torch.ones(3, 7, 4))
    assert torch.equal(y, y[:, :1].expand_as(y))  # the same mask at every time step
    assert torch.equal(rd.eval()(torch.ones(3, 7, 4)), torch.ones(3, 7, 4))


def test_drop_mult_scales_every_dropout():
    m = lm(drop_mult=0.5)
    enc = m[0]
    assert enc.encoder_dp.embed_p == pytest.approx(0.01) and enc.input_dp.p == pytest.approx(0.125)
    assert enc.hidden_dps[0].p == pytest.approx(0.075) and enc.rnns[0].weight_p == pytest.approx(0.1)
    assert m[1].output_dp.p == pytest.approx(0.05)
    c = clas(drop_mult=0.5)
    assert c[0].module.rnns[1].weight_p == pytest.approx(0.25)
    assert [d.p for d in c[1].layers if isinstance(d, nn.Dropout)] == [pytest.approx(0.2), pytest.approx(0.1)]
    assert LM_CFG["weight_p"] == 0.2 and awd_lstm_lm_config["output_p"] == 0.1  # configs are not mutated


# --------------------------------------------------------------------------------- classifier


def test_classifier_shapes_grads_and_max_len():
    c = clas()
    x = ids(3, 30)
    x[1, :20] = 1  # padding first, as v1
    x[2, 25:] = 1  # or last: both are understood
    logits, raw, out = c(x)
    assert logits.shape == (3, 3) and out[-1].shape == (3, 12, 8) and raw[0].shape == (3, 12, 12)
    logits.sum().backward()
    assert c[0].module.encoder.weight.grad is not None
    # row 1 has 10 tokens (< max_len): its 2 last positions are padding in the encoder's output
    _, _, mask = c[0](x)
    assert mask.sum(1).tolist() == [0, 2, 0]


def test_classifier_pooling_ignores_padding():
    c = clas().eval()
    doc = ids(1, 17, seed=3)
    with torch.no_grad():
        alone = c(doc)[0]
        pad_first = c(torch.cat([torch.ones(1, 9, dtype=torch.long), doc], 1))[0]
        pad_last = c(torch.cat([doc, torch.ones(1, 4, dtype=torch.long)], 1))[0]
        # in a batch with a longer and a shorter document, padded v1-style (at the start)
        batch = torch.ones(3, 33, dtype=torch.long)
        batch[0] = ids(1, 33, seed=4)
        batch[1, -17:] = doc
        batch[2, -3:] = ids(1, 3, seed=5)
        in_batch = c(batch)[0][1:2]
    assert torch.allclose(alone, pad_first, atol=1e-5)
    assert torch.allclose(alone, pad_last, atol=1e-5)
    assert torch.allclose(alone, in_batch, atol=1e-5)


def test_masked_concat_pool_and_empty_rows():
    out = torch.arange(12, dtype=torch.float).view(2, 3, 2)
    mask = torch.tensor([[True, False, False], [True, True, True]])
    pooled = masked_concat_pool(out, mask)
    assert pooled[0].tolist() == [4, 5, 4, 5, 3, 4]  # last, max, mean over positions 1-2
    assert pooled[1].tolist() == [0] * 6  # nothing to pool
    c = clas().eval()
    with torch.no_grad():
        both = c(torch.tensor([[1, 1, 1], [1, 5, 6]]))[0]
        empty = c(torch.ones(2, 4, dtype=torch.long))[0]
    assert torch.isfinite(both).all() and torch.isfinite(empty).all()


def test_head_layers_and_bad_ps():
    c = clas(lin_ftrs=[20, 10], ps=[0.2, 0.1])
    lins = [m for m in c[1].layers if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lins] == [(24, 20), (20, 10), (10, 3)]
    with pytest.raises(ConfigError):
        clas(lin_ftrs=[20], ps=[0.1, 0.1])
    with pytest.raises(ConfigError):
        PoolingLinearClassifier([6, 2], [])


# ------------------------------------------------------------------------------------- splits


def _check_split(model: nn.Module, groups: list[nn.Module]) -> None:
    ids_per_group = [{id(p) for p in g.parameters()} for g in groups]
    all_ids = [i for s in ids_per_group for i in s]
    assert len(all_ids) == len(set(all_ids))  # no parameter in two groups
    assert set(all_ids) == {id(p) for p in model.parameters()}  # every parameter in a group


def test_lm_split_covers_every_parameter_once():
    m = lm()
    groups = awd_lstm_lm_split(m)
    assert len(groups) == 4
    _check_split(m, groups)
    assert any(p is m[0].encoder.weight for p in groups[-1].parameters())
    assert any(p is m[0].rnns[0].weight_hh_l0_raw for p in groups[0].parameters())


def test_clas_split_covers_every_parameter_once():
    c = clas()
    groups = awd_lstm_clas_split(c)
    assert len(groups) == 5
    _check_split(c, groups)
    assert list(groups[-1].parameters())[0] is next(c[1].parameters())


def test_split_fits_learner_freezing():
    from deftly.train.layers import set_trainable

    c = clas()
    groups = awd_lstm_clas_split(c)
    set_trainable(groups[:-2], False, train_bn=True)  # freeze_to(-2)
    assert not c[0].module.encoder.weight.requires_grad and not c[0].module.rnns[1].weight_hh_l0_raw.requires_grad
    assert c[0].module.rnns[2].weight_hh_l0_raw.requires_grad and all(p.requires_grad for p in c[1].parameters())


def test_registry():
    assert "AWD_LSTM" in list_text_archs()
    assert get_text_arch("AWD_LSTM") is get_text_arch(AWD_LSTM)
    assert get_text_arch(AWD_LSTM).lm_split is awd_lstm_lm_split
    with pytest.raises(ConfigError):
        get_text_arch("nope")
    assert isinstance(get_language_model("AWD_LSTM", V, config=LM_CFG)[1], LinearDecoder)
    assert isinstance(clas()[0], MultiBatchEncoder)


# ----------------------------------------------------------------------------------- pretrained


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_restricted_unpickler_refuses_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "itos.pkl"
    evil.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ExportError, match="not a plain pickled list"):
        read_itos_pickle(evil)
    assert not (tmp_path / "pwned.txt").exists()
    hidden = tmp_path / "hidden.pkl"  # a list of strings with a call tucked inside
    hidden.write_bytes(pickle.dumps(["xxunk", _Evil()]))
    with pytest.raises(ExportError):
        read_itos_pickle(hidden)
    assert not (tmp_path / "pwned.txt").exists()
    wrong = tmp_path / "dict.pkl"
    wrong.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ExportError, match="not a list of strings"):
        read_itos_pickle(wrong)
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(pickle.dumps(["a", "b"])[:-3])
    with pytest.raises(ExportError):
        read_itos_pickle(broken)
    with open(evil, "rb") as f, pytest.raises(pickle.UnpicklingError):
        RestrictedUnpickler(f).load()


def test_restricted_unpickler_accepts_list_of_strings(tmp_path):
    itos = ["xxunk", "xxpad", "the", "é", ","]
    for proto in (2, 4, pickle.HIGHEST_PROTOCOL):
        p = tmp_path / f"itos{proto}.pkl"
        p.write_bytes(pickle.dumps(itos, protocol=proto))
        assert read_itos_pickle(p) == itos


def test_match_embeds_copies_rows():
    m = lm()
    sd = m.state_dict()
    old_itos = [f"w{i}" for i in range(V)]
    new_itos = ["w5", "new", "w0", "w39"]
    out = match_embeds(sd, old_itos, new_itos)
    enc, bias = sd["0.encoder.weight"], sd["1.decoder.bias"]
    assert out["0.encoder.weight"].shape == (4, 8)
    assert torch.equal(out["0.encoder.weight"][0], enc[5]) and torch.equal(out["0.encoder.weight"][3], enc[39])
    assert torch.allclose(out["0.encoder.weight"][1], enc.mean(0))
    assert torch.allclose(out["1.decoder.bias"][1], bias.mean()) and out["1.decoder.bias"][2] == bias[0]
    assert torch.equal(out["1.decoder.weight"], out["0.encoder.weight"])
    assert torch.equal(out["0.encoder_dp.emb.weight"], out["0.encoder.weight"])
    assert sd["0.encoder.weight"].shape == (V, 8)  # the input is not changed
    new = get_language_model(AWD_LSTM, 4, config=LM_CFG)
    new.load_state_dict(out)
    assert new[1].decoder.weight is new[0].encoder.weight


def _as_v1(sd: dict) -> dict:
    """Our state dict as fastai v1 saved it: plus the dropped copy `module.weight_hh_l0`, in {'model': ...}."""
    out = {}
    for k, v in sd.items():
        out[k] = v.clone()
        if k.endswith("weight_hh_l0_raw"):
            out[k.replace("weight_hh_l0_raw", "module.weight_hh_l0")] = v.clone() * 0.5
    return {"model": out, "opt": {"state": {}, "param_groups": []}}


def _as_v07(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        k = k.replace("encoder_dp.emb.weight", "encoder_with_dropout.embed.weight")
        k = k.replace("weight_hh_l0_raw", "module.weight_hh_l0_raw")
        out[k] = v.clone()
    return out


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_convert_v1_state_dict_round_trips(tmp_path):
    m = lm()
    sd = m.state_dict()
    itos = [f"w{i}" for i in range(V)]
    torch.save(_as_v1(sd), tmp_path / "lstm_fwd.pth")
    (tmp_path / "itos_wt103.pkl").write_bytes(pickle.dumps(itos))
    state, got_itos = convert_fastai_wt103(tmp_path / "lstm_fwd.pth", tmp_path / "itos_wt103.pkl")
    assert got_itos == itos and set(state) == set(sd)
    fresh = get_language_model(AWD_LSTM, V, config=LM_CFG)
    fresh.load_state_dict(state)
    x = ids(2, 6)
    m.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.allclose(m(x)[0], fresh(x)[0])
    assert set(convert_fastai_lm_state(_as_v07(sd))) == set(sd)
    (tmp_path / "short.pkl").write_bytes(pickle.dumps(itos[:-1]))
    with pytest.raises(ExportError, match="do not belong together"):
        convert_fastai_wt103(tmp_path / "lstm_fwd.pth", tmp_path / "short.pkl")
    (tmp_path / "bad.pth").write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ExportError):
        convert_fastai_wt103(tmp_path / "bad.pth", tmp_path / "itos_wt103.pkl")


def test_encoder_weights_load_into_classifier():
    m = lm()
    c = clas()
    c[0].module.load_state_dict(m[0].state_dict())  # v1's save_encoder / load_encoder
    assert torch.equal(c[0].module.encoder.weight, m[0].encoder.weight)


def test_save_and_load_pretrained_lm(tmp_path):
    m = lm()
    itos = [f"w{i}" for i in range(V)]
    path = save_pretrained_lm(tmp_path / "tiny_lm", m, itos, LM_CFG)
    assert path.suffix == ".safetensors" and (tmp_path / "tiny_lm.json").is_file()
    got = load_pretrained_lm(tmp_path / "tiny_lm")
    assert got.itos == itos and got.arch == "AWD_LSTM" and got.config == LM_CFG
    fresh = get_language_model(got.arch, len(got.itos), config=got.config)
    fresh.load_state_dict(got.state)
    for k, v in m.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
    (tmp_path / "tiny_lm.json").write_text("{}")
    with pytest.raises(ExportError):
        load_pretrained_lm(tmp_path / "tiny_lm.safetensors")


def test_pretrained_lm_saved_as_int8_rows(tmp_path):
    """dtype=int8: matrices as int8 rows with a scale (each value within 1/254 of its row's largest),
    other floats as float16; float32 again on loading, tied weights still one tensor's values."""
    from safetensors.torch import load_file, save_file

    m = lm()
    itos = [f"w{i}" for i in range(V)]
    path = save_pretrained_lm(tmp_path / "q_lm", m, itos, LM_CFG, dtype=torch.int8)
    raw = load_file(str(path))
    assert raw["0.encoder.weight"].dtype == torch.int8 and raw["1.decoder.bias"].dtype == torch.float16
    got = load_pretrained_lm(tmp_path / "q_lm")
    for k, v in m.state_dict().items():
        w = got.state[k]
        assert w.dtype == torch.float32 and w.shape == v.shape
        if v.ndim == 2:
            bound = v.abs().amax(dim=1, keepdim=True) / 254 * 1.001 + 1e-7
            assert ((w - v).abs() <= bound).all(), k
    assert torch.equal(got.state["1.decoder.weight"], got.state["0.encoder.weight"])
    raw["__row_scale__.0.encoder.weight"] = raw["__row_scale__.0.encoder.weight"][:-1]  # damaged scales
    save_file(raw, str(path))
    with pytest.raises(ExportError, match="row scales"):
        load_pretrained_lm(tmp_path / "q_lm")
