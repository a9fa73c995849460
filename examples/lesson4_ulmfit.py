"""Lesson 4: ULMFiT, a language model fine-tuned on the reviews, then a classifier with gradual unfreezing.

The course's lesson-4 IMDB flow (F3:5185-5420) with `from deftly.text import *` as the import line,
on IMDB_SAMPLE (offline: deftly's bundled stand-in, 1,000 real clothing reviews in texts.csv): the
language-model data by the data block API with `label_for_lm`, saved and loaded as 'tmp_lm';
`language_model_learner`, `fit_one_cycle` with moms=(0.8, 0.7), `unfreeze`, text generation,
`save_encoder`; the classifier data with the LM's vocabulary, saved and loaded as 'tmp_clas';
`text_classifier_learner`, `load_encoder`, then `freeze_to(-2)`, `freeze_to(-3)`, `unfreeze` with
discriminative learning rates `slice(lr/(2.6**4), lr)`; `predict`. The models are small AWD-LSTMs
(--emb-sz, --n-hid, --n-layers) unless pretrained English weights are on this machine (--pretrained,
the default then). The last line is `lesson4_ulmfit: accuracy=0.xxx`.

    python examples/lesson4_ulmfit.py --epochs 2 --clas-epochs 2
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from deftly.text import *  # noqa: F403  (the course's import line)

from lesson3_imdb_sample import add_model_arguments, model_configs  # noqa: E402  (the script's folder is on sys.path)


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("out/lesson4_ulmfit"), help="where the learners save")
    p.add_argument("--bs", type=int, default=48)
    p.add_argument("--epochs", type=int, default=4, help="epochs of the language model after unfreeze()")
    p.add_argument("--clas-epochs", type=int, default=2, help="epochs of the classifier after unfreeze()")
    p.add_argument("--final-lr", type=float, default=1e-3, help="the classifier's top learning rate after unfreeze()")
    add_model_arguments(p)
    args = p.parse_args(argv)
    set_seed(42)
    bs = args.bs

    path = untar_data(URLs.IMDB_SAMPLE)
    pretrained, lm_config, clas_config = model_configs(args)
    print(f"AWD_LSTM emb_sz={lm_config['emb_sz']} n_hid={lm_config['n_hid']} n_layers={lm_config['n_layers']}, "
          f"{'pretrained' if pretrained else 'random'} weights")

    # --- the language model: every review's text, a random 10% to validate it
    data_lm = (TextList.from_csv(path, 'texts.csv', cols='text')
               #Inputs: the text column of texts.csv
               .split_by_rand_pct(0.1, seed=42)
               #We randomly split and keep 10% for validation
               .label_for_lm()
               #We want to do a language model so we label accordingly
               .databunch(bs=bs))
    data_lm.save('tmp_lm')
    data_lm = TextLMDataBunch.load(path, 'tmp_lm', bs=bs)
    data_lm.show_batch()

    learn = language_model_learner(data_lm, AWD_LSTM, config=lm_config, pretrained=pretrained, drop_mult=0.3,
                                   path=args.out)
    first_loss = learn.validate()[0]
    learn.fit_one_cycle(1, 1e-2, moms=(0.8, 0.7))
    learn.unfreeze()
    learn.fit_one_cycle(args.epochs, 1e-3 if pretrained else 1e-2, moms=(0.8, 0.7))
    lm_loss, lm_acc = learn.validate()
    print(f"language model: valid_loss {first_loss:.3f} -> {lm_loss:.3f}, accuracy={float(lm_acc):.3f} "
          f"(a uniform guess: {math.log(len(data_lm.vocab)):.3f})")
    print(learn.predict('I liked this dress because', 20, temperature=1.1, min_p=0.001))
    learn.save_encoder('fine_tuned_enc')

    # --- the classifier: the same vocabulary, the CSV's is_valid split, the labels
    data_clas = (TextList.from_csv(path, 'texts.csv', cols='text', vocab=data_lm.vocab)
                 #the same vocabulary as the language model: word 10 must mean the same word
                 .split_from_df(col=2)
                 #the is_valid column keeps the validation labels apart
                 .label_from_df(cols=0)
                 #positive / negative
                 .databunch(bs=bs))
    data_clas.save('tmp_clas')
    data_clas = TextClasDataBunch.load(path, 'tmp_clas', bs=bs)
    data_clas.show_batch()

    learn = text_classifier_learner(data_clas, AWD_LSTM, config=clas_config, drop_mult=args.drop_mult, path=args.out)
    learn.load_encoder('fine_tuned_enc')
    learn.freeze()
    learn.fit_one_cycle(1, 2e-2, moms=(0.8, 0.7))
    learn.save('first')
    learn.load('first')
    learn.freeze_to(-2)
    learn.fit_one_cycle(1, slice(1e-2/(2.6**4), 1e-2), moms=(0.8, 0.7))
    learn.save('second')
    learn.load('second')
    learn.freeze_to(-3)
    learn.fit_one_cycle(1, slice(5e-3/(2.6**4), 5e-3), moms=(0.8, 0.7))
    learn.save('third')
    learn.load('third')
    learn.unfreeze()
    lr = args.final_lr
    learn.fit_one_cycle(args.clas_epochs, slice(lr/(2.6**4), lr), moms=(0.8, 0.7))

    text = "I really loved that dress, it was awesome!"
    cat, idx, probs = learn.predict(text)
    print(f"predict({text!r}) -> {cat} (p={float(probs[idx]):.2f})")
    acc = float(learn.validate()[1])
    print(f"lesson4_ulmfit: accuracy={acc:.3f}")
    return acc


if __name__ == "__main__":
    main()
