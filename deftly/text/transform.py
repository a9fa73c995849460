"""Text to tokens to ids: v1's special tokens and rules, a fast English word splitter, `Tokenizer`
(parallel over processes for big corpora) and `Vocab` (numericalize / textify, saved as JSON).

    tok = Tokenizer()                       # WordTokenizer + v1's default pre and post rules
    tokens = tok.process_all(texts)         # ['xxmaj', 'this', 'movie', 'did', "n't", ...]
    vocab = Vocab.create(tokens, max_vocab=60000, min_freq=2)
    ids = vocab.numericalize(tokens[0]); vocab.textify(ids)
"""
from __future__ import annotations

import html
import json
import os
import re
from collections import Counter
from itertools import chain
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Sequence

import numpy as np

from deftly.core.errors import ConfigError, DataError

__all__ = ["BOS", "EOS", "FLD", "PAD", "TK_MAJ", "TK_REP", "TK_UP", "TK_WREP", "UNK", "BaseTokenizer",
           "SpacyTokenizer", "Tokenizer", "Vocab", "WordTokenizer", "deal_caps", "default_post_rules",
           "default_pre_rules", "default_spec_tok", "fix_html", "replace_all_caps", "replace_rep",
           "replace_wrep", "rm_useless_spaces", "spec_add_spaces"]

UNK, PAD, BOS, EOS, FLD = "xxunk", "xxpad", "xxbos", "xxeos", "xxfld"
TK_MAJ, TK_UP, TK_REP, TK_WREP = "xxmaj", "xxup", "xxrep", "xxwrep"
#: The special tokens, first in every vocabulary in this order (v1's `defaults.text_spec_tok`).
default_spec_tok = [UNK, PAD, BOS, EOS, FLD, TK_MAJ, TK_UP, TK_REP, TK_WREP]


# --- rules on the text, before splitting (v1's text_pre_rules) ---------------------------------

_HTML_FIXES = (("#39;", "'"), ("amp;", "&"), ("#146;", "'"), ("nbsp;", " "), ("#36;", "$"), ("\\n", "\n"),
               ("quot;", "'"), ("<br />", "\n"), ('\\"', '"'), ("<unk>", UNK), (" @.@ ", "."), (" @-@ ", "-"),
               (" @,@ ", ","), ("\\", " \\ "))
_MULTI_SPACE = re.compile(r" {2,}")
# possessive forms of v1's (\S)(\1{3,}) and (\b\w+\W+)(\1{3,}): the same matches, less backtracking
_CHAR_REP = re.compile(r"(\S)(?=\1\1\1)\1++")
_WORD_REP = re.compile(r"(?<!\w)(\w++\W++)\1\1\1+")  # (?<!\w) before \w is v1's \b, found faster
_SLASH_HASH = re.compile(r"([/#])")


#: every pattern of _HTML_FIXES holds one of these: a text with none of them needs no replacing
_HTML_MARKS = (";", "\\", "<", "@")


def fix_html(t: str) -> str:
    """Undo the HTML and WikiText escapes of scraped text (`#39;`, `<br />`, ` @-@ `, ...)."""
    if ";" in t or "\\" in t or "<" in t or "@" in t:  # most texts: none (four scans in C)
        for old, new in _HTML_FIXES:
            t = t.replace(old, new)
    t = html.unescape(t)  # returns at once when there is no '&'
    return _MULTI_SPACE.sub(" ", t) if "  " in t else t


def replace_rep(t: str) -> str:
    """A character repeated 4+ times becomes `xxrep n c` ('cooool' -> ' xxrep 4 o ')."""
    return _CHAR_REP.sub(lambda m: f" {TK_REP} {len(m.group(0))} {m.group(1)} ", t)


def replace_wrep(t: str) -> str:
    """A word repeated 4+ times becomes `xxwrep n word`."""
    return _WORD_REP.sub(_wrep_sub, t)


def _wrep_sub(m: re.Match) -> str:
    # v1 counts the whitespace-separated pieces of the repeats, plus one
    return f" {TK_WREP} {len(m.group(0)[len(m.group(1)):].split()) + 1} {m.group(1)} "


def spec_add_spaces(t: str) -> str:
    """Spaces around `/` and `#`, so they split from the words beside them."""
    return _SLASH_HASH.sub(r" \1 ", t) if "/" in t or "#" in t else t


def rm_useless_spaces(t: str) -> str:
    """Runs of spaces become one."""
    return _MULTI_SPACE.sub(" ", t) if "  " in t else t


# --- rules on the tokens, after splitting (v1's text_post_rules) -------------------------------

