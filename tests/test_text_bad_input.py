"""Bad input for deftly.text: each case is handled (and the handling pinned here) or a clear error.

    empty documents        tokenize to just xxbos; a classifier batch holding one works; predict('') works
    non-UTF-8 bytes        TextList.from_folder warns naming the file; the bytes become U+FFFD
    a huge document        2 million characters tokenize in linear time; the classifier keeps max_len tokens
    a NaN label            label_from_df: DataError naming the column and the rows
    vocabulary mismatch    load_encoder: DataError (LM and classifier built on different vocabularies)
    unknown words          numericalize to xxunk; classifier predict still works
    texts not strings      DataError naming the row (numbers are not silently turned into text)
    missing text column    TextList.from_csv / from_df: DataError listing the table's columns
    odd characters         the fast paths of the rules and the splitter give what the rules one by one give
"""
from __future__ import annotations

import random
import re
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from deftly.core.errors import DataError
from deftly.datasets import URLs, untar_data
from deftly.text import transform as T
from deftly.text.data import TextClasDataBunch, TextList, TextLMDataBunch
from deftly.text.learner import language_model_learner, text_classifier_learner
from deftly.text.models import AWD_LSTM, MultiBatchEncoder, awd_lstm_clas_config, awd_lstm_lm_config
from deftly.text.transform import BOS, UNK, Tokenizer, Vocab

torch.set_num_threads(1)

LM_CFG = dict(awd_lstm_lm_config, emb_sz=16, n_hid=24, n_layers=2)
CLAS_CFG = dict(awd_lstm_clas_config, emb_sz=16, n_hid=24, n_layers=2)


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    """90 training and 30 validation rows of the bundled IMDB_SAMPLE-shaped clothing reviews
    (label, text, is_valid)."""
    df = pd.read_csv(untar_data(URLs.IMDB_SAMPLE, show_progress=False) / "texts.csv")
    return pd.concat([df[~df["is_valid"]].head(90), df[df["is_valid"]].head(30)]).reset_index(drop=True)


def _clas_data(df: pd.DataFrame, vocab: Vocab | None = None, bs: int = 8) -> TextClasDataBunch:
    return (TextList.from_df(df, cols="text", vocab=vocab).split_from_df("is_valid")
            .label_from_df("label").databunch(bs=bs))


# ---------------------------------------------------------------------------------- empty documents


def test_empty_documents_tokenize_to_just_bos(reviews):
    assert Tokenizer(n_cpus=1).process_all(["", "   ", "\n\t"]) == [[], [], []]
    df = reviews.copy()
    df.loc[[0, 3], "text"] = ""
    df.loc[5, "text"] = np.nan  # a missing text is an empty one
    il = TextList.from_df(df, cols="text").process()
    for i in (0, 3, 5):
        assert il.vocab.textify(il.ids[i], sep=None) == [BOS]
    assert len(il.ids[1]) > 1


def test_classifier_batch_with_an_empty_document_works(reviews):
    df = reviews.copy()
    train = np.flatnonzero(~df["is_valid"].to_numpy(dtype=bool))
    df.loc[train[:3], "text"] = ""
    valid = np.flatnonzero(df["is_valid"].to_numpy(dtype=bool))
    df.loc[valid[:2], "text"] = ""
    data = _clas_data(df)
    learn = text_classifier_learner(data, AWD_LSTM, config=CLAS_CFG, pretrained=False, progress=False)
    preds, targets = learn.get_preds()  # every validation batch, the empty documents in one of them
    assert preds.shape == (len(data.valid_ds), data.c) and torch.isfinite(preds).all()
    x, _ = data.one_batch()
    lengths = (x != data.pad_idx).sum(1)
    xs = x.clone()
    xs[0] = data.pad_idx
    xs[0, -1] = data.vocab.stoi[BOS]  # a document of one token among longer ones
    out = learn.model.eval()(xs)[0]
    assert torch.isfinite(out).all() and lengths.max() > 1
    category, idx, probs = learn.predict("")
    assert str(category) in [str(c) for c in data.classes] and abs(float(probs.sum()) - 1) < 1e-5


