"""ULMFiT learners: `language_model_learner` (fine-tune a pretrained AWD-LSTM language model, then
generate text or save its encoder) and `text_classifier_learner` (the encoder plus a pooling head,
trained with gradual unfreezing).

    learn = language_model_learner(data_lm, AWD_LSTM, drop_mult=0.3)
    learn.fit_one_cycle(1, 1e-2, moms=(0.8, 0.7)); learn.save_encoder('fine_tuned_enc')
    learn = text_classifier_learner(data_clas, AWD_LSTM, drop_mult=0.5); learn.load_encoder('fine_tuned_enc')
    learn.freeze_to(-2); learn.fit_one_cycle(1, slice(1e-2 / (2.6 ** 4), 1e-2), moms=(0.8, 0.7))
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deftly.core.errors import ConfigError, DataError, ExportError
from deftly.data.databunch import DatasetType
from deftly.train.callback import Callback
from deftly.train.callbacks import GradientClipping
from deftly.train.checkpoint import load_state, save_state
from deftly.train.interpret import ClassificationInterpretation
from deftly.train.learner import Learner
from deftly.train.losses import CrossEntropyFlat
from deftly.train.metrics import accuracy
from deftly.text import models as text_models
from deftly.text.data import TextClasDataBunch, TextDataBunch, TextLMDataBunch
from deftly.text.transform import UNK, Vocab

__all__ = ["LanguageLearner", "RNNLearner", "RNNTrainer", "TextClassificationInterpretation",
           "language_model_learner", "text_classifier_learner"]


class RNNTrainer(Callback):
    """What training an AWD-LSTM needs (v1): the hidden state reset at the start of training and of
    validation, and activation regularisation added to the training loss: `alpha` x mean of the
    squared last-layer outputs (after dropout), `beta` x mean squared step between consecutive
    last-layer outputs (before dropout)."""

    order = -5

    def __init__(self, learn: Learner | None = None, alpha: float = 2.0, beta: float = 1.0):
        super().__init__(learn)
        self.alpha, self.beta = alpha, beta

    def before_train(self) -> None:
        _reset(self.learn.model)

    def before_validate(self) -> None:
        _reset(self.learn.model)

    def before_backward(self) -> None:
        extra = getattr(self.learn, "_rnn_outputs", None)
        if extra is None:
            return
        raw_outputs, outputs = extra
        s = self.state
        if self.alpha and outputs:
            s.loss_grad = s.loss_grad + self.alpha * outputs[-1].float().pow(2).mean()
        if self.beta and raw_outputs:
            h = raw_outputs[-1]
            if h.shape[1] > 1:
                s.loss_grad = s.loss_grad + self.beta * (h[:, 1:] - h[:, :-1]).float().pow(2).mean()


def _reset(model: nn.Module) -> None:
    for m in model.modules():
        if m is not model and hasattr(m, "reset") and callable(m.reset):
            m.reset()
    if hasattr(model, "reset") and callable(model.reset):
        model.reset()


class RNNLearner(Learner):
    """A Learner for AWD-LSTM models: their extra outputs (per-layer activations) feed the
    regularisation of `RNNTrainer` and are kept out of the loss and the metrics; `save_encoder` /
    `load_encoder` move the encoder between the language model and the classifier."""

    def __init__(self, data: TextDataBunch, model: nn.Module, split_func: Any = None, clip: float | None = None,
                 alpha: float = 2.0, beta: float = 1.0, metrics: Any = None, **learn_kwargs: Any):
        groups = split_func(model) if split_func is not None else None
        super().__init__(data, model, metrics=[accuracy] if metrics is None else metrics, layer_groups=groups,
                         **learn_kwargs)
        self.add_cb(RNNTrainer(self, alpha=alpha, beta=beta))
        if clip:
            self.add_cb(GradientClipping(self, clip=clip))
        self._rnn_outputs: tuple[list[Tensor], list[Tensor]] | None = None

    def _forward(self, xb: Any) -> Any:
        out = super()._forward(xb)
        if isinstance(out, tuple) and len(out) == 3:
            self._rnn_outputs = (out[1], out[2])
            return out[0]
        return out

    def _eval_outputs(self, dl: Any):
        _reset(self.model)
        yield from super()._eval_outputs(dl)

    def pred_batch(self, ds_type: DatasetType = DatasetType.Valid, batch: Any = None, reconstruct: bool = False,
                   activ: Any = None) -> Any:
        _reset(self.model)
        return super().pred_batch(ds_type, batch, reconstruct, activ)


    def _infer(self, batch: Any) -> Tensor:
        """`predict`'s forward pass, from a fresh hidden state."""
        _reset(self.model)
        return super()._infer(batch)

    # --- the encoder -----------------------------------------------------------------------------
    def _encoder(self) -> nn.Module:
        """The AWD-LSTM inside the model (the LM's first part, the classifier's MultiBatchEncoder module)."""
        enc = self.model[0]
        return enc.module if isinstance(enc, text_models.MultiBatchEncoder) else enc

    def save_encoder(self, name: str) -> Path:
        """Write the encoder's weights, size and vocabulary to `path/model_dir/name.safetensors`."""
        enc = self._encoder()
        state = {"encoder": enc.state_dict(), "vocab": list(self.data.vocab.itos), "size": encoder_size(enc)}
        return save_state(self.path / self.model_dir / f"{name}.safetensors", state)

    def load_encoder(self, name: str, device: torch.device | str | None = None) -> "RNNLearner":
        """Load weights `save_encoder` wrote; the vocabulary must be the one they were trained with
        (build the classifier's data with `vocab=data_lm.vocab`)."""
        file = self.path / self.model_dir / f"{name}.safetensors"
        state = load_state(file, device=device or self.data.device)
        if "encoder" not in state:
            raise ExportError(f"{file} holds no encoder (save it with learn.save_encoder)")
        saved = state.get("vocab")
        if saved is not None and saved != list(self.data.vocab.itos):
            raise DataError(f"the encoder in {file} was trained with another vocabulary ({len(saved)} tokens, this "
                            f"data has {len(self.data.vocab)}): build the classifier's data with "
                            "vocab=data_lm.vocab so word ids mean the same words")
        size = state.get("size")
        rebuild = getattr(self, "_rebuild", None)
        if size and size != encoder_size(self._encoder()) and rebuild is not None:
            rebuild(size)  # a classifier built with the default size takes the encoder's size
        try:
            self._encoder().load_state_dict(state["encoder"])
        except RuntimeError as e:
            raise ExportError(f"the encoder in {file} does not fit this model: {e}") from e
        self.freeze()
        return self

    def get_preds(self, ds_type: DatasetType = DatasetType.Valid, activ: Any = None, with_loss: bool = False,
                  ordered: bool = True) -> list[Tensor]:
        """Predictions and targets of a split; `ordered` puts them in the dataset's order (the
        classifier's loaders sort documents by length)."""
        out = super().get_preds(ds_type, activ=activ, with_loss=with_loss)
        order = _loader_order(self.data.dl(ds_type))
        if ordered and order is not None:
            inverse = np.argsort(order)
            out = [o[torch.as_tensor(inverse)] if isinstance(o, Tensor) and len(o) == len(order) else o for o in out]
        return out


