"""deftly.text.data on the bundled real reviews (imdb_sample): the course's factories and data block
chains, the language-model stream loader, the padded sort-ish classifier loader, npz save/load and
from_folder with bad files."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from deftly.data.block import ItemLists
from deftly.data.databunch import DatasetType
from deftly.text.data import (
    LanguageModelStream, SortishSampler, SortSampler, TextClasDataBunch, TextDataBunch, TextList, TextLMDataBunch,
    load_data, pad_collate,
)
from deftly.text.transform import BOS, PAD

torch.set_num_threads(1)




@pytest.fixture(scope="module")
def df(imdb) -> pd.DataFrame:
    return pd.read_csv(imdb / "texts.csv")


@pytest.fixture(scope="module")
def data_lm(imdb) -> TextLMDataBunch:
    return (TextList.from_csv(imdb, "texts.csv", cols="text")
            .split_by_rand_pct(0.1, seed=1)
            .label_for_lm()
            .databunch(bs=8, bptt=30))


@pytest.fixture(scope="module")
def data_clas(imdb) -> TextClasDataBunch:
    return (TextList.from_csv(imdb, "texts.csv", cols="text")
            .split_from_df(col=2)
            .label_from_df(cols=0)
            .databunch(bs=16))


def _real_len(row: torch.Tensor, pad_idx: int = 1) -> int:
    return int((row != pad_idx).sum())


# ------------------------------------------------------------------------------- factories


def test_from_csv_splits_like_v1(imdb, df):
    data = TextDataBunch.from_csv(imdb, "texts.csv", seed=0)
    n = len(df)
    assert len(data.valid_ds) == int(0.2 * n) + 1 == 201  # v1: cut = int(valid_pct * n) + 1
    assert len(data.train_ds) == n - 201
    assert isinstance(data, TextClasDataBunch) and data.classes == ["negative", "positive"]
    # the split is random over the rows, not the CSV's is_valid column
    valid_texts = {" ".join(data.valid_ds.x.items[i].split()) for i in range(len(data.valid_ds))}
    flagged = {" ".join(t.split()) for t in df.loc[df.is_valid, "text"]}
    assert len(valid_texts & flagged) < 100  # a random 20% shares about 40 of the 200 flagged rows
    assert data.vocab.itos[:2] == ["xxunk", "xxpad"] and len(data.vocab.itos) % 8 == 0


def test_from_csv_seed_makes_the_split_reproducible(imdb):
    a = TextDataBunch.from_csv(imdb, "texts.csv", seed=3)
    b = TextDataBunch.from_csv(imdb, "texts.csv", seed=3)
    c = TextDataBunch.from_csv(imdb, "texts.csv", seed=4)
    assert list(a.valid_ds.x.items) == list(b.valid_ds.x.items)
    assert list(a.valid_ds.x.items) != list(c.valid_ds.x.items)


def test_lm_factory_from_csv(imdb):
    data = TextLMDataBunch.from_csv(imdb, "texts.csv", seed=0, bs=8, bptt=20)
    assert isinstance(data, TextLMDataBunch)
    x, y = data.one_batch()
    assert x.shape[0] == 8 and torch.equal(x[:, 1:], y[:, :-1])


def test_data_block_split_from_df_label_from_df(data_clas, df):
    assert isinstance(data_clas, TextClasDataBunch)
    assert len(data_clas.valid_ds) == int(df.is_valid.sum()) and len(data_clas.train_ds) == int((~df.is_valid).sum())
    assert data_clas.classes == ["negative", "positive"] and data_clas.c == 2
    # each item keeps its own label
    valid = df[df.is_valid].reset_index(drop=True)
    for i in (0, 7, 150):
        assert data_clas.valid_ds.x.items[i] == valid.text[i]
        assert str(data_clas.valid_ds.y.get(i)) == valid.label[i]
    text = data_clas.valid_ds[0][0]
    assert text.text.startswith(f"{BOS} ") and text.data[0] == data_clas.vocab.stoi[BOS]


def test_data_block_split_by_rand_pct_label_for_lm(data_lm, df):
    assert isinstance(data_lm, TextLMDataBunch)
    assert len(data_lm.valid_ds) == int(0.1 * len(df)) and len(data_lm.train_ds) == len(df) - len(data_lm.valid_ds)
    assert data_lm.bptt == 30
    assert data_lm.train_ds.x[0].text.startswith(BOS)


def test_itemlists_of_two_textlists_label_for_lm(imdb, df):
    """F3:12055-12110 with reviews instead of human numbers: one training and one validation document."""
    train_txt = [" ".join(df.text[~df.is_valid])]
    valid_txt = [" ".join(df.text[df.is_valid])]
    train = TextList(train_txt, path=imdb)
    valid = TextList(valid_txt, path=imdb)
    src = ItemLists(path=imdb, train=train, valid=valid).label_for_lm()
    data = src.databunch(bs=64)
    assert isinstance(data, TextLMDataBunch)
    assert train[0].text.startswith("xxbos ")  # F3:12063, the list itself is numericalized
    n_valid = len(data.valid_ds[0][0].data)
    assert n_valid > 5000
    assert data.bptt == 70
    # F3:12096-12110: the validation stream is cut into 64 rows, each read in pieces of bptt=70
    assert len(data.valid_dl) == math.ceil(((n_valid - 1) // 64) / 70)
    assert len(data.valid_dl) == len(list(data.valid_dl))
    assert len(data.valid_dl) in (math.floor(n_valid / 70 / 64), math.ceil(n_valid / 70 / 64))


def test_non_string_text_is_a_data_error_naming_the_index(imdb):
    from deftly.core.errors import DataError

    with pytest.raises(DataError, match="text 1"):
        ItemLists(imdb, TextList(["good dress", 3.5j], path=imdb), TextList(["ok"], path=imdb)).label_for_lm() \
            .databunch(bs=2)


# ------------------------------------------------------------------------- LM loader


def _epoch(dl):
    return [(x.clone(), y.clone()) for x, y in dl]


def test_lm_batches_are_continuous_streams(data_lm):
    ds = data_lm.train_dl.dl.dataset
    assert isinstance(ds, LanguageModelStream) and ds.rows == 8
    batches = _epoch(data_lm.train_dl)
    assert len(batches) == len(data_lm.train_dl)
    for x, y in batches:
        assert x.shape == y.shape and x.shape[0] == 8 and x.dtype == torch.long
        assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
    for (x0, y0), (x1, _) in zip(batches, batches[1:]):
        assert torch.equal(x1[:, 0], y0[:, -1])  # batch k+1 continues batch k in every row
    rows = torch.cat([x for x, _ in batches], 1)
    assert rows.shape[1] == ds.row_len  # the random lengths add up to the row length
    lengths = [x.shape[1] for x, _ in batches]
    assert len(set(lengths)) > 3 and abs(np.mean(lengths) - 30) < 3  # random, around bptt
    # the rows are consecutive pieces of one stream: row r ends where row r+1 begins
    y_rows = torch.cat([y for _, y in batches], 1)
    assert torch.equal(y_rows[:-1, -1], rows[1:, 0])
    # the stream is the documents, each starting with xxbos
    bos = data_lm.vocab.stoi[BOS]
    assert int((rows == bos).sum()) >= len(data_lm.train_ds) - 8


def test_lm_valid_loader_length_and_fixed_order(data_lm):
    ds = data_lm.valid_dl.dl.dataset
    n_tokens = sum(len(a) for a in data_lm.valid_ds.x.ids)
    assert ds.n_tokens == n_tokens and ds.row_len == (n_tokens - 1) // 8
    assert len(data_lm.valid_dl) == math.ceil(ds.row_len / 30)
    first, second = _epoch(data_lm.valid_dl), _epoch(data_lm.valid_dl)
    assert [x.shape[1] for x, _ in first][:-1] == [30] * (len(first) - 1)  # validation: exactly bptt
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, second))


def test_lm_train_order_changes_between_epochs(data_lm):
    np.random.seed(0)
    first, second = _epoch(data_lm.train_dl), _epoch(data_lm.train_dl)
    a, b = torch.cat([x for x, _ in first], 1), torch.cat([x for x, _ in second], 1)
    assert a.shape == b.shape and not torch.equal(a, b)  # the documents are shuffled each epoch
    bos = data_lm.vocab.stoi[BOS]
    assert int(a[0, 0]) == bos and int(b[0, 0]) == bos  # each stream starts at a document


def test_language_model_stream_small_example():
    docs = [np.arange(10, 20), np.arange(20, 27), np.arange(30, 35)]  # 22 tokens
    stream = LanguageModelStream(docs, bs=3, bptt=4)
    assert stream.rows == 3 and stream.row_len == 7 and len(stream) == 2
    batches = list(stream)
    x = torch.cat([b[0] for b in batches], 1)
    flat = np.concatenate(docs)
    assert x.tolist() == [flat[0:7].tolist(), flat[7:14].tolist(), flat[14:21].tolist()]
    assert [b[0].shape[1] for b in batches] == [4, 3]
    np.random.seed(1)
    rnd = LanguageModelStream(docs, bs=3, bptt=4, random_len=True, shuffle=True)
    assert sum(b[0].shape[1] for b in rnd) == 7


# ------------------------------------------------------------------------- classifier loader


def test_classifier_batches_pad_first_with_xxpad(data_clas):
    pad = data_clas.vocab.stoi[PAD]
    bos = data_clas.vocab.stoi[BOS]
    assert pad == 1
    x, y = data_clas.one_batch(DatasetType.Train)
    assert x.shape[0] == 16 and y.shape == (16,)
    n_padded = 0
    for row in x:
        real = row != pad
        first = int(real.float().argmax())
        assert not real[:first].any() and real[first:].all()  # padding only at the start
        assert int(row[first]) == bos
        n_padded += first > 0
    assert n_padded > 0


def test_valid_batches_sorted_longest_first(data_clas):
    sampler = data_clas.valid_dl.dl.sampler
    assert isinstance(sampler, SortSampler)
    lengths = [_real_len(row) for x, _ in data_clas.valid_dl for row in x]
    assert len(lengths) == len(data_clas.valid_ds)
    assert lengths == sorted(lengths, reverse=True)
    assert lengths[0] == int(data_clas.valid_ds.x.lengths().max())


def test_sortish_sampler_is_a_permutation_with_little_padding(data_clas):
    lengths = data_clas.train_ds.x.lengths()
    sampler = data_clas.train_dl.dl.sampler
    assert isinstance(sampler, SortishSampler)
    np.random.seed(0)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths)))
    assert lengths[order[0]] == lengths.max()  # the longest batch comes first (v1)
    assert list(sampler) != order  # random

    def padding(idx):
        return sum(int(lengths[b].max() * len(b) - lengths[b].sum()) for b in np.array_split(idx, len(idx) // 16))

    assert padding(np.array(order)) < 0.5 * padding(np.random.permutation(len(lengths)))


def test_sortish_sampler_small():
    lengths = [5, 1, 9, 3, 7, 2, 8]
    np.random.seed(3)
    order = list(SortishSampler(lengths, bs=2))
    assert sorted(order) == list(range(7)) and order[0] == 2
    assert list(SortSampler(lengths)) == [2, 6, 4, 0, 3, 5, 1]


def test_pad_collate():
    samples = [(torch.tensor([2, 5, 6]), 0), (torch.tensor([2, 7]), 1)]
    x, y = pad_collate(samples, pad_idx=1)
    assert x.tolist() == [[2, 5, 6], [1, 2, 7]] and y.tolist() == [0, 1]
    x, _ = pad_collate(samples, pad_idx=1, pad_first=False)
    assert x.tolist() == [[2, 5, 6], [2, 7, 1]]


def test_vocab_passed_to_a_second_textlist_is_reused(imdb, data_lm):
    data = (TextList.from_csv(imdb, "texts.csv", cols="text", vocab=data_lm.vocab)
            .split_from_df(col=2).label_from_df(cols=0).databunch(bs=16))
    assert data.vocab.itos == data_lm.vocab.itos
    lm_ids = {}
    for ds in (data_lm.train_ds, data_lm.valid_ds):
        lm_ids.update({t: ids for t, ids in zip(ds.x.items, ds.x.ids)})
    for ds in (data.train_ds, data.valid_ds):
        for t, ids in zip(ds.x.items, ds.x.ids):
            assert np.array_equal(ids, lm_ids[t])
    # without it, the classifier's own vocabulary gives other ids
    own = (TextList.from_csv(imdb, "texts.csv", cols="text").split_from_df(col=2).label_from_df(cols=0)
           .databunch(bs=16))
    assert own.vocab.itos != data_lm.vocab.itos


# ------------------------------------------------------------------------- save / load


def test_save_load_classifier_npz_round_trip(imdb, data_clas):
    file = data_clas.save("tmp_clas_test")
    assert file == imdb / "tmp_clas_test" and file.is_file()
    with np.load(file, allow_pickle=False) as z:  # plain arrays, no pickle
        assert {"train_ids", "valid_ids", "train_lengths", "valid_lengths", "meta"} <= set(z.files)
    data = TextClasDataBunch.load(imdb, "tmp_clas_test", bs=16)
    assert isinstance(data, TextClasDataBunch)
    assert data.vocab == data_clas.vocab and data.classes == data_clas.classes
    for a, b in ((data.train_ds, data_clas.train_ds), (data.valid_ds, data_clas.valid_ds)):
        assert len(a) == len(b)
        assert all(np.array_equal(p, q) for p, q in zip(a.x.ids, b.x.ids))
        assert [str(a.y.get(i)) for i in range(len(a))] == [str(b.y.get(i)) for i in range(len(b))]
    xa, ya = data.one_batch(DatasetType.Valid)
    xb, yb = data_clas.one_batch(DatasetType.Valid)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert data.valid_ds[3][0].text == data_clas.valid_ds[3][0].text
    loaded = load_data(imdb, "tmp_clas_test", bs=8)
    assert isinstance(loaded, TextClasDataBunch) and loaded.train_dl.dl.batch_size == 8


def test_save_load_lm(imdb, data_lm):
    data_lm.save("tmp_lm_test")
    data = TextLMDataBunch.load(imdb, "tmp_lm_test", bs=8, bptt=30)
    assert isinstance(data, TextLMDataBunch) and data.vocab == data_lm.vocab
    assert all(np.array_equal(p, q) for p, q in zip(data.valid_ds.x.ids, data_lm.valid_ds.x.ids))
    assert [torch.equal(a[0], b[0]) for a, b in zip(data.valid_dl, data_lm.valid_dl)] == [True] * len(data_lm.valid_dl)
    assert isinstance(load_data(imdb, "tmp_lm_test"), TextLMDataBunch)


def test_load_rejects_missing_and_foreign_files(imdb, tmp_path):
    from deftly.core.errors import DataError

    with pytest.raises(DataError, match="no saved text data"):
        TextClasDataBunch.load(tmp_path, "nothing_here")
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    with pytest.raises(DataError, match="deftly"):
        TextClasDataBunch.load(tmp_path, "other.npz")


# ------------------------------------------------------------------------- from_folder


def _write_folder(root, df) -> None:
    pos = df.text[df.label == "positive"].tolist()
    neg = df.text[df.label == "negative"].tolist()
    for split, start, n in (("train", 0, 30), ("valid", 30, 10)):
        for name, texts in (("pos", pos), ("neg", neg)):
            d = root / split / name
            d.mkdir(parents=True)
            for i, t in enumerate(texts[start:start + n]):
                (d / f"{i}.txt").write_text(t, encoding="utf-8")
    (root / "train" / "pos" / "latin1.txt").write_bytes("Great dress, caf\xe9 colour, fits well".encode("latin-1"))
    (root / "train" / "neg" / "empty.txt").write_bytes(b"")
    (root / "unsup").mkdir()
    (root / "unsup" / "x.txt").write_text("not labelled")


def test_from_folder_with_a_non_utf8_and_an_empty_file(tmp_path, df):
    _write_folder(tmp_path, df)
    with pytest.warns(UserWarning, match=r"latin1\.txt.*UTF-8"):
        data = TextClasDataBunch.from_folder(tmp_path, bs=8, min_freq=1)
    assert data.classes == ["neg", "pos"]
    assert len(data.train_ds) == 62 and len(data.valid_ds) == 20  # unsup is not read
    items = [p.name for p in data.train_ds.x.items]
    i = items.index("latin1.txt")
    with pytest.warns(UserWarning, match="latin1.txt"):
        assert data.train_ds.x.text_of(i) == "Great dress, caf\ufffd colour, fits well"
    assert "dress" in data.train_ds[i][0].text and str(data.train_ds.y.get(i)) == "pos"
    e = items.index("empty.txt")
    assert data.train_ds[e][0].text == BOS and str(data.train_ds.y.get(e)) == "neg"
    batches = list(data.train_dl)  # the empty document batches like any other
    assert sum(len(x) for x, _ in batches) == (62 // 8) * 8
    with pytest.warns(UserWarning, match="latin1.txt"):
        lm = TextLMDataBunch.from_folder(tmp_path, bs=4, bptt=10)
    assert isinstance(lm, TextLMDataBunch) and len(lm.train_ds) == 62


def test_data_block_from_folder_with_filter_and_vocab(tmp_path, df, data_lm):
    _write_folder(tmp_path, df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = (TextList.from_folder(tmp_path, vocab=data_lm.vocab)
                .filter_by_folder(include=["train", "valid"])
                .split_by_folder(valid="valid")
                .label_from_folder(classes=["neg", "pos"])
                .databunch(bs=8))
    assert data.vocab is data_lm.vocab or data.vocab == data_lm.vocab
    assert len(data.train_ds) == 62 and len(data.valid_ds) == 20


# ------------------------------------------------------------------------- show_batch


def test_show_batch_prints_both_kinds(data_clas, data_lm, capsys):
    data_clas.show_batch(rows=3)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "text\ttarget" and len(out) == 4
    assert all(line.startswith(BOS) and line.split("\t")[1] in ("negative", "positive") for line in out[1:])
    data_lm.show_batch(rows=2, max_len=20)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "idx\ttext" and len(out) == 3
    assert out[1].startswith("0\t") and len(out[1].split("\t")[1].split(" ")) == 20
    df = data_clas.show_batch(rows=2, return_df=True)
    assert list(df.columns) == ["text", "target"] and len(df) == 2
    assert capsys.readouterr().out == ""
