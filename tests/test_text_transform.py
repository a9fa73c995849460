"""deftly.text.transform: v1's text rules and special tokens, the English word splitter, the parallel
Tokenizer and the JSON Vocab, on hand-made strings and on the bundled real reviews (imdb_sample)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from deftly.core.errors import DataError
from deftly.text.transform import (
    BOS, EOS, FLD, PAD, TK_MAJ, TK_REP, TK_UP, TK_WREP, UNK, BaseTokenizer, Tokenizer, Vocab, WordTokenizer,
    deal_caps, default_post_rules, default_pre_rules, default_spec_tok, fix_html, replace_all_caps, replace_rep,
    replace_wrep, rm_useless_spaces, spec_add_spaces,
)


@pytest.fixture(scope="session")
def reviews(tmp_path_factory) -> list[str]:
    """The 1,000 real reviews of the bundled IMDB_SAMPLE stand-in, extracted offline into a fresh home."""
    from deftly.datasets import URLs, untar_data

    home = tmp_path_factory.mktemp("text_transform_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEFTLY_HOME", str(home))
        mp.setenv("DEFTLY_OFFLINE", "1")
        path = untar_data(URLs.IMDB_SAMPLE, show_progress=False)
    return pd.read_csv(path / "texts.csv")["text"].tolist()


# --------------------------------------------------------------------------- special tokens


def test_special_tokens_in_v1_order():
    assert default_spec_tok == ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxmaj", "xxup", "xxrep", "xxwrep"]
    assert (UNK, PAD, BOS, EOS, FLD, TK_MAJ, TK_UP, TK_REP, TK_WREP) == tuple(default_spec_tok)


# --------------------------------------------------------------------------- pre rules (on text)


def test_fix_html_undoes_escapes():
    assert fix_html("it#39;s a <br />new line") == "it's a \nnew line"
    assert fix_html("salt amp; pepper, nbsp;#36;5 quot;hiquot;") == "salt & pepper, $5 'hi'"
    assert fix_html("well @-@ made , 3 @.@ 5 , 1 @,@ 000") == "well-made , 3.5 , 1,000"
    assert fix_html("a <unk> word") == f"a {UNK} word"
    assert fix_html("x &lt; y &gt; z") == "x < y > z"  # html.unescape
    assert fix_html("a\\nb") == "a\nb"  # a literal backslash-n
    assert fix_html("a    b") == "a b"


def test_replace_rep_marks_characters_repeated_four_times():
    assert replace_rep("cooool") == f"c {TK_REP} 4 o l"
    assert replace_rep("so good!!!!!") == f"so good {TK_REP} 5 ! "
    assert replace_rep("cool") == "cool"  # 2 repeats: unchanged
    assert replace_rep("coool") == "coool"  # 3 repeats: unchanged (v1 needs 4+)
    assert replace_rep("aaaa bbbbbbb") == f" {TK_REP} 4 a   {TK_REP} 7 b "


def test_replace_wrep_marks_words_repeated_four_times():
    assert replace_wrep("this is very very very very good") == f"this is  {TK_WREP} 4 very  good"
    assert replace_wrep("so so so so so good") == f" {TK_WREP} 5 so  good"
    assert replace_wrep("very very very good") == "very very very good"  # 3 times: unchanged


def test_spec_add_spaces_and_rm_useless_spaces():
    assert spec_add_spaces("black/white #1") == "black / white  # 1"
    assert rm_useless_spaces("a   b  c d") == "a b c d"
    assert rm_useless_spaces(spec_add_spaces("black/white")) == "black / white"


# --------------------------------------------------------------------------- post rules (on tokens)


def test_replace_all_caps():
    assert replace_all_caps(["I", "LOVE", "this", "Dress", "XL"]) == ["I", TK_UP, "love", "this", "Dress", TK_UP, "xl"]


def test_deal_caps():
    assert deal_caps(["I", "love", "This", "Dress", "McDonald", ""]) == ["i", "love", TK_MAJ, "this", TK_MAJ, "dress",
                                                                         "mcdonald"]


def test_default_rule_lists():
    assert default_pre_rules == [fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces]
    assert default_post_rules == [replace_all_caps, deal_caps]


def _per_rule(text: str) -> list[str]:
    """The tokens of `text` by applying each default rule in turn (no fused shortcut)."""
    for rule in default_pre_rules:
        text = rule(text)
    toks = WordTokenizer().tokenizer(text)
    for rule in default_post_rules:
        toks = rule(toks)
    return toks


def test_fused_default_rules_equal_the_per_rule_path_on_real_reviews(reviews):
    tok = Tokenizer(n_cpus=1)
    texts = reviews[:300] + ["I LOVE this DRESS!!!! It's sooooo GOOD good good good good good. A/B #1 XL, Mr. McDonald"]
    fused = tok.process_all(texts)
    assert fused == [_per_rule(t) for t in texts]
    # the rules did something on these real texts
    flat = [t for toks in fused for t in toks]
    assert TK_MAJ in flat and TK_UP in flat and TK_REP in flat and TK_WREP in flat
    assert not any(t != t.lower() for t in flat)  # everything is lower case after deal_caps


# --------------------------------------------------------------------------- word splitting


@pytest.mark.parametrize("text, tokens", [
    ("I didn't like it.", ["I", "did", "n't", "like", "it", "."]),  # F3:4784
    ("you're right, it's great!", ["you", "'re", "right", ",", "it", "'s", "great", "!"]),  # F3:4786
    ("can't won't shouldn't", ["ca", "n't", "wo", "n't", "should", "n't"]),
    ("I'm sure we'll see, I'd say we've", ["I", "'m", "sure", "we", "'ll", "see", ",", "I", "'d", "say", "we", "'ve"]),
    ("well-made film... (really)", ["well", "-", "made", "film", "...", "(", "really", ")"]),
    ("it cost $3.50 at 10:30, 1,000 times", ["it", "cost", "$", "3.50", "at", "10:30", ",", "1,000", "times"]),
    ("Mr. Smith, e.g. the U.S. etc.", ["Mr.", "Smith", ",", "e.g.", "the", "U.S.", "etc."]),
    ("mail foo.bar@example.com now", ["mail", "foo.bar@example.com", "now"]),
    ("see https://example.com/a-b.", ["see", "https://example.com/a-b", "."]),
    ("a xxbos xxmaj xxunk b", ["a", "xxbos", "xxmaj", "xxunk", "b"]),  # special tokens stay whole
])
def test_word_tokenizer_on_the_course_examples(text, tokens):
    assert WordTokenizer().tokenizer(text) == tokens


def test_word_tokenizer_never_loses_characters(reviews):
    tok = WordTokenizer()
    for text in reviews[:200]:
        assert "".join(tok.tokenizer(text)) == "".join(text.split())


def test_base_tokenizer_splits_on_spaces():
    assert BaseTokenizer().tokenizer("a b,c") == ["a", "b,c"]


# --------------------------------------------------------------------------- the Tokenizer


def test_tokenizer_course_sentence():
    toks = Tokenizer(n_cpus=1).process_all(["I didn't like THIS Movie, you're wrong!"])[0]
    assert toks == ["i", "did", "n't", "like", TK_UP, "this", TK_MAJ, "movie", ",", "you", "'re", "wrong", "!"]


def test_tokenizer_custom_rules_are_applied():
    tok = Tokenizer(pre_rules=[str.upper], post_rules=[lambda ts: ts[::-1]], n_cpus=1)
    assert tok.process_all(["a b"]) == [["B", "A"]]
    assert "Tokenizer" in repr(Tokenizer()) and "fix_html" in repr(Tokenizer())


def test_parallel_tokenizer_equals_serial_and_keeps_order(reviews):
    texts = reviews[:120]
    serial = Tokenizer(n_cpus=1).process_all(texts)
    tok = Tokenizer(n_cpus=2)
    tok.parallel_threshold = 10
    parallel = tok.process_all(texts)
    assert parallel == serial
    assert len({tuple(t) for t in serial}) > 100  # distinct documents: an order mix-up would show


@pytest.mark.parametrize("bad", [3, None, b"bytes"])
def test_non_string_text_is_a_data_error_naming_the_index(bad):
    with pytest.raises(DataError, match="text 2") as e:
        Tokenizer(n_cpus=1).process_all(["fine", "also fine", bad])
    assert e.value.where == "text 2"


# --------------------------------------------------------------------------- Vocab


CORPUS = [["the", "dress", "is", "nice", "."], ["the", "top", "is", "nice", "."], ["the", "skirt", "."]]


def test_vocab_create_special_tokens_first_then_by_frequency():
    v = Vocab.create(CORPUS, max_vocab=60000, min_freq=2)
    assert v.itos[:9] == default_spec_tok
    assert v.itos[9:13] == ["the", ".", "is", "nice"]  # 3, 3, 2, 2 occurrences
    assert "dress" not in v.itos and "skirt" not in v.itos  # seen once < min_freq
    assert len(v) % 8 == 0 and all(t.startswith("xxfake") for t in v.itos[13:])
    assert v.stoi["the"] == 9 and v.stoi[UNK] == 0 and v.stoi[PAD] == 1


def test_vocab_min_freq_one_keeps_every_token():
    v = Vocab.create(CORPUS, min_freq=1)
    assert {"dress", "skirt", "top"} <= set(v.itos)


def test_vocab_max_vocab_caps_the_whole_vocabulary(reviews):
    toks = Tokenizer(n_cpus=1).process_all(reviews[:200])
    full = Vocab.create(toks, max_vocab=60000, min_freq=2)
    small = Vocab.create(toks, max_vocab=24, min_freq=2)
    assert len(small) == 24  # as v1: special tokens count, no padding at the cap
    assert small.itos[:9] == default_spec_tok
    assert small.itos[9:] == [t for t in full.itos if t not in default_spec_tok][:15]
    assert len(full) > 500 and len(full) % 8 == 0


def test_numericalize_textify_round_trip_and_unknown(reviews):
    toks = Tokenizer(n_cpus=1).process_all(reviews[:100])
    v = Vocab.create(toks, min_freq=1)
    for t in toks[:20]:
        ids = v.numericalize(t)
        assert ids.dtype.kind == "i" and len(ids) == len(t)
        assert v.textify(ids) == " ".join(t)
        assert v.textify(ids, sep=None) == t
    ids = v.numericalize(["the", "zyzzyva-unseen", "dress"])
    assert ids[1] == 0 and v.itos[0] == UNK
    assert v.textify(ids) == f"the {UNK} dress"


def test_vocab_save_load_json(tmp_path):
    v = Vocab.create(CORPUS, min_freq=1)
    v.save(tmp_path / "itos.json")
    assert json.loads((tmp_path / "itos.json").read_text(encoding="utf-8")) == {"itos": v.itos}
    w = Vocab.load(tmp_path / "itos.json")
    assert w == v and w.stoi == v.stoi


@pytest.mark.parametrize("bad", [{"itos": ["a", 1]}, {"itos": "abc"}, ["a", "b"], {"other": []}])
def test_vocab_from_json_rejects_non_strings(bad):
    with pytest.raises(DataError, match="itos"):
        Vocab.from_json(bad)


def test_vocab_load_rejects_non_json_and_duplicates(tmp_path):
    f = tmp_path / "itos.pkl"
    f.write_bytes(b"\x80\x04\x95not json")
    with pytest.raises(DataError, match="JSON"):
        Vocab.load(f)
    with pytest.raises(DataError, match="once"):
        Vocab(["a", "b", "a"])