def _loader_order(dl: Any) -> np.ndarray | None:
    """The dataset indexes in the order a (non-shuffling) loader yields them, if it reorders."""
    sampler = getattr(dl.dl, "sampler", None)
    if sampler is None or type(sampler).__name__ != "SortSampler":
        return None
    return np.fromiter(iter(sampler), dtype=np.int64)


class LanguageLearner(RNNLearner):
    """A language-model learner: `predict(text, n_words)` continues a text."""

    def predict(self, text: str, n_words: int = 1, no_unk: bool = True, temperature: float = 1.0,
                min_p: float | None = None, sep: str = " ", decoder: Any = None) -> str:
        """`text` followed by `n_words` tokens sampled from the model (softmax at `temperature`;
        tokens under probability `min_p` and, with `no_unk`, `xxunk` never drawn)."""
        if not isinstance(text, str):
            raise DataError(f"predict takes the start of a text (str), got {type(text).__name__}")
        if temperature <= 0:
            raise ConfigError(f"temperature must be positive, got {temperature}")
        ll = self.data.train_ds
        ids = ll.x.from_object(text)
        vocab: Vocab = self.data.vocab
        unk = vocab.stoi.get(UNK, 0)
        self.model.eval()
        _reset(self.model)
        device = next(self.model.parameters()).device
        xb = torch.as_tensor(ids, dtype=torch.long, device=device)[None]
        new: list[int] = []
        with torch.no_grad():
            for _ in range(n_words):
                logits = self._forward(xb)[0, -1].float()
                probs = F.softmax(logits / temperature, dim=-1)
                if min_p is not None:
                    if (probs >= min_p).sum() == 0:
                        break
                    probs[probs < min_p] = 0.0
                if no_unk:
                    probs[unk] = 0.0
                if probs.sum() <= 0:
                    break
                idx = int(torch.multinomial(probs, 1))
                new.append(idx)
                xb = torch.tensor([[idx]], device=device)
        words = vocab.textify(new, sep=None)
        if decoder is not None:
            words = decoder(words)
        return text + sep + sep.join(words) if words else text