def replace_all_caps(tokens: Sequence[str]) -> list[str]:
    """A token in capitals (longer than one letter) becomes `xxup` + its lower case."""
    out: list[str] = []
    for t in tokens:
        if len(t) > 1 and t.isupper():
            out += (TK_UP, t.lower())
        else:
            out.append(t)
    return out


def deal_caps(tokens: Sequence[str]) -> list[str]:
    """A capitalised token ('Movie') becomes `xxmaj` + its lower case; every token is lowered."""
    out: list[str] = []
    for t in tokens:
        if not t:
            continue
        if len(t) > 1 and t[0].isupper() and t[1:].islower():
            out.append(TK_MAJ)
        out.append(t.lower())
    return out


def _default_caps(tokens: Sequence[str]) -> list[str]:
    """`deal_caps(replace_all_caps(tokens))` in one pass (the default post rules, 3x faster)."""
    out: list[str] = []
    app = out.append
    for t in tokens:
        if t.islower():  # most tokens: nothing to do
            app(t)
        elif len(t) < 2:  # punctuation, digits, one capital: lowered; empty tokens dropped
            if t:
                app(t.lower())
        elif t.isupper():
            out += (TK_UP, t.lower())
        elif t[0].isupper() and t[1:].islower():
            out += (TK_MAJ, t.lower())
        else:
            app(t.lower())
    return out


default_pre_rules: list[Callable[[str], str]] = [fix_html, replace_rep, replace_wrep, spec_add_spaces,
                                                 rm_useless_spaces]
default_post_rules: list[Callable[[Sequence[str]], list[str]]] = [replace_all_caps, deal_caps]


# --- splitting text into words -----------------------------------------------------------------

class BaseTokenizer:
    """Splits on spaces; the interface a word splitter implements (v1's BaseTokenizer)."""

    def __init__(self, lang: str = "en"):
        self.lang = lang

    def tokenizer(self, t: str) -> list[str]:
        return t.split(" ")

    def add_special_cases(self, toks: Sequence[str]) -> None:
        """Tokens never to split (deftly's splitters keep `xx...` tokens whole anyway)."""


#: English abbreviations that keep their full stop, as spaCy's English exceptions do.
_ABBREVIATIONS = ("Mr.", "Mrs.", "Ms.", "Dr.", "St.", "Jr.", "Sr.", "Prof.", "Mt.", "vs.", "etc.", "Inc.", "Ltd.",
                  "Co.", "Corp.", "Jan.", "Feb.", "Mar.", "Apr.", "Jun.", "Jul.", "Aug.", "Sep.", "Sept.", "Oct.",
                  "Nov.", "Dec.")
_APOS = "'\u2019"
#: One alternation tried left to right at each position, so earlier kinds win (re.findall, in C).
_WORD_PATTERN = "|".join([
    r"(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]]",           # URLs (trailing punctuation split off)
    r"[\w.+-]++@[\w-]+(?:\.[\w-]+)+",                                  # e-mail addresses
    "|".join(re.escape(a) + r"(?!\w)" for a in _ABBREVIATIONS),        # Mr. Dr. etc.
    r"(?:[^\W\d_]\.){2,}",                                             # U.S. e.g. i.e.
    rf"(?i:ca(?=n[{_APOS}]t\b)|wo(?=n[{_APOS}]t\b)|sha(?=n[{_APOS}]t\b))",  # can't -> ca n't (as spaCy)
    rf"[^\W_]+?(?=n[{_APOS}]t\b)",                                     # did|n't, is|n't
    rf"(?i:n[{_APOS}]t\b)",                                            # the n't itself
    rf"(?i:(?<=\w)[{_APOS}](?:s|m|d|ll|re|ve)\b)",                    # 's 'm 'd 'll 're 've after a word
    r"\d+(?:[.,:]\d+)*",                                               # 3.5  1,000  10:30
    r"[^\W_]+",                                                        # words (letters and digits)
    r"\.{2,}|-{2,}|_+",                                                # ... -- ___
    r"[^\w\s]",                                                        # any other symbol, one by one
])
_WORD_RE = re.compile(_WORD_PATTERN)
_ABBREVIATION_SET = frozenset(_ABBREVIATIONS)
#: marks the regex splits off the end of a word as a token of their own (no apostrophes: "n't", "'s")
_TRAILING = frozenset('.,!?;:)"')


