"""What each application records in an export, and the inference DataBunch it rebuilds from that.

For every application, `describe(learn)` returns the manifest's `data` section (plain data: the
item settings, transforms, normalisation, processors, vocabulary ...), and `inference_data(...)`
builds an empty DataBunch from it that knows everything `predict` needs: empty train/valid label
lists of the right item and label types, so `Learner.predict` takes its usual path
(`data.one_item` -> `single_ds.encode_x` -> the batch steps) with no training data at all.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from deftly.core.errors import ConfigError, DataError, ExportError
from deftly.data.block import ItemLists, LabelList
from deftly.data.databunch import DataBunch, DeviceDataLoader
from deftly.export.manifest import jsonable, label_list

__all__ = ["application_of", "describe", "inference_data"]


def application_of(data: Any) -> str:
    """Which application a learner's data belongs to ('vision', 'tabular', 'collab', 'text')."""
    from deftly.collab.data import CollabDataBunch
    from deftly.tabular.data import TabularDataBunch
    from deftly.text.data import TextDataBunch
    from deftly.vision.data import ImageDataBunch

    for cls, name in ((ImageDataBunch, "vision"), (TabularDataBunch, "tabular"), (CollabDataBunch, "collab"),
                      (TextDataBunch, "text")):
        if isinstance(data, cls):
            return name
    raise ExportError(f"cannot export a learner whose data is a {type(data).__name__}: export needs data from an "
                      "application's factories or data block API (ImageDataBunch, TabularDataBunch, "
                      "CollabDataBunch, TextDataBunch), which know how to prepare one item for predict")


def describe(application: str, data: Any) -> dict[str, Any]:
    """The manifest's `data` section for `data`."""
    return {"vision": _describe_vision, "tabular": _describe_tabular, "collab": _describe_collab,
            "text": _describe_text}[application](data)


