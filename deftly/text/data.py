"""Text data: `TextList` for the data block API, the language-model and classifier loaders, and the
`TextDataBunch` family (`TextLMDataBunch`, `TextClasDataBunch`) with v1's factories.

    data_lm = (TextList.from_csv(path, 'texts.csv', cols='text')
               .split_by_rand_pct(0.1).label_for_lm().databunch(bs=64))
    data_clas = (TextList.from_csv(path, 'texts.csv', cols='text', vocab=data_lm.vocab)
                 .split_from_df(col=2).label_from_df(cols=0).databunch(bs=32))

Texts are tokenized and numericalized once, when the DataBunch is built (the training texts make
the vocabulary unless one is given). A language-model batch is a window of `bs` continuous token
streams; a classifier batch is documents of similar length padded with `xxpad` at the start.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, Sampler
from torch.utils.data._utils.collate import default_collate

from deftly.core.device import defaults
from deftly.core.errors import ConfigError, DataError
from deftly.data.block import ItemLists, LabelList, LabelLists, collate_skipping
from deftly.data.databunch import DataBunch, DatasetType, DeviceDataLoader
from deftly.data.items import CategoryList, EmptyLabelList, ItemList, MultiCategoryList, _index_array, read_csv
from deftly.text.transform import BOS, EOS, FLD, PAD, Tokenizer, Vocab

__all__ = ["LMLabelList", "LanguageModelStream", "SortSampler", "SortishSampler", "Text", "TextClasDataBunch",
           "TextDataBunch", "TextLMDataBunch", "TextList", "load_data", "pad_collate"]

#: text files TextList.from_folder reads
TEXT_EXTENSIONS = (".txt",)


class Text:
    """One numericalized text: `data` its token ids, `text` the tokens joined by spaces (v1's Text)."""

    def __init__(self, data: Tensor | np.ndarray, text: str):
        self.data, self.text = data, text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Text {self.text[:200]}{' ...' if len(self.text) > 200 else ''}"


def _read_text(fn: Path) -> str:
    """A text file as UTF-8; undecodable bytes become U+FFFD with a warning naming the file."""
    data = fn.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        warnings.warn(f"{fn}: not valid UTF-8 at byte {e.start}; undecodable bytes replaced by U+FFFD", stacklevel=3)
        return data.decode("utf-8", errors="replace")


class TextList(ItemList):
    """Texts (strings, or files for `from_folder`), tokenized by `tokenizer` and numericalized with
    `vocab` (made from the training texts when None: `max_vocab` most frequent tokens seen `min_freq`
    times). Each text starts with `xxbos` (`include_bos`); several text columns are joined with
    `xxfld n` markers (`mark_fields`). `il[i]` is a `Text`."""

    kind = "text"

    def __init__(self, items: Iterable[Any], vocab: Vocab | None = None, pad_idx: int = 1, sep: str = " ",
                 tokenizer: Tokenizer | None = None, max_vocab: int = 60000, min_freq: int = 2,
                 mark_fields: bool = False, include_bos: bool = True, include_eos: bool = False,
                 processor: Any = None, **kwargs: Any):
        super().__init__(items, **kwargs)
        if vocab is not None and not isinstance(vocab, Vocab):
            raise ConfigError(f"vocab must be a deftly Vocab (e.g. data_lm.vocab), got {type(vocab).__name__}")
        self.vocab, self.pad_idx, self.sep = vocab, pad_idx, sep
        self.tokenizer = tokenizer or Tokenizer()
        self.max_vocab, self.min_freq = max_vocab, min_freq
        self.mark_fields, self.include_bos, self.include_eos = mark_fields, include_bos, include_eos
        self._kwargs.update(vocab=vocab, pad_idx=pad_idx, sep=sep, tokenizer=self.tokenizer, max_vocab=max_vocab,
                            min_freq=min_freq, mark_fields=mark_fields, include_bos=include_bos,
                            include_eos=include_eos)
        self.ids: list[np.ndarray] | None = None

    @classmethod
    def from_folder(cls, path: str | os.PathLike = ".", extensions: Iterable[str] | None = TEXT_EXTENSIONS,
                    recurse: bool = True, include: Iterable[str] | None = None, **kwargs: Any) -> "TextList":
        """Every text file under `path` (only the first-level folders in `include`, if given)."""
        return super().from_folder(path, extensions=extensions, recurse=recurse, include=include, **kwargs)

    # --- processing: text -> tokens -> ids ----------------------------------------------------------
    @property
    def is_processed(self) -> bool:
        return self.ids is not None

    def text_of(self, i: int) -> str:
        """Item `i` as one string: a file's contents, or the columns joined (with `xxfld n` markers)."""
        o = self.items[i]
        if isinstance(o, Path):
            return _read_text(o)
        if isinstance(o, (list, tuple, np.ndarray)):
            parts = ["" if _missing(v) else str(v) for v in o]
            if self.mark_fields:
                return " ".join(f"{FLD} {k + 1} {p}" for k, p in enumerate(parts))
            return " ".join(parts)
        if _missing(o):
            return ""
        if not isinstance(o, str):  # e.g. a numeric column picked as the text: say so rather than guess
            raise DataError(f"a text must be a string, got {type(o).__name__} {o!r}; check cols= (convert a "
                            "column of numbers meant as text with df[col].astype(str))", where=f"text {i}")
        return f"{FLD} 1 {o}" if self.mark_fields else o

    def _wrap(self, tokens: list[str]) -> list[str]:
        return ([BOS] if self.include_bos else []) + tokens + ([EOS] if self.include_eos else [])

    def tokens(self) -> list[list[str]]:
        """Every text's tokens (tokenized in parallel for big lists)."""
        texts = [self.text_of(i) for i in range(len(self))]
        return [self._wrap(t) for t in self.tokenizer.process_all(texts)]

    def process(self, vocab: Vocab | None = None) -> "TextList":
        """Tokenize and numericalize every text, in place; the vocabulary is `vocab`, this list's
        own, or one made from these texts. Returns self."""
        if self.is_processed and (vocab is None or vocab == self.vocab):
            return self
        toks = self.tokens()
        self.vocab = vocab or self.vocab or Vocab.create(toks, max_vocab=self.max_vocab, min_freq=self.min_freq)
        self._kwargs["vocab"] = self.vocab
        self.ids = [self.vocab.numericalize(t) for t in toks]
        return self

    def _need_ids(self) -> list[np.ndarray]:
        if self.ids is None:
            raise ConfigError("this TextList is not tokenized yet: it is tokenized and numericalized when the "
                              "DataBunch is built (.databunch()), or call .process()")
        return self.ids

    # --- the list ------------------------------------------------------------------------------------
    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, (int, np.integer)):
            return super().__getitem__(idx)
        idxs = np.arange(len(self))[idx] if isinstance(idx, slice) else _index_array(idx, len(self), "indexing")
        out = self.new(self.items[idxs], inner_df=self._df_rows(idxs))
        if self.ids is not None:
            out.ids = [self.ids[i] for i in idxs]
        return out

    def raw(self, i: int) -> np.ndarray:
        return self._need_ids()[i]

    def encode(self, raw: Any) -> Tensor:
        return torch.as_tensor(raw, dtype=torch.long)

    def reconstruct(self, t: Tensor | np.ndarray) -> Text:
        if self.vocab is None:
            raise ConfigError("this TextList has no vocabulary yet (build the DataBunch first)")
        ids = t[t != self.pad_idx] if isinstance(t, Tensor) else np.asarray(t)[np.asarray(t) != self.pad_idx]
        return Text(t, self.vocab.textify(ids, self.sep))

    def from_object(self, obj: Any) -> np.ndarray:
        """A user's text (for `predict`) tokenized and numericalized like the training texts."""
        if isinstance(obj, Text):
            return np.asarray(obj.data)
        if not isinstance(obj, str):
            raise DataError(f"predict takes a text (str), got {type(obj).__name__}")
        if self.vocab is None:
            raise ConfigError("this TextList has no vocabulary yet (build the DataBunch first)")
        tok = self.tokenizer
        toks = self._wrap(tok.process_text(obj, tok._splitter()))
        return self.vocab.numericalize(toks)

    def describe(self, i: int) -> str:
        if self.ids is not None and self.vocab is not None:
            return self.vocab.textify(self.ids[i][:30], self.sep)
        return self.text_of(i)[:100]

    def lengths(self) -> np.ndarray:
        """Every text's number of tokens."""
        return np.fromiter((len(a) for a in self._need_ids()), dtype=np.int64, count=len(self))

    # --- showing --------------------------------------------------------------------------------------
    def show_xys(self, xs: Sequence[Text], ys: Sequence[Any], max_len: int = 70) -> pd.DataFrame:
        """A table of texts (their first `max_len` tokens) and labels."""
        rows = [{"text": " ".join(str(x).split(" ")[:max_len]), "target": str(y)} for x, y in zip(xs, ys)]
        return pd.DataFrame(rows)

    # --- labels --------------------------------------------------------------------------------------------
    def labels_from_df(self, cols: int | str | Sequence = 1) -> list[Any]:
        """The labels in column(s) `cols`; a missing label (NaN, None) is a DataError naming the
        column and the rows: a text to classify needs a class (drop or fill those rows first)."""
        labels = super().labels_from_df(cols)
        df = self.inner_df
        names = list(cols) if isinstance(cols, (list, tuple, np.ndarray, pd.Index)) else [cols]
        for c in names:
            name = df.columns[c] if isinstance(c, (int, np.integer)) and c not in df.columns else c
            rows = np.flatnonzero(df[name].isna().to_numpy())
            if len(rows):
                shown = "; ".join(f"{int(r)} ({str(self.items[int(r)])[:40]!r})" for r in rows[:5])
                raise DataError(f"label_from_df: the label column {name!r} is missing in {len(rows)} of {len(df)} "
                                f"rows of this split, rows {shown}{' ...' if len(rows) > 5 else ''}; drop or fill "
                                "those rows first", where=f"column {name!r}")
        return labels

    # --- labelling for a language model ------------------------------------------------------------------
    @property
    def lm_label_cls(self) -> type:
        return LMLabelList