class WordTokenizer(BaseTokenizer):
    """Fast English word splitting with spaCy's conventions: punctuation apart ('movie.' -> 'movie',
    '.'), contractions split ("didn't" -> 'did', "n't"; "you're" -> 'you', "'re"), hyphenated words
    split at the hyphen, URLs, e-mails, numbers and abbreviations kept whole. One regular expression
    scanned in C; no spaCy needed."""

    def tokenizer(self, t: str) -> list[str]:
        out: list[str] = []
        app = out.append
        for w in t.split():
            if w.isalnum():  # most words: nothing to split (checked in C, far cheaper than the regex)
                app(w)
                continue
            # next most: a word then one mark ('dress!', 'it,'), which the regex splits in two
            # (letters only or digits only before it, and not an abbreviation like 'Mr.')
            head = w[:-1]
            if w[-1] in _TRAILING and (head.isalpha() or head.isdecimal()) and w not in _ABBREVIATION_SET:
                app(head)
                app(w[-1])
            else:
                out += _WORD_RE.findall(w)
        return out


class SpacyTokenizer(BaseTokenizer):
    """spaCy's rule-based tokenizer for `lang` (needs the optional `spacy` package)."""

    def __init__(self, lang: str = "en"):
        super().__init__(lang)
        try:
            import spacy
        except ImportError as e:
            raise ConfigError("SpacyTokenizer needs spaCy (pip install spacy); deftly's default "
                              "WordTokenizer needs nothing") from e
        self.tok = spacy.blank(lang)

    def tokenizer(self, t: str) -> list[str]:
        return [w.text for w in self.tok.tokenizer(t)]

    def add_special_cases(self, toks: Sequence[str]) -> None:
        from spacy.symbols import ORTH

        for w in toks:
            self.tok.tokenizer.add_special_case(w, [{ORTH: w}])


# --- the tokenizer: rules + splitting, in parallel ---------------------------------------------

def _default_cpus() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