def inference_data(application: str, section: dict[str, Any], labels: dict[str, Any], path: Path,
                   device: torch.device) -> DataBunch:
    """The empty DataBunch `predict` works with, rebuilt from the manifest."""
    build = {"vision": _vision_data, "tabular": _tabular_data, "collab": _collab_data, "text": _text_data}[application]
    try:
        return build(section, labels, path, device)
    except (ConfigError, DataError, KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise ExportError(f"the manifest's {application} data settings cannot be used ({type(e).__name__}: {e}); "
                          "the export is damaged or was edited") from e


def _empty_loader(ll: Any) -> DeviceDataLoader:
    """A loader over nothing whose `dataset` is the label list `ll` (what a DataBunch asks about)."""
    return DeviceDataLoader(DataLoader(ll.loader_view() if hasattr(ll, "loader_view") else ll, batch_size=1),
                            None, [], dataset=ll)


def _single_ds(data: Any) -> LabelList:
    ll = getattr(data, "single_ds", None)
    if ll is None:
        raise ExportError("cannot export: the data does not say how one item is prepared (build it with the data "
                          "block API or an application's factory)")
    return ll


# ------------------------------------------------------------------------------------------ vision


def _describe_vision(data: Any) -> dict[str, Any]:
    from deftly.vision.data import ImageList, NormalizeBatch

    ll = _single_ds(data)
    if type(ll.x) is not ImageList:
        raise ExportError(f"cannot export inputs of type {type(ll.x).__name__}: deftly exports image "
                          "classification (ImageList inputs)")
    if ll.x.after_open is not None:
        raise ExportError("cannot export an ImageList with after_open=: a function is code, not data; apply it "
                          "before predict instead")
    settings = dict(ll.tfm_args)
    settings.pop("train", None)
    tfms = settings.pop("tfms", None) or []
    dl = data.valid_dl if data.valid_dl is not None else data.train_dl
    normalize = None
    for tfm in [t for t in dl.tfms if t not in dl.dataset.batch_tfms]:
        if isinstance(tfm, NormalizeBatch) and tfm.norm is data.norm:
            normalize = {**tfm.norm.to_dict(), "do_x": bool(tfm.do_x)}
        else:
            raise ExportError(f"cannot export the batch transform {tfm!r} (dl_tfms): only data.normalize(...) is "
                              "data an export can hold")
    return {"item": {"convert_mode": ll.x.convert_mode},
            "transforms": {"tfms": [t.to_dict() for t in tfms], **jsonable(settings, "the image transform settings")},
            "normalize": normalize}


def _vision_data(section: dict[str, Any], labels: dict[str, Any], path: Path, device: torch.device) -> DataBunch:
    from deftly.vision.data import ImageList
    from deftly.vision.transform import RandTransform

    label_cls, label_kwargs = label_list(labels, path)
    settings = dict(section["transforms"])
    tfms = [RandTransform.from_dict(d) for d in settings.pop("tfms")]
    if isinstance(settings.get("size"), list):
        settings["size"] = tuple(settings["size"])
    src = ImageList([], path=path, convert_mode=section["item"]["convert_mode"]).split_none()
    lls = src.label_const(0, label_cls=label_cls, **label_kwargs).transform((None, tfms), **settings)
    data = lls.databunch(bs=1, num_workers=0, device=device)
    norm = section.get("normalize")
    if norm is not None:
        data.normalize((norm["mean"], norm["std"]), do_x=bool(norm.get("do_x", True)))
    return data


# ----------------------------------------------------------------------------------------- tabular


def _describe_tabular(data: Any) -> dict[str, Any]:
    return {"processor": jsonable(data.processor.state(), "the tabular processor state")}


def _tabular_data(section: dict[str, Any], labels: dict[str, Any], path: Path, device: torch.device) -> DataBunch:
    import pandas as pd

    from deftly.tabular.data import TabularDataBunch, TabularLabelList, TabularList
    from deftly.tabular.processor import TabularProcessor

    processor = TabularProcessor.from_state(section["processor"])
    label_cls, label_kwargs = label_list(labels, path)

    def empty() -> TabularLabelList:
        x = TabularList([], cat_names=processor.input_cat_names, cont_names=processor.input_cont_names, path=path,
                        inner_df=pd.DataFrame())
        arrays = (np.zeros((0, len(processor.cat_names)), np.int64), np.zeros((0, len(processor.cont_names)), np.float32))
        return TabularLabelList(x.processed(processor, arrays), label_cls([], path=path, **label_kwargs))

    ll = empty()
    data = TabularDataBunch(_empty_loader(ll), None, device=device, path=path)
    data.single_ds = ll
    return data


# ------------------------------------------------------------------------------------------ collab


def _describe_collab(data: Any) -> dict[str, Any]:
    names = list(data.names)
    return {"names": jsonable(names, "the collab column names"),
            "classes": [jsonable(list(data.classes[n]), f"the ids of column {n!r}") for n in names[:2]]}


def _collab_data(section: dict[str, Any], labels: dict[str, Any], path: Path, device: torch.device) -> DataBunch:
    from deftly.collab.data import CollabDataBunch

    names = list(section["names"])
    users, items = section["classes"]
    return CollabDataBunch.single_from_classes({names[0]: users, names[1]: items}, names, path=path, device=device)


# -------------------------------------------------------------------------------------------- text

_TEXT_SETTINGS = ("pad_idx", "sep", "mark_fields", "include_bos", "include_eos")
_RULES = ("fix_html", "replace_rep", "replace_wrep", "spec_add_spaces", "rm_useless_spaces", "replace_all_caps",
          "deal_caps")
_TOKENIZERS = ("WordTokenizer", "SpacyTokenizer")


def _named(fn: Any, allowed: tuple[str, ...], what: str) -> str:
    from deftly.text import transform

    name = getattr(fn, "__name__", None)
    if name in allowed and getattr(transform, name) is fn:
        return name
    raise ExportError(f"cannot export the {what} {fn!r}: an export names its tokenizer's parts, and only deftly's "
                      f"own can be named ({', '.join(allowed)})")


def _resolve(name: Any, allowed: tuple[str, ...], what: str) -> Any:
    from deftly.text import transform

    if name not in allowed:
        raise ExportError(f"unknown {what} {name!r} in the manifest; known: {', '.join(allowed)}")
    return getattr(transform, name)


def _describe_text(data: Any) -> dict[str, Any]:
    x = data.train_ds.x
    tok = x.tokenizer
    return {"vocab": list(data.vocab.itos),
            "text": jsonable({k: getattr(x, k) for k in _TEXT_SETTINGS}, "the text settings"),
            "tokenizer": {"tok_func": _named(tok.tok_func, _TOKENIZERS, "tokenizer"),
                          "lang": jsonable(tok.lang, "the tokenizer's language"),
                          "pre_rules": [_named(r, _RULES, "pre-tokenization rule") for r in tok.pre_rules],
                          "post_rules": [_named(r, _RULES, "post-tokenization rule") for r in tok.post_rules],
                          "special_cases": jsonable(list(tok.special_cases), "the special tokens")},
            "loader": jsonable({"bptt": getattr(data, "bptt", 70), "pad_idx": getattr(data, "pad_idx", 1),
                                "backwards": getattr(data, "backwards", False)}, "the text loader settings")}


def _text_data(section: dict[str, Any], labels: dict[str, Any], path: Path, device: torch.device) -> DataBunch:
    from deftly.text.data import TextList
    from deftly.text.transform import Tokenizer, Vocab

    t = section["tokenizer"]
    tokenizer = Tokenizer(tok_func=_resolve(t["tok_func"], _TOKENIZERS, "tokenizer"), lang=t["lang"],
                          pre_rules=[_resolve(r, _RULES, "rule") for r in t["pre_rules"]],
                          post_rules=[_resolve(r, _RULES, "rule") for r in t["post_rules"]],
                          special_cases=list(t["special_cases"]))
    vocab = Vocab.from_json({"itos": section["vocab"]})
    settings = {k: section["text"][k] for k in _TEXT_SETTINGS}

    def empty() -> TextList:
        return TextList([], vocab=vocab, tokenizer=tokenizer, path=path, **settings)

    src = ItemLists(path, empty(), empty())
    if labels.get("kind") == "lm":
        lls = src.label_for_lm()
    else:
        label_cls, label_kwargs = label_list(labels, path)
        lls = src.label_const(0, label_cls=label_cls, **label_kwargs)
    loader = section["loader"]
    return lls.databunch(bs=1, num_workers=0, device=device, bptt=int(loader["bptt"]), pad_idx=int(loader["pad_idx"]),
                         backwards=bool(loader["backwards"]))