def _pretrained_lm(arch: Any, fnames: Sequence[str] | None, path: Path,
                   model_dir: Path) -> tuple[dict, list[str], dict[str, Any] | None]:
    """The weights, vocabulary and config (None: the arch's default size) of a pretrained language
    model: `fnames` (weights, vocabulary) in `path/model_dir`, else the downloaded WT103 weights,
    else deftly's own offline model."""
    from deftly.text import pretrained

    if fnames is not None:
        if len(fnames) != 2:
            raise ConfigError("pretrained_fnames is (weights file, vocabulary file), e.g. ('lstm_wt103', 'itos_wt103')")
        return pretrained.load_pretrained_files(path / model_dir, *fnames)
    return pretrained.default_pretrained_lm(arch)


#: the config keys that fix the shape of an AWD-LSTM's weights (the rest are dropouts)
SIZE_KEYS = ("emb_sz", "n_hid", "n_layers", "bidir")


def _sized(config: dict[str, Any], source: dict[str, Any] | None) -> dict[str, Any]:
    """`config` with the weight shapes of `source` (a pretrained model's config), when there is one."""
    if not source:
        return dict(config)
    return dict(config, **{k: source[k] for k in SIZE_KEYS if k in source})


def encoder_size(enc: nn.Module) -> dict[str, Any]:
    """The shape-defining settings of an AWD-LSTM encoder."""
    return {"emb_sz": int(enc.emb_sz), "n_hid": int(enc.n_hid), "n_layers": int(enc.n_layers),
            "bidir": bool(getattr(enc, "n_dir", 1) == 2)}


