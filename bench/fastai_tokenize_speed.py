"""The fastai side of bench/tokenize_speed.py: fastai 2.8.12 tokenizes the clothing reviews.

Runs in bench/.venv-peers (it imports nothing from deftly). It reads the CSV the driver wrote
(column `text`: the 23,486 reviews, missing ones as ''; column `v1text`: the same reviews after
deftly's v1 pre rules, for the token-agreement figure only) and then answers the driver line by
line on stdin, so that the two libraries' rounds can be interleaved:

    time         one timed round; prints {"seconds": s, "n_docs": n, "n_tokens": t}
    tokens PATH  writes {"default": [...], "spacy": [...]} to PATH (JSON) and prints {"ok": true}
    quit         exits

What one round times is what fastai's `TextDataLoaders.from_df` / `TextBlock.from_df` does to a
text column when its datasets are set up (`Tokenizer.setups`):

    tokenize_df(df, ['text'], n_workers=N)

with every other argument left at fastai's default: `tok=None` (a new `SpacyTokenizer('en')`, i.e.
`spacy.blank('en')` plus fastai's special tokens, fed through `nlp.pipe` in batches of 5,000),
`rules=defaults.text_proc_rules` (fix_html, replace_rep, replace_wrep, spec_add_spaces,
rm_useless_spaces, replace_all_caps, replace_maj, lowercase: v2's rules, which add `xxbos`),
`mark_fields=False`; N worker processes (fastai's `parallel_tokenize`: the texts cut into N
contiguous chunks, one ProcessPoolExecutor task each, results sorted back into order). The timed
call includes building the spaCy tokenizer and the result frame, as the user's call does.

`tokens` also tokenizes `v1text` (untimed) with the same `SpacyTokenizer` and no rules: spaCy's
word splitting of exactly the text deftly's splitter sees.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--workers", type=int, required=True)
    args = p.parse_args(argv)

    import pandas as pd
    from fastai.text.core import SpacyTokenizer, tokenize_df

    df = pd.read_csv(args.data, keep_default_na=False, dtype=str)  # '' stays '', never 'nan'
    frame = df[["text"]]
    last = None
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "time":
            t0 = time.perf_counter()
            res, _count = tokenize_df(frame, ["text"], n_workers=args.workers)
            seconds = time.perf_counter() - t0
            last = [list(t) for t in res["text"]]
            print(json.dumps({"seconds": seconds, "n_docs": len(last),
                              "n_tokens": int(res["text_length"].sum())}), flush=True)
        elif cmd == "tokens":
            tok = SpacyTokenizer("en")
            spacy_toks = [list(t) for t in tok(df["v1text"].tolist())]
            with open(arg, "w", encoding="utf-8") as f:
                json.dump({"default": last, "spacy": spacy_toks}, f, ensure_ascii=False)
            print(json.dumps({"ok": True}), flush=True)
        elif cmd == "quit":
            break
        else:
            print(json.dumps({"error": f"unknown command {cmd!r}"}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
