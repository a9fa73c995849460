"""Lesson 4: tabular data, UCI Adult income (lesson4-tabular, F3:5519-5629).

The course's code with `from deftly.tabular import *` as the import line. The data is the bundled
`adult_sample` (32,561 real UCI Adult rows in fastai's adult.csv layout), so it runs offline.
Prints the processed batch, the model, the training table, a prediction and a last line
`lesson4_tabular: accuracy=0.xxx`.

    python examples/lesson4_tabular.py --epochs 1
"""
from __future__ import annotations

import argparse
from pathlib import Path

from deftly.tabular import *  # noqa: F403  (the course's import line)


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("out/lesson4_tabular"), help="where learn.save writes")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--rows", type=int, default=None, help="use only the first ROWS rows (default: all)")
    args = p.parse_args(argv)
    set_seed(42)

    path = untar_data(URLs.ADULT_SAMPLE)
    df = pd.read_csv(path/'adult.csv')
    if args.rows:
        df = df.iloc[:args.rows]

    dep_var = 'salary'
    cat_names = ['workclass', 'education', 'marital-status', 'occupation', 'relationship', 'race']
    cont_names = ['age', 'fnlwgt', 'education-num']
    procs = [FillMissing, Categorify, Normalize]

    test = TabularList.from_df(df.iloc[800:1000].copy(), path=path, cat_names=cat_names, cont_names=cont_names)

    data = (TabularList.from_df(df, path=path, cat_names=cat_names, cont_names=cont_names, procs=procs)
                               .split_by_idx(list(range(800,1000)))
                               .label_from_df(cols=dep_var)
                               .add_test(test)
                               .databunch())

    data.show_batch(rows=10)

    learn = tabular_learner(data, layers=[200,100], metrics=accuracy, path=args.out)
    print(learn.model)
    learn.fit(args.epochs, args.lr)

    row = df.iloc[0]
    pred_class, pred_idx, probs = learn.predict(row)
    print(f"predict(row 0) -> {pred_class} (p={float(probs[pred_idx]):.2f}); actual {row[dep_var]}")
    learn.show_results(rows=5)

    acc = float(learn.validate()[1])
    print(f"lesson4_tabular: accuracy={acc:.3f}")
    return acc


if __name__ == "__main__":
    main()