def language_model_learner(data: TextLMDataBunch, arch: Any = None, config: dict | None = None,
                           drop_mult: float = 1.0, pretrained: bool = True,
                           pretrained_fnames: Sequence[str] | None = None, pretrained_model: Any = None,
                           **learn_kwargs: Any) -> LanguageLearner:
    """An AWD-LSTM language model on `data`; with `pretrained`, its weights come from a pretrained
    model (WT103 when it can be had, else deftly's own model pretrained on public-domain English;
    see `deftly.text.pretrained`), rows matched to this data's vocabulary, and the learner starts
    frozen but for the embeddings and decoder. `pretrained_model=URLs.WT103` is accepted (v1)."""
    if not isinstance(data, TextLMDataBunch):
        raise ConfigError(f"language_model_learner needs language-model data (label_for_lm), got {type(data).__name__}")
    arch = text_models.AWD_LSTM if arch is None else arch
    vocab = data.vocab
    meta = text_models.get_text_arch(arch)
    use_pretrained = pretrained or pretrained_model is not None or pretrained_fnames is not None
    wgts = None
    if use_pretrained:
        path = Path(learn_kwargs.get("path") or data.path)
        wgts, itos, source = _pretrained_lm(arch, pretrained_fnames, path, Path(learn_kwargs.get("model_dir", "models")))
        if config is None:  # the model takes the pretrained model's size (deftly's own is smaller than WT103's)
            config = _sized(meta.lm_config, source)
    model = text_models.get_language_model(arch, len(vocab), config=config, drop_mult=drop_mult)
    learn = LanguageLearner(data, model, split_func=meta.lm_split, loss_func=CrossEntropyFlat(), **learn_kwargs)
    if wgts is not None:
        from deftly.text.pretrained import match_embeds

        wgts = match_embeds(wgts, itos, vocab.itos)
        try:
            model.load_state_dict(wgts)
        except RuntimeError as e:
            raise ExportError(f"the pretrained language model does not fit this architecture and config: {e}") from e
        learn.freeze()
    return learn


def text_classifier_learner(data: TextClasDataBunch, arch: Any = None, bptt: int = 70, max_len: int = 20 * 70,
                            config: dict | None = None, pretrained: bool = True, drop_mult: float = 1.0,
                            lin_ftrs: Sequence[int] | None = None, ps: Sequence[float] | None = None,
                            **learn_kwargs: Any) -> RNNLearner:
    """An AWD-LSTM classifier on `data`: the encoder reads documents in `bptt` chunks (gradients for
    the last `max_len` tokens), a concat-pooling head classifies. Load a fine-tuned encoder with
    `learn.load_encoder(name)`; the learner then trains the head only until `freeze_to`/`unfreeze`."""
    if not isinstance(data, TextClasDataBunch):
        raise ConfigError(f"text_classifier_learner needs classifier data (labelled texts), got {type(data).__name__}")
    if data.c is None:
        raise ConfigError("the data has no classes: label it (label_from_df, label_from_folder, ...)")
    arch = text_models.AWD_LSTM if arch is None else arch
    meta = text_models.get_text_arch(arch)

    def build(cfg: dict[str, Any] | None) -> nn.Module:
        return text_models.get_text_classifier(arch, len(data.vocab), data.c, bptt=bptt, max_len=max_len, config=cfg,
                                               drop_mult=drop_mult, lin_ftrs=lin_ftrs, ps=ps,
                                               pad_idx=getattr(data, "pad_idx", 1))

    learn = RNNLearner(data, build(config), split_func=meta.clas_split, **learn_kwargs)
    if config is None:
        def rebuild(size: dict[str, Any]) -> None:
            """Give the classifier the size of the encoder being loaded (its dropouts stay)."""
            learn.model = build(_sized(meta.clas_config, size)).to(data.device)
            learn.layer_groups = meta.clas_split(learn.model)
            learn.opt = None

        learn._rebuild = rebuild
    return learn


class TextClassificationInterpretation(ClassificationInterpretation):
    """Classifier interpretation with the texts: `show_top_losses(k)` lists the worst-predicted
    documents with prediction, actual label, loss and probability."""

    def show_top_losses(self, k: int = 5, max_len: int = 70) -> None:
        from deftly.train.progress import in_notebook
        import pandas as pd

        losses, idxs = self.top_losses(k)
        ds = self.learn.data.dl(self.ds_type).dataset
        rows = []
        for loss, i in zip(losses, idxs):
            i = int(i)
            text = ds.x.get(i).text
            pred = int(self.preds[i].argmax())
            rows.append({"text": " ".join(text.split(" ")[:max_len]), "prediction": ds.y.classes[pred],
                         "actual": str(ds.y.get(i)), "loss": round(float(loss), 2),
                         "probability": round(float(self.preds[i][pred]), 2)})
        df = pd.DataFrame(rows)
        if in_notebook():
            from IPython.display import display

            display(df)
        else:
            print(df.to_string(index=False))