def _missing(o: Any) -> bool:
    return o is None or (isinstance(o, float) and math.isnan(o))


class LMLabelList(EmptyLabelList):
    """The labels of a language model: none, each text is its own target (`label_for_lm`)."""

    kind = "lm"

    def describe(self, i: int) -> str:
        return "LM"


# --- language-model loader ------------------------------------------------------------------------------

class LanguageModelStream(IterableDataset):
    """Batches for a language model: every epoch the documents (shuffled when `shuffle`) are
    concatenated and cut into `bs` rows read left to right, so batch k+1 continues batch k row by
    row (the model carries its hidden state over). Each batch is `(x, y)` of shape (bs, seq_len),
    y = x shifted by one token; seq_len is `bptt` (random around it when `random_len`: `bptt`, or
    `bptt/2` one time in 20, plus normal noise of sd 5, at least 5)."""

    def __init__(self, ids: Sequence[np.ndarray], bs: int = 64, bptt: int = 70, shuffle: bool = False,
                 random_len: bool = False, backwards: bool = False):
        if bs < 1 or bptt < 1:
            raise ConfigError(f"bs and bptt must be positive, got bs={bs}, bptt={bptt}")
        self.ids, self.bs, self.bptt = list(ids), bs, bptt
        self.shuffle, self.random_len, self.backwards = shuffle, random_len, backwards
        self.n_tokens = int(sum(len(a) for a in self.ids))

    @property
    def rows(self) -> int:
        return max(1, min(self.bs, self.n_tokens - 1))

    @property
    def row_len(self) -> int:
        return max(0, (self.n_tokens - 1) // self.rows)

    def __len__(self) -> int:
        return math.ceil(self.row_len / self.bptt)

    def _lengths(self) -> list[int]:
        """The sequence length of each batch of one epoch; they add up to `row_len`."""
        n, total = len(self), self.row_len
        if not self.random_len or n <= 1:
            return [min(self.bptt, total - k * self.bptt) for k in range(n)]
        base = np.where(np.random.random(n) < 0.95, self.bptt, self.bptt / 2)
        lens = np.maximum(5, np.random.normal(base, 5)).astype(np.float64)
        lens = np.maximum(1, np.floor(lens * total / lens.sum())).astype(np.int64)
        lens[-1] += total - lens.sum()  # rounding remainder goes to the last batch
        while lens[-1] < 1:  # only with tiny streams: take tokens back from the longest batches
            k = int(np.argmax(lens[:-1]))
            lens[k] -= 1
            lens[-1] += 1
        return lens.tolist()

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.row_len == 0:
            return
        order = np.random.permutation(len(self.ids)) if self.shuffle else np.arange(len(self.ids))
        stream = np.concatenate([self.ids[i] for i in order]) if len(order) else np.zeros(0, np.int64)
        if self.backwards:
            stream = stream[::-1].copy()
        stream = torch.from_numpy(stream.astype(np.int64, copy=False))
        rows, row_len = self.rows, self.row_len
        x_all = stream[:rows * row_len].view(rows, row_len)
        y_all = stream[1:rows * row_len + 1].view(rows, row_len)
        start = 0
        for seq in self._lengths():
            yield x_all[:, start:start + seq], y_all[:, start:start + seq]
            start += seq


# --- classifier loader ----------------------------------------------------------------------------------

class SortSampler(Sampler):
    """Indexes sorted by decreasing length (validation: little padding, a fixed order)."""

    def __init__(self, lengths: Sequence[int]):
        self.lengths = np.asarray(lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(np.argsort(-self.lengths, kind="stable").tolist())


class SortishSampler(Sampler):
    """Random order, but batches of similar length (v1): shuffled indexes cut into chunks of 50
    batches, each chunk sorted by length; the batches are shuffled, the longest batch first."""

    def __init__(self, lengths: Sequence[int], bs: int):
        self.lengths, self.bs = np.asarray(lengths), bs

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        n, bs = len(self.lengths), self.bs
        idx = np.random.permutation(n)
        chunk = bs * 50
        sorted_chunks = [c[np.argsort(-self.lengths[c], kind="stable")] for c in np.split(idx, range(chunk, n, chunk))]
        idx = np.concatenate(sorted_chunks) if sorted_chunks else idx
        batches = [idx[i:i + bs] for i in range(0, n, bs)]
        if not batches:
            return iter([])
        longest = int(np.argmax([self.lengths[b[0]] for b in batches]))
        batches[0], batches[longest] = batches[longest], batches[0]
        rest = batches[1:]
        np.random.shuffle(rest)
        return iter(np.concatenate([batches[0], *rest]).tolist())


def pad_collate(samples: Sequence[tuple[Tensor, Any]], pad_idx: int = 1, pad_first: bool = True,
                backwards: bool = False) -> tuple[Tensor, Any]:
    """Documents padded with `pad_idx` to the longest one (at the start when `pad_first`, as v1's
    classifier), labels collated as usual."""
    samples = [s for s in samples if s is not None]
    if not samples:
        raise DataError("none of the texts of a batch could be read (see the warnings above)")
    max_len = max(len(s[0]) for s in samples)
    x = torch.full((len(samples), max_len), pad_idx, dtype=torch.long)
    for i, (ids, _) in enumerate(samples):
        n = len(ids)
        if n:
            seq = ids.flip(0) if backwards else ids
            if pad_first:
                x[i, max_len - n:] = seq
            else:
                x[i, :n] = seq
    return x, default_collate([s[1] for s in samples])


# --- DataBunches -----------------------------------------------------------------------------------------

def _process(lls: LabelLists) -> Vocab:
    """Tokenize and numericalize every split with the training split's vocabulary."""
    train = lls.train.x
    if not isinstance(train, TextList):
        raise ConfigError(f"a text DataBunch needs TextList inputs, got {type(train).__name__}")
    if len(train) == 0 and train.vocab is None:
        raise DataError("the training set is empty: there are no texts to build a vocabulary from")
    vocab = train.process().vocab
    for ll in (lls.valid, lls.test):
        if ll is None:
            continue
        if not isinstance(ll.x, TextList):
            raise ConfigError(f"the test/valid inputs must be a TextList too, got {type(ll.x).__name__}")
        if ll.x.is_processed and ll.x.vocab != vocab:
            ll.x.ids = None  # numericalized with another vocabulary: redo it with this one
        ll.x.process(vocab)
    return vocab


def _is_lm(lls: LabelLists) -> bool:
    return isinstance(lls.train.y, LMLabelList)


class TextDataBunch(DataBunch):
    """The DataBunch of texts; `from_label_lists` picks the language-model or classifier loaders from
    the labels (`label_for_lm` or not). `vocab` is the vocabulary of every split."""

    @classmethod
    def from_label_lists(cls, lls: Any, path: str | Path | None = None, bs: int = 64, val_bs: int | None = None,
                         num_workers: int | None = None, device: torch.device | str | None = None,
                         collate_fn: Callable | None = None, dl_tfms: Sequence[Callable] | None = None,
                         bptt: int = 70, pad_idx: int = 1, pad_first: bool = True, backwards: bool = False,
                         **kwargs: Any) -> "TextDataBunch":
        """Process the texts, then build language-model loaders (labels from `label_for_lm`) or
        classifier loaders (sort-ish batches of similar length, padded)."""
        if kwargs:
            raise ConfigError(f"unknown argument(s) {sorted(kwargs)} for a text DataBunch")
        if bs < 1:
            raise DataError(f"bs must be a positive batch size, got {bs}")
        _process(lls)
        device = torch.device(device) if device is not None else defaults.device
        on = None if device.type == "cpu" else device
        val_bs = val_bs or bs
        if _is_lm(lls):
            target = cls if issubclass(cls, TextLMDataBunch) else TextLMDataBunch

            def make(ll: LabelList | None, train: bool) -> DeviceDataLoader | None:
                if ll is None or (len(ll) == 0 and not train):
                    return None
                stream = LanguageModelStream(ll.x._need_ids(), bs if train else val_bs, bptt, shuffle=train,
                                             random_len=train, backwards=backwards)
                return DeviceDataLoader(DataLoader(stream, batch_size=None), on, list(dl_tfms or []), dataset=ll)
        else:
            target = TextClasDataBunch if cls in (TextDataBunch, TextLMDataBunch) else cls
            custom = collate_fn is not None and collate_fn is not collate_skipping  # the generic default
            collate = collate_fn if custom else (lambda b: pad_collate(b, pad_idx=pad_idx, pad_first=pad_first,
                                                            backwards=backwards))

            def make(ll: LabelList | None, train: bool) -> DeviceDataLoader | None:
                if ll is None or (len(ll) == 0 and not train):
                    return None
                lengths = ll.x.lengths()
                size = bs if train else val_bs
                sampler = SortishSampler(lengths, size) if train else SortSampler(lengths)
                dl = DataLoader(ll.loader_view(), size, sampler=sampler, collate_fn=collate,
                                drop_last=train and len(ll) > size, num_workers=0)
                return DeviceDataLoader(dl, on, list(dl_tfms or []), dataset=ll)

        bunch = target(make(lls.train, True), make(lls.valid, False), make(lls.test, False), device=device,
                       path=path if path is not None else lls.path)
        bunch.single_ds = lls.valid
        bunch.bptt, bunch.pad_idx, bunch.backwards = bptt, pad_idx, backwards
        bunch.label_lists = lls
        return bunch

    @property
    def vocab(self) -> Vocab:
        return self.train_ds.x.vocab

    def tta_dl(self, ds_type: DatasetType = DatasetType.Valid) -> DeviceDataLoader:
        raise DataError("text data has no test-time augmentation")

    def show_batch(self, rows: int = 5, ds_type: DatasetType = DatasetType.Train, max_len: int = 70,
                   return_df: bool = False) -> pd.DataFrame | None:
        """The first `rows` texts of one batch (their first `max_len` tokens) with their labels."""
        from deftly.train.progress import in_notebook

        x, y = self.one_batch(ds_type)
        ll = self.dl(ds_type).dataset
        n = min(rows, len(x))
        xs = [ll.x.reconstruct(t) for t in x[:n]]
        if isinstance(self, TextLMDataBunch):  # the rows of a stream batch, as v1 shows them
            df = pd.DataFrame({"idx": range(n), "text": [" ".join(str(t).split(" ")[:max_len]) for t in xs]})
        else:
            df = ll.x.show_xys(xs, [ll.y.reconstruct(t) for t in y[:n]], max_len=max_len)
        if return_df:
            return df
        if in_notebook():
            from IPython.display import display

            display(df)
        else:
            print("\t".join(df.columns))
            for row in df.itertuples(index=False):
                print("\t".join(str(v) for v in row))
        return None

    # --- saving the processed data (token ids as arrays, never a pickle) ---------------------------------
    def save(self, fname: str | os.PathLike = "data_save.pkl") -> Path:
        """Write the processed splits (token ids, labels, vocabulary) to `path/fname` as an .npz
        archive (the name is kept as given), so `load` skips tokenizing."""
        file = self.path / fname
        file.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {"format": "deftly-text-data", "version": 1, "vocab": self.vocab.itos,
                                "lm": _is_lm(self.label_lists), "splits": []}
        for name, ll in (("train", self.label_lists.train), ("valid", self.label_lists.valid),
                         ("test", self.label_lists.test)):
            if ll is None:
                continue
            ids = ll.x._need_ids()
            arrays[f"{name}_ids"] = np.concatenate(ids) if ids else np.zeros(0, np.int64)
            arrays[f"{name}_lengths"] = np.array([len(a) for a in ids], dtype=np.int64)
            y = ll.y
            meta["splits"].append(name)
            meta[f"{name}_labels"] = _labels_json(y)
        meta["classes"] = _jsonable(getattr(self.label_lists.train.y, "classes", None))
        meta["label_type"] = type(self.label_lists.train.y).__name__
        meta["settings"] = {k: getattr(self.label_lists.train.x, k) for k in
                            ("pad_idx", "sep", "mark_fields", "include_bos", "include_eos")}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        tmp = file.with_name(file.name + ".tmp")
        with open(tmp, "wb") as f:  # a file object: numpy must not add its own suffix
            np.savez(f, **arrays)
        os.replace(tmp, file)  # an interrupted save leaves the previous file intact
        return file

    @classmethod
    def load(cls, path: str | os.PathLike, fname: str | os.PathLike = "data_save.pkl", bs: int = 64,
             **kwargs: Any) -> "TextDataBunch":
        """A DataBunch from what `save` wrote (no tokenizing). `TextClasDataBunch.load` of data saved
        with labels gives classifier batches, `TextLMDataBunch.load` language-model batches."""
        path = Path(path)
        lls = _load_label_lists(path, path / fname, lm=issubclass(cls, TextLMDataBunch))
        return cls.from_label_lists(lls, path=path, bs=bs, **kwargs)

    # --- the course's factories ---------------------------------------------------------------------------
    @classmethod
    def from_df(cls, path: str | os.PathLike, train_df: pd.DataFrame, valid_df: pd.DataFrame,
                test_df: pd.DataFrame | None = None, tokenizer: Tokenizer | None = None, vocab: Vocab | None = None,
                classes: Sequence[Any] | None = None, text_cols: Any = 1, label_cols: Any = 0,
                label_delim: str | None = None, chunksize: int | None = None, max_vocab: int = 60000,
                min_freq: int = 2, mark_fields: bool = False, include_bos: bool = True, include_eos: bool = False,
                **kwargs: Any) -> "TextDataBunch":
        """Texts from column(s) `text_cols` of the frames, labels from `label_cols` (v1's factory)."""
        settings = dict(tokenizer=tokenizer, vocab=vocab, max_vocab=max_vocab, min_freq=min_freq,
                        mark_fields=mark_fields, include_bos=include_bos, include_eos=include_eos)
        src = ItemLists(path, TextList.from_df(train_df, path, cols=text_cols, **settings),
                        TextList.from_df(valid_df, path, cols=text_cols, **settings))
        if issubclass(cls, TextLMDataBunch):
            lls = src.label_for_lm()
        else:
            lls = src.label_from_df(cols=label_cols, classes=classes, label_delim=label_delim)
        if test_df is not None:
            lls.add_test(TextList.from_df(test_df, path, cols=text_cols, **settings))
        return lls.databunch(**kwargs)

    @classmethod
    def from_csv(cls, path: str | os.PathLike, csv_name: str, valid_pct: float = 0.2, test: str | None = None,
                 tokenizer: Tokenizer | None = None, vocab: Vocab | None = None, classes: Sequence[Any] | None = None,
                 delimiter: str | None = None, header: Any = "infer", text_cols: Any = 1, label_cols: Any = 0,
                 label_delim: str | None = None, chunksize: int | None = None, max_vocab: int = 60000,
                 min_freq: int = 2, mark_fields: bool = False, include_bos: bool = True, include_eos: bool = False,
                 seed: int | None = None, **kwargs: Any) -> "TextDataBunch":
        """Texts and labels from `path/csv_name`, a random `valid_pct` of the rows for validation
        (as v1: the CSV's own is_valid column is not used; use the data block API for that)."""
        path = Path(path)
        df = read_csv(path / csv_name, delimiter=delimiter, header=header)
        rng = np.random.default_rng(seed) if seed is not None else np.random
        df = df.iloc[rng.permutation(len(df))]
        cut = int(valid_pct * len(df)) + 1
        train_df, valid_df = df[cut:], df[:cut]
        test_df = None if test is None else read_csv(path / test, delimiter=delimiter, header=header)
        return cls.from_df(path, train_df, valid_df, test_df, tokenizer=tokenizer, vocab=vocab, classes=classes,
                           text_cols=text_cols, label_cols=label_cols, label_delim=label_delim,
                           max_vocab=max_vocab, min_freq=min_freq, mark_fields=mark_fields,
                           include_bos=include_bos, include_eos=include_eos, **kwargs)

    @classmethod
    def from_folder(cls, path: str | os.PathLike, train: str = "train", valid: str = "valid",
                    test: str | None = None, classes: Sequence[Any] | None = None, tokenizer: Tokenizer | None = None,
                    vocab: Vocab | None = None, max_vocab: int = 60000, min_freq: int = 2, mark_fields: bool = False,
                    include_bos: bool = True, include_eos: bool = False, **kwargs: Any) -> "TextDataBunch":
        """Text files in `path/train` and `path/valid`, labelled by their folder (`classes` keeps only
        those folders)."""
        path = Path(path)
        include = [train, valid] + ([test] if test else [])
        src = (TextList.from_folder(path, include=include, tokenizer=tokenizer, vocab=vocab, max_vocab=max_vocab,
                                    min_freq=min_freq, mark_fields=mark_fields, include_bos=include_bos,
                                    include_eos=include_eos)
               .split_by_folder(train=train, valid=valid))
        lls = src.label_for_lm() if issubclass(cls, TextLMDataBunch) else src.label_from_folder(classes=classes)
        if test is not None:
            lls.add_test_folder(test)
        return lls.databunch(**kwargs)


class TextLMDataBunch(TextDataBunch):
    """Language-model data: batches of continuous token streams (`bs`, `bptt`)."""


class TextClasDataBunch(TextDataBunch):
    """Classifier data: documents of similar length per batch, padded with `xxpad` at the start."""

    def stack_items(self, xs: Sequence[Any]) -> Tensor:
        """Documents of any lengths as one batch, padded with `xxpad` at the start (the classifier's
        encoder runs each document's own tokens from a zero state, so padding does not change them)."""
        pad_idx = getattr(self, "pad_idx", 1)
        backwards = getattr(self, "backwards", False)  # a backwards model reads each text reversed, as in training
        longest = max((len(x) for x in xs), default=0)
        out = torch.full((len(xs), longest), pad_idx, dtype=torch.long)
        for i, x in enumerate(xs):
            if len(x):
                x = torch.as_tensor(x)
                out[i, longest - len(x):] = x.flip(0) if backwards else x
        return out


TextList._bunch = TextDataBunch


def _jsonable(v: Any) -> Any:
    if v is None:
        return None
    return [x.item() if isinstance(x, np.generic) else x for x in v]


def _labels_json(y: ItemList) -> Any:
    if isinstance(y, (LMLabelList, EmptyLabelList)):
        return None
    items = [list(o) if isinstance(o, (list, tuple, np.ndarray)) else o for o in y.items]
    return [[_plain(v) for v in o] if isinstance(o, list) else _plain(o) for o in items]


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _load_label_lists(path: Path, file: Path, lm: bool) -> LabelLists:
    if not file.is_file():
        raise DataError("no saved text data here (TextDataBunch.save writes it)", where=str(file))
    try:
        z = np.load(file, allow_pickle=False)
        meta = json.loads(bytes(z["meta"]).decode())
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as e:
        raise DataError(f"not text data saved by deftly ({e})", where=str(file)) from e
    if meta.get("format") != "deftly-text-data":
        raise DataError("not text data saved by deftly", where=str(file))
    if meta.get("version", 0) > 1:
        raise DataError(f"saved by a newer deftly (format version {meta['version']})", where=str(file))
    vocab = Vocab.from_json({"itos": meta["vocab"]})
    settings = meta.get("settings", {})
    lists: dict[str, LabelList] = {}
    for name in meta["splits"]:
        flat, lengths = z[f"{name}_ids"], z[f"{name}_lengths"]
        ids = np.split(flat.astype(np.int64), np.cumsum(lengths)[:-1]) if len(lengths) else []
        x = TextList([""] * len(ids), vocab=vocab, path=path, **settings)
        x.ids = list(ids)
        labels = meta.get(f"{name}_labels")
        if lm or labels is None:
            y: ItemList = (LMLabelList if lm or name != "test" else EmptyLabelList)([0] * len(ids), path=path)
        elif meta.get("label_type") == "MultiCategoryList":
            y = MultiCategoryList(labels, classes=meta.get("classes"), path=path)
        else:
            y = CategoryList(labels, classes=meta.get("classes"), path=path)
        lists[name] = LabelList(x, y)
    if "train" not in lists or "valid" not in lists:
        raise DataError("saved text data without a train and a valid split", where=str(file))
    return LabelLists(path, lists["train"], lists["valid"], lists.get("test"))


def load_data(path: str | os.PathLike, fname: str | os.PathLike = "data_save.pkl", bs: int = 64,
              **kwargs: Any) -> TextDataBunch:
    """The DataBunch `save` wrote, as a language-model or classifier bunch as it was saved (v1's load_data)."""
    path = Path(path)
    file = path / fname
    try:
        meta = json.loads(bytes(np.load(file, allow_pickle=False)["meta"]).decode())
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as e:
        raise DataError(f"not data saved by deftly ({e})", where=str(file)) from e
    cls = TextLMDataBunch if meta.get("lm") else TextClasDataBunch
    return cls.load(path, fname, bs=bs, **kwargs)