# ---------------------------------------------------------------------------------- non-UTF-8 bytes


def test_non_utf8_file_warns_with_its_name_and_bytes_are_replaced(tmp_path):
    for split, label in (("train", "pos"), ("train", "neg"), ("valid", "pos"), ("valid", "neg")):
        (tmp_path / split / label).mkdir(parents=True)
        (tmp_path / split / label / "ok.txt").write_text(f"A fine {label} text.", encoding="utf-8")
    bad = tmp_path / "train" / "pos" / "latin1.txt"
    bad.write_bytes("Caf\u00e9 cr\u00e8me, tr\u00e8s bien".encode("latin-1"))
    il = TextList.from_folder(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = il.split_by_folder().label_from_folder().databunch(bs=2)
    messages = [str(w.message) for w in caught]
    assert any("latin1.txt" in m and "UTF-8" in m for m in messages), messages
    i = [str(p) for p in data.train_ds.x.items].index(str(bad))
    with pytest.warns(UserWarning, match="latin1.txt"):  # warns each time the file is read
        text = data.train_ds.x.text_of(i)
    assert text == "Caf\ufffd cr\ufffdme, tr\ufffds bien"  # each undecodable byte is one U+FFFD
    assert "\ufffd" in data.vocab.textify(data.train_ds.x.ids[i], sep=None)
    assert all("latin1.txt" in m for m in messages if "UTF-8" in m)  # only the bad file warns


# ---------------------------------------------------------------------------------- a huge document


def test_huge_document_tokenizes_in_linear_time(reviews):
    unit = "It fits well, I'm 5 ft and it's great! " + str(reviews.loc[0, "text"]).replace("!", ".") + " End. "
    one = Tokenizer(n_cpus=1).process_all([unit])[0]
    k = 2_000_000 // len(unit) + 1
    huge = unit * k
    assert len(huge) >= 2_000_000
    t0 = time.perf_counter()
    toks = Tokenizer(n_cpus=1).process_all([huge])[0]
    seconds = time.perf_counter() - t0
    assert len(toks) == k * len(one)  # the same tokens, k times: nothing merged across copies
    assert toks[:len(one)] == one and toks[-len(one):] == one
    assert seconds < 60, f"{seconds:.1f} s for 2M characters: not linear"  # about 1 s when linear


@pytest.mark.parametrize("kind", ["no spaces", "one char", "repeated word"])
def test_adversarial_huge_documents_finish(kind):
    rnd = random.Random(0)
    if kind == "no spaces":  # one 2M-character "word" of letters and marks: the regex scans it once
        text = "".join(rnd.choice("ab'.,-!@/") for _ in range(2_000_000))
    elif kind == "one char":
        text = "o" * 2_000_000
    else:
        text = "so " * 700_000
    t0 = time.perf_counter()
    toks = Tokenizer(n_cpus=1).process_all([text])[0]
    assert time.perf_counter() - t0 < 60
    if kind == "one char":
        assert toks == [T.TK_REP, "2000000", "o"]
    elif kind == "repeated word":
        assert toks == [T.TK_WREP, "700000", "so"]
    else:
        assert len(toks) > 100_000


def test_classifier_encoder_keeps_only_max_len_tokens():
    torch.manual_seed(0)
    from deftly.text.models import get_text_classifier

    model = get_text_classifier(AWD_LSTM, 50, 2, bptt=7, max_len=20, config=CLAS_CFG).eval()
    enc = model[0]
    assert isinstance(enc, MultiBatchEncoder)
    long = torch.randint(2, 50, (2, 3000))
    long[1, :2990] = 1  # the second document is 10 tokens after its padding
    with torch.no_grad():
        raw, outs, mask = enc(long)
        assert raw[-1].shape[:2] == (2, 20) and mask.shape == (2, 20)
        assert mask[0].sum() == 0 and mask[1].sum() == 10  # 20 kept tokens, and 10 of the short one
        assert torch.isfinite(model(long)[0]).all()


# ------------------------------------------------------------------------------------ a NaN label


def test_nan_label_is_a_data_error_naming_column_and_rows(reviews):
    df = reviews.copy()
    train = np.flatnonzero(~df["is_valid"].to_numpy(dtype=bool))
    df.loc[train[[2, 7]], "label"] = np.nan
    src = TextList.from_df(df, cols="text").split_from_df("is_valid")
    with pytest.raises(DataError, match=r"label column 'label' is missing in 2 .*rows 2 .*7 ") as e:
        src.label_from_df("label")
    assert e.value.where == "column 'label'"
    with pytest.raises(DataError, match="label column 'label'"):  # by position too
        src.label_from_df(0)
    with pytest.raises(DataError, match="'label'"):  # and through the course's factory
        TextClasDataBunch.from_df(".", df[~df["is_valid"]], df[df["is_valid"]], text_cols="text", label_cols="label")
    clean = df.dropna(subset=["label"])
    assert len(TextList.from_df(clean, cols="text").split_from_df("is_valid").label_from_df("label").train) == \
        len(train) - 2


# -------------------------------------------------------------------------- vocabulary mismatch


def test_load_encoder_with_another_vocabulary_is_a_data_error(reviews, tmp_path):
    df = reviews.assign(text=reviews["text"].astype(str))
    data_lm = (TextList.from_df(df, tmp_path, cols="text").split_from_df("is_valid").label_for_lm()
               .databunch(bs=4, bptt=10))
    lm = language_model_learner(data_lm, AWD_LSTM, config=LM_CFG, pretrained=False, progress=False)
    lm.save_encoder("enc")
    same = (TextList.from_df(df, tmp_path, cols="text", vocab=data_lm.vocab).split_from_df("is_valid")
            .label_from_df("label").databunch(bs=8))
    learn = text_classifier_learner(same, AWD_LSTM, config=CLAS_CFG, pretrained=False, progress=False)
    learn.load_encoder("enc")  # the LM's vocabulary: fine
    other = (TextList.from_df(df.head(60), tmp_path, cols="text").split_from_df("is_valid")
             .label_from_df("label").databunch(bs=8))
    assert other.vocab != data_lm.vocab
    learn = text_classifier_learner(other, AWD_LSTM, config=CLAS_CFG, pretrained=False, progress=False)
    with pytest.raises(DataError, match="another vocabulary.*vocab=data_lm.vocab"):
        learn.load_encoder("enc")


# ---------------------------------------------------------------------------------- unknown words


def test_unknown_words_map_to_xxunk_and_predict_works(reviews):
    data = _clas_data(reviews)
    vocab = data.vocab
    text = "Zorblax quuxified the flibbertigibbet dress"
    assert all(w not in vocab.stoi for w in ("zorblax", "quuxified", "flibbertigibbet"))
    ids = data.train_ds.x.from_object(text)
    assert vocab.textify(ids, sep=None) == [BOS, "xxmaj", UNK, UNK, "the", UNK, "dress"]
    assert int((ids == vocab.stoi[UNK]).sum()) == 3
    learn = text_classifier_learner(data, AWD_LSTM, config=CLAS_CFG, pretrained=False, progress=False)
    category, idx, probs = learn.predict(text)
    assert probs.shape == (data.c,) and int(idx) == int(probs.argmax())
    assert str(category) == str(data.classes[int(idx)])


# ---------------------------------------------------------------------------------- not strings


def test_numbers_in_the_text_column_are_a_data_error_naming_the_row(reviews):
    df = reviews.copy()
    df["text"] = df["text"].astype(object)
    df.loc[4, "text"] = 12345
    with pytest.raises(DataError, match=r"a text must be a string, got int 12345.*astype\(str\)") as e:
        TextList.from_df(df, cols="text").process()
    assert e.value.where == "text 4"
    numbers = pd.DataFrame({"label": ["a", "b"] * 5, "n": range(10)})
    with pytest.raises(DataError, match="got int"):  # a numeric column picked as the text
        TextList.from_df(numbers, cols="n").process()
    converted = TextList.from_df(numbers.assign(n=numbers["n"].astype(str)), cols="n", min_freq=1).process()
    assert converted.vocab.textify(converted.ids[3], sep=None) == [BOS, "3"]
    with pytest.raises(DataError, match="texts must be strings.*text 1"):
        Tokenizer(n_cpus=1).process_all(["fine", 3.5])


# ---------------------------------------------------------------------------------- missing column


def test_from_csv_with_a_missing_text_column_lists_the_columns(tmp_path, reviews):
    reviews.to_csv(tmp_path / "texts.csv", index=False)
    with pytest.raises(DataError, match=r"no column 'review'.*\['label', 'text', 'is_valid'\]"):
        TextList.from_csv(tmp_path, "texts.csv", cols="review")
    with pytest.raises(DataError, match=r"column 7 does not exist.*3 columns"):
        TextList.from_csv(tmp_path, "texts.csv", cols=7)
    with pytest.raises(DataError, match="no column 'review'"):
        TextLMDataBunch.from_csv(tmp_path, "texts.csv", text_cols="review")


# ---------------------------------------------------------------------------------- odd characters


def _rules_one_by_one(t: str) -> list[str]:
    """v1's pipeline written out plainly: each rule's reference form, then the regex splitter."""
    for old, new in T._HTML_FIXES:
        t = t.replace(old, new)
    import html

    t = re.sub(" {2,}", " ", html.unescape(t))
    t = re.sub(r"(\S)(\1{3,})", lambda m: f" {T.TK_REP} {len(m.group(0))} {m.group(1)} ", t)
    t = re.sub(r"(\b\w+\W+)(\1{3,})", lambda m: f" {T.TK_WREP} {len(m.group(2).split()) + 1} {m.group(1)} ", t)
    t = re.sub(r"([/#])", r" \1 ", t)
    t = re.sub(" {2,}", " ", t)
    toks = [x for w in t.split() for x in ([w] if w.isalnum() else T._WORD_RE.findall(w))]
    return T.deal_caps(T.replace_all_caps(toks))


def test_fast_paths_give_what_the_rules_give_on_odd_text():
    rnd = random.Random(1)
    pieces = list("aAbZ .,!?;:)(\"'\u2019-_/#\\<>@&10\u00e9\u00c9\n") + [
        "n't", "Mr.", "mr.", "www.", "http://a.b/c", "U.S.", "amp;", "#39;", "<br />", "&amp;", "  ", "ha!", "the ",
        "no, ", "...", "\u0130", "\u01c5", "\u00b2", "\u0663", "3pm.", "10.", "IT'S", "Can't"]
    texts = ["".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 30))) for _ in range(4000)]
    texts += ["", "Mr.", "vs.", "Vs.", "www.", "3pm.", "10,", "\u0663\u0664.", "A.", "ha!ha!ha!ha!", "so so so so so",
              "Sooooo GOOD!!!!", "\u01c5x,", "caf\u00e9,", "Dress;", "fit:", "me)", 'it"']
    tok = Tokenizer(n_cpus=1)
    got = tok.process_all(texts)
    for t, g in zip(texts, got):
        assert g == _rules_one_by_one(t), t
    assert all(any(c in old for c in T._HTML_MARKS) for old, _ in T._HTML_FIXES)


def test_parallel_tokenizing_gives_the_same_tokens(reviews):
    texts = [str(t) for t in reviews["text"]] * 45 + ["", "a\x00b", "x"]  # > parallel_threshold
    assert len(texts) >= Tokenizer.parallel_threshold
    serial = Tokenizer(n_cpus=1).process_all(texts)
    assert Tokenizer(n_cpus=2).process_all(texts) == serial
    assert Tokenizer(n_cpus=3).process_all(texts) == serial
    assert serial[-2][-1] == "b" and serial[-3] == []