class Tokenizer:
    """Turns texts into token lists: `pre_rules` on each text, the word splitter `tok_func(lang)`,
    then `post_rules` on its tokens (v1's Tokenizer). `process_all` shares big corpora out over
    `n_cpus` processes; the rules must then be module-level functions (picklable)."""

    #: below this many texts, processes cost more than they save
    parallel_threshold = 5000

    def __init__(self, tok_func: Callable[[str], BaseTokenizer] = WordTokenizer, lang: str = "en",
                 pre_rules: Sequence[Callable[[str], str]] | None = None,
                 post_rules: Sequence[Callable[[Sequence[str]], list[str]]] | None = None,
                 special_cases: Sequence[str] | None = None, n_cpus: int | None = None):
        self.tok_func, self.lang = tok_func, lang
        self.pre_rules = list(default_pre_rules if pre_rules is None else pre_rules)
        self.post_rules = list(default_post_rules if post_rules is None else post_rules)
        self.special_cases = list(default_spec_tok if special_cases is None else special_cases)
        self.n_cpus = n_cpus or _default_cpus()

    def __repr__(self) -> str:
        names = lambda fs: ", ".join(getattr(f, "__name__", repr(f)) for f in fs)  # noqa: E731
        return (f"Tokenizer {getattr(self.tok_func, '__name__', self.tok_func)} in {self.lang} with the "
                f"following rules:\n - {names(self.pre_rules)}\n - {names(self.post_rules)}")

    def _splitter(self) -> BaseTokenizer:
        tok = self.tok_func(self.lang)
        tok.add_special_cases(self.special_cases)
        return tok

    def _rules(self) -> tuple[list[Callable], list[Callable]]:
        """The pre and post rules to run: v1's default post rules fused into one pass."""
        post = [_default_caps] if tuple(self.post_rules) == _DEFAULT_POST else list(self.post_rules)
        return list(self.pre_rules), post

    def process_text(self, t: str, tok: BaseTokenizer) -> list[str]:
        """The tokens of one text with splitter `tok`."""
        pre, post = self._rules()
        for rule in pre:
            t = rule(t)
        toks = tok.tokenizer(t)
        for rule in post:
            toks = rule(toks)
        return toks

    def _process_all_1(self, texts: Sequence[str]) -> list[list[str]]:
        split = self._splitter().tokenizer
        pre, post = self._rules()
        out: list[list[str]] = []
        for t in texts:
            for rule in pre:
                t = rule(t)
            toks = split(t)
            for rule in post:
                toks = rule(toks)
            out.append(toks)
        return out

    def process_all(self, texts: Iterable[str]) -> list[list[str]]:
        """The tokens of every text, in order; `n_cpus` processes when there are many texts."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise DataError(f"texts must be strings, got {type(t).__name__} {t!r}", where=f"text {i}")
        if self.n_cpus <= 1 or len(texts) < self.parallel_threshold:
            return self._process_all_1(texts)
        n = self.n_cpus
        chunks = [texts[i::n] for i in range(n)]  # interleaved: similar work per process
        # n - 1 worker processes take a share each while this process tokenizes the first one;
        # the workers send their tokens back packed into one string per share (_pack)
        with ProcessPoolExecutor(n - 1) as ex:
            futures = [ex.submit(_tokenize_packed, self, c) for c in chunks[1:]]
            parts = [self._process_all_1(chunks[0])] + [_unpack(f.result()) for f in futures]
        out: list[list[str]] = [[] for _ in texts]
        for k, part in enumerate(parts):
            out[k::n] = part
        return out


_DEFAULT_POST = (replace_all_caps, deal_caps)
#: joins a worker's tokens into one string; pickling one string is ~50x cheaper than a list of lists
_SEP = "\x00"


def _pack(toks: list[list[str]]) -> tuple[str, list[int]] | list[list[str]]:
    """A share's tokens as (all tokens joined by _SEP, tokens per text); the lists themselves when a
    token is not a string or holds _SEP."""
    lengths = [len(t) for t in toks]
    try:
        flat = _SEP.join(chain.from_iterable(toks))
    except TypeError:
        return toks
    if flat.count(_SEP) != max(sum(lengths) - 1, 0):
        return toks
    return flat, lengths


def _unpack(packed: tuple[str, list[int]] | list[list[str]]) -> list[list[str]]:
    if isinstance(packed, list):
        return packed
    flat, lengths = packed
    words = flat.split(_SEP) if sum(lengths) else []
    out, start = [], 0
    for n in lengths:
        out.append(words[start:start + n])
        start += n
    return out


def _tokenize_packed(tokenizer: Tokenizer, texts: Sequence[str]) -> tuple[str, list[int]] | list[list[str]]:
    return _pack(tokenizer._process_all_1(texts))


# --- vocabulary ----------------------------------------------------------------------------------

class Vocab:
    """The tokens a model knows (`itos`, id -> token) and their ids (`stoi`); unknown tokens map to
    `xxunk` (id 0)."""

    def __init__(self, itos: Sequence[str]):
        self.itos = list(itos)
        if len(set(self.itos)) != len(self.itos):
            dup = [t for t, c in Counter(self.itos).items() if c > 1][:5]
            raise DataError(f"a vocabulary lists each token once; repeated: {dup}")
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.unk_idx = self.stoi.get(UNK, 0)

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {' '.join(self.itos[:12])} ...)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def numericalize(self, t: Sequence[str]) -> np.ndarray:
        """The ids of tokens `t` (int64 array); unknown tokens get `xxunk`'s id."""
        get, unk = self.stoi.get, self.unk_idx
        return np.fromiter((get(w, unk) for w in t), dtype=np.int64, count=len(t))

    def textify(self, nums: Iterable[int], sep: str | None = " ") -> str | list[str]:
        """The tokens of ids `nums`, joined with `sep` (a list when `sep` is None)."""
        toks = [self.itos[int(i)] for i in nums]
        return toks if sep is None else sep.join(toks)

    @classmethod
    def create(cls, tokens: Iterable[Sequence[str]], max_vocab: int = 60000, min_freq: int = 2) -> "Vocab":
        """The special tokens, then the most frequent tokens seen at least `min_freq` times, at most
        `max_vocab` in all; a shorter vocabulary is padded with `xxfake` tokens to a multiple of 8
        (faster embedding matmuls), as v1."""
        freq: Counter[str] = Counter()
        for toks in tokens:
            freq.update(toks)
        itos = [t for t, c in freq.most_common(max_vocab) if c >= min_freq]
        spec = set(default_spec_tok)
        itos = (default_spec_tok + [t for t in itos if t not in spec])[:max_vocab]
        if len(itos) < max_vocab:
            n_fake = -len(itos) % 8
            itos += [f"xxfake{i}" if i else "xxfake" for i in range(n_fake)]
        return cls(itos)

    def to_json(self) -> dict:
        return {"itos": self.itos}

    @classmethod
    def from_json(cls, d: dict) -> "Vocab":
        itos = d.get("itos") if isinstance(d, dict) else None
        if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
            raise DataError("a vocabulary file holds {'itos': [token, ...]} with string tokens")
        return cls(itos)

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON (never a pickle)."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocab":
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"not a deftly vocabulary (JSON) file: {e}", where=str(path)) from e
        return cls.from_json(d)
