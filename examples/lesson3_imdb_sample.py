"""Lesson 3: text data with IMDB_SAMPLE, tokenization and numericalization, then a quick ULMFiT.

The course's lesson-3 IMDB code (F3:4779-4830, 5063-5135) with `from deftly.text import *` as the
import line: `TextDataBunch.from_csv`, `save` / `TextClasDataBunch.load`, `show_batch`, the vocabulary,
the data block version, then a small language model fine-tuned, its encoder saved, and a classifier
on top. Offline, `URLs.IMDB_SAMPLE` is deftly's bundled stand-in: 1,000 real clothing reviews
(positive / negative) in IMDB_SAMPLE's texts.csv layout. The models are small AWD-LSTMs (see
--emb-sz, --n-hid, --n-layers); with --pretrained (the default when pretrained English weights are
on this machine) the language model starts from them. The last line is
`lesson3_imdb_sample: accuracy=0.xxx`.

    python examples/lesson3_imdb_sample.py --epochs 2
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from deftly.text import *  # noqa: F403  (the course's import line)


def model_configs(args: argparse.Namespace) -> tuple[bool, dict | None, dict | None]:
    """(pretrained, LM config, classifier config): the pretrained weights' sizes when they are used
    (found on this machine, or downloadable), else a small AWD-LSTM from the command line."""
    from deftly.core.errors import ExportError
    from deftly.text.models import awd_lstm_clas_config, awd_lstm_lm_config
    from deftly.text.pretrained import default_pretrained_lm

    sizes = dict(emb_sz=args.emb_sz, n_hid=args.n_hid, n_layers=args.n_layers)
    pretrained = args.pretrained
    if pretrained is not False:
        try:
            state = default_pretrained_lm(AWD_LSTM)[0]  # (weights, vocabulary, ...)
            n_layers = sum(1 for k in state if k.startswith("0.rnns.") and k.endswith("weight_hh_l0_raw"))
            sizes = dict(emb_sz=state["0.encoder.weight"].shape[1], n_hid=state["0.rnns.0.weight_hh_l0_raw"].shape[1],
                         n_layers=n_layers)
            pretrained = True
        except ExportError as e:
            if pretrained:
                raise
            print(f"note: no pretrained language model here, so it starts from random weights ({e})")
            pretrained = False
    return pretrained, dict(awd_lstm_lm_config, **sizes), dict(awd_lstm_clas_config, **sizes)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The model options both text examples take: sizes, dropout, pretrained or not."""
    p.add_argument("--drop-mult", type=float, default=0.5, help="the classifier's dropout multiplier")
    p.add_argument("--emb-sz", type=int, default=100)
    p.add_argument("--n-hid", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--pretrained", dest="pretrained", action="store_true", default=None,
                   help="start from pretrained English weights (default: when they are here)")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false")


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("out/lesson3_imdb_sample"), help="where the learners save")
    p.add_argument("--bs", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2, help="epochs of the LM after unfreeze() (0: none)")
    p.add_argument("--clas-epochs", type=int, default=2, help="epochs of the classifier after unfreeze()")
    p.add_argument("--final-lr", type=float, default=2e-3, help="the classifier's top learning rate after unfreeze()")
    add_model_arguments(p)
    args = p.parse_args(argv)
    set_seed(42)

    path = untar_data(URLs.IMDB_SAMPLE)
    print(path.ls())
    df = pd.read_csv(path/'texts.csv')
    print(df.head())
    print(df['text'][1])

    # the quick way: a factory (a random 20% for validation, as v1)
    data_lm = TextDataBunch.from_csv(path, 'texts.csv')
    data_lm.save()
    data = TextClasDataBunch.load(path)
    data.show_batch()
    print(data.vocab.itos[:10])
    print(data.train_ds[0][0])
    print(data.train_ds[0][0].data[:10])

    # the data block API: the CSV's is_valid column for the split, column 0 for the labels
    data = (TextList.from_csv(path, 'texts.csv', cols='text')
            .split_from_df(col=2)
            .label_from_df(cols=0)
            .databunch())
    print(data)

    # a quick ULMFiT: fine-tune a language model, then a classifier on its encoder
    pretrained, lm_config, clas_config = model_configs(args)
    print(f"AWD_LSTM emb_sz={lm_config['emb_sz']} n_hid={lm_config['n_hid']} n_layers={lm_config['n_layers']}, "
          f"{'pretrained' if pretrained else 'random'} weights")
    data_lm = TextLMDataBunch.from_csv(path, 'texts.csv', bs=args.bs)
    data_clas = TextClasDataBunch.from_csv(path, 'texts.csv', vocab=data_lm.vocab, bs=args.bs)
    learn = language_model_learner(data_lm, AWD_LSTM, config=lm_config, pretrained=pretrained, drop_mult=0.5,
                                   path=args.out)
    learn.fit_one_cycle(1, 1e-2)
    if args.epochs:
        learn.unfreeze()
        learn.fit_one_cycle(args.epochs, 1e-3 if pretrained else 1e-2)
    print(f"language model: valid_loss={learn.validate()[0]:.3f} (a uniform guess: {math.log(len(data_lm.vocab)):.3f})")
    print(learn.predict("This is a review about", n_words=10))
    learn.save_encoder('ft_enc')

    learn = text_classifier_learner(data_clas, AWD_LSTM, config=clas_config, drop_mult=args.drop_mult, path=args.out)
    learn.load_encoder('ft_enc')
    learn.fit_one_cycle(1, 1e-2)
    learn.freeze_to(-2)
    learn.fit_one_cycle(1, slice(5e-3/2., 5e-3))
    learn.unfreeze()
    learn.fit_one_cycle(args.clas_epochs, slice(args.final_lr/100, args.final_lr))
    cat, idx, probs = learn.predict("This is a really lovely dress, I wear it all the time")
    print(f"predict('This is a really lovely dress, ...') -> {cat} (p={float(probs[idx]):.2f})")

    acc = float(learn.validate()[1])
    print(f"lesson3_imdb_sample: accuracy={acc:.3f}")
    return acc


if __name__ == "__main__":
    main()
