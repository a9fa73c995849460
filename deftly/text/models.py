"""AWD-LSTM (Merity et al. 2017) as fastai v1 builds it for ULMFiT: the encoder, the language-model
decoder, the classifier over long documents, their v1 configurations and layer-group splits.

    lm = get_language_model(AWD_LSTM, vocab_sz, drop_mult=0.3)        # SequentialRNN(AWD_LSTM, LinearDecoder)
    decoded, raw_outputs, outputs = lm(ids)                            # ids: (bs, seq) token ids
    clas = get_text_classifier(AWD_LSTM, vocab_sz, n_class=2)          # SequentialRNN(MultiBatchEncoder, head)
    logits, raw_outputs, outputs = clas(padded_ids)
    groups = awd_lstm_lm_split(lm)                                     # layer groups for Learner(layer_groups=)

Module and parameter names follow v1 (`0.encoder.weight`, `0.rnns.0.weight_hh_l0_raw`,
`0.rnns.0.module.weight_ih_l0`, `1.decoder.weight`, ...), so v1 state dicts load after a small renaming
(`deftly.text.pretrained`).

Padding: the classifier accepts padding on either side of a document (v1 pads first); it takes the
real tokens of each row, runs them from a zero hidden state, and pools over them only, so a document
gives the same output whatever padding its batch added.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deftly.core.errors import ConfigError
from deftly.train.layers import bn_drop_lin

__all__ = [
    "AWD_LSTM", "EmbeddingDropout", "LinearDecoder", "MultiBatchEncoder", "PoolingLinearClassifier", "RNNDropout",
    "SequentialRNN", "TextArch", "WeightDropout", "awd_lstm_clas_config", "awd_lstm_clas_split",
    "awd_lstm_lm_config", "awd_lstm_lm_split", "dropout_mask", "get_language_model", "get_text_arch",
    "get_text_classifier", "list_text_archs", "masked_concat_pool", "register_text_arch",
]

Hidden = list[tuple[torch.Tensor, torch.Tensor]]


def dropout_mask(x: torch.Tensor, size: Sequence[int], p: float) -> torch.Tensor:
    """A mask like `x` (dtype, device) of shape `size`: 0 with probability `p`, else 1/(1-p)."""
    return x.new_empty(*size).bernoulli_(1 - p).div_(1 - p)


class RNNDropout(nn.Module):
    """Dropout on (bs, seq, features) with one mask per sequence, the same at every time step."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * dropout_mask(x.detach(), (x.size(0), 1, x.size(2)), self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class EmbeddingDropout(nn.Module):
    """Drops whole rows (words) of embedding `emb`'s matrix with probability `embed_p` in training,
    scaling the kept rows by 1/(1-embed_p): a dropped word is all zeros wherever it occurs."""

    def __init__(self, emb: nn.Embedding, embed_p: float):
        super().__init__()
        self.emb, self.embed_p = emb, float(embed_p)

    def forward(self, words: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        w = self.emb.weight
        if self.training and self.embed_p != 0:
            w = w * dropout_mask(w.detach(), (w.size(0), 1), self.embed_p)
        if scale:
            w = w * scale
        return F.embedding(words, w, self.emb.padding_idx, self.emb.max_norm, self.emb.norm_type,
                           self.emb.scale_grad_by_freq, self.emb.sparse)

    def extra_repr(self) -> str:
        return f"embed_p={self.embed_p}"


_CUDNN_COPY_WARNING = r".*weights are not part of single contiguous chunk of memory.*"


class WeightDropout(nn.Module):
    """DropConnect on `module`'s weights `layer_names` (v1's WeightDropout): the raw weights live here
    as `<name>_raw` parameters, and each forward uses a dropped copy (probability `weight_p`) in
    training and the raw weights in eval.

    For `nn.LSTM`/`nn.GRU`/`nn.RNN` the recurrence is called functionally (`torch.lstm`, ...) with the
    weights, so the wrapped module is never mutated during forward; on CUDA the weights are first laid
    out in one contiguous buffer, as cuDNN wants them. Other modules run through
    `torch.func.functional_call`.
    """

    def __init__(self, module: nn.Module, weight_p: float, layer_names: str | Sequence[str] = ("weight_hh_l0",)):
        super().__init__()
        self.module, self.weight_p = module, float(weight_p)
        self.layer_names = (layer_names,) if isinstance(layer_names, str) else tuple(layer_names)
        if isinstance(module, nn.RNNBase) and getattr(module, "proj_size", 0):
            raise ConfigError("WeightDropout does not support LSTMs with proj_size")
        for name in self.layer_names:
            w = getattr(module, name, None)
            if not isinstance(w, nn.Parameter):
                raise ConfigError(f"{type(module).__name__} has no parameter {name!r} to drop")
            self.register_parameter(f"{name}_raw", nn.Parameter(w.detach().clone()))
            setattr(module, name, None)  # the raw copy above is the only parameter now

    def _weights(self) -> dict[str, torch.Tensor]:
        out = {}
        for name in self.layer_names:
            raw = getattr(self, f"{name}_raw")
            out[name] = F.dropout(raw, p=self.weight_p, training=True) if self.training and self.weight_p else raw
        return out

    def _rnn_weight_names(self) -> list[str]:
        m = self.module
        names = []
        for layer in range(m.num_layers):
            for suffix in ("", "_reverse")[: 2 if m.bidirectional else 1]:
                kinds = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if m.bias else ())
                names += [f"{k}_l{layer}{suffix}" for k in kinds]
        return names

    def _rnn_forward(self, input: torch.Tensor, hx: Any, dropped: dict[str, torch.Tensor]) -> Any:
        m = self.module
        ws = [dropped[n] if n in dropped else getattr(m, n) for n in self._rnn_weight_names()]
        cuda = ws[0].is_cuda and torch.backends.cudnn.enabled
        if cuda and len({w.dtype for w in ws}) == 1:
            flat = torch.cat([w.reshape(-1) for w in ws])  # one chunk: cuDNN needs no hidden copy
            ws = [p.view_as(w) for p, w in zip(torch.split(flat, [w.numel() for w in ws]), ws)]
        batch_first = m.batch_first
        bs = input.size(0 if batch_first else 1)
        n_dir = 2 if m.bidirectional else 1
        if hx is None:
            zeros = input.new_zeros(m.num_layers * n_dir, bs, m.hidden_size)
            hx = (zeros, zeros) if isinstance(m, nn.LSTM) else zeros
        args = (m.bias, m.num_layers, float(m.dropout), self.training, m.bidirectional, batch_first)
        with warnings.catch_warnings():
            if cuda:  # in case a cuDNN version lays weights out with gaps: the copy it makes is harmless
                warnings.filterwarnings("ignore", message=_CUDNN_COPY_WARNING, category=UserWarning)
            if isinstance(m, nn.LSTM):
                out, h, c = torch.lstm(input, tuple(hx), ws, *args)
                return out, (h, c)
            if isinstance(m, nn.GRU):
                return torch.gru(input, hx, ws, *args)
            fn = torch.rnn_tanh if m.nonlinearity == "tanh" else torch.rnn_relu
            return fn(input, hx, ws, *args)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        dropped = self._weights()
        if isinstance(self.module, nn.RNNBase):
            if kwargs or len(args) > 2 or not isinstance(args[0], torch.Tensor):
                raise ConfigError("WeightDropout over an RNN takes (input, hx) with a padded (not packed) input")
            return self._rnn_forward(args[0], args[1] if len(args) > 1 else None, dropped)
        return torch.func.functional_call(self.module, dropped, args, kwargs, strict=False)

    def extra_repr(self) -> str:
        return f"weight_p={self.weight_p}, layer_names={list(self.layer_names)}"


class AWD_LSTM(nn.Module):
    """AWD-LSTM encoder: embedding (`emb_sz`), `n_layers` LSTMs (`n_hid` units, the last `emb_sz`) with
    weight-dropped hidden-to-hidden weights, embedding/input/hidden dropout.

    `forward(ids)` takes (bs, seq) token ids and returns `(raw_outputs, outputs)`, one (bs, seq, n)
    tensor per layer before and after its hidden dropout (the last layer has none). The hidden state
    carries over to the next call, detached (truncated BPTT); `reset()` zeroes it. When the batch size
    changes, the state keeps its first rows or gains zero rows (fastai v2's rule).
    """

    initrange = 0.1

    def __init__(self, vocab_sz: int, emb_sz: int = 400, n_hid: int = 1152, n_layers: int = 3, pad_token: int = 1,
                 hidden_p: float = 0.2, input_p: float = 0.6, embed_p: float = 0.1, weight_p: float = 0.5,
                 bidir: bool = False, qrnn: bool = False):
        super().__init__()
        if qrnn:
            raise ConfigError("deftly's AWD_LSTM has no QRNN variant: use qrnn=False")
        if n_layers < 1:
            raise ConfigError(f"AWD_LSTM needs at least one layer, got n_layers={n_layers}")
        self.vocab_sz, self.emb_sz, self.n_hid, self.n_layers = vocab_sz, emb_sz, n_hid, n_layers
        self.n_dir = 2 if bidir else 1
        self.bs = 1
        self.encoder = nn.Embedding(vocab_sz, emb_sz, padding_idx=pad_token)
        self.encoder_dp = EmbeddingDropout(self.encoder, embed_p)
        self.rnns = nn.ModuleList([
            WeightDropout(nn.LSTM(emb_sz if i == 0 else n_hid, self._n_out(i) // self.n_dir, 1, batch_first=True,
                                  bidirectional=bidir), weight_p)
            for i in range(n_layers)])
        with torch.no_grad():
            self.encoder.weight.uniform_(-self.initrange, self.initrange)
        self.input_dp = RNNDropout(input_p)
        self.hidden_dps = nn.ModuleList([RNNDropout(hidden_p) for _ in range(n_layers)])
        self.hidden: Hidden | None = None

    def _n_out(self, layer: int) -> int:
        return self.n_hid if layer != self.n_layers - 1 else self.emb_sz

    def _zeros(self, layer: int, bs: int, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(self.n_dir, bs, self._n_out(layer) // self.n_dir)

    def _hidden_for(self, bs: int, like: torch.Tensor) -> Hidden:
        """The carried state fitted to batch size `bs`, on `like`'s device and dtype."""
        if self.hidden is None or self.hidden[0][0].device != like.device:
            return [(self._zeros(i, bs, like), self._zeros(i, bs, like)) for i in range(self.n_layers)]
        out = []
        for i, (h, c) in enumerate(self.hidden):
            h, c = h.to(like.dtype), c.to(like.dtype)
            cur = h.size(1)
            if bs < cur:
                h, c = h[:, :bs].contiguous(), c[:, :bs].contiguous()
            elif bs > cur:
                pad = self._zeros(i, bs - cur, like)
                h, c = torch.cat([h, pad], 1), torch.cat([c, pad], 1)
            out.append((h, c))
        return out

    def forward(self, input: torch.Tensor,
                from_embeddings: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        bs = input.size(0)
        emb = input if from_embeddings else self.encoder_dp(input)
        hidden = self._hidden_for(bs, self.encoder.weight)
        raw_output = self.input_dp(emb)
        new_hidden, raw_outputs, outputs = [], [], []
        for i, (rnn, hid_dp) in enumerate(zip(self.rnns, self.hidden_dps)):
            raw_output, (h, c) = rnn(raw_output, hidden[i])
            new_hidden.append((h.detach(), c.detach()))
            raw_outputs.append(raw_output)
            if i != self.n_layers - 1:
                raw_output = hid_dp(raw_output)
            outputs.append(raw_output)
        self.hidden, self.bs = new_hidden, bs
        return raw_outputs, outputs

    def reset(self) -> None:
        """Forget the hidden state: the next call starts from zeros."""
        self.hidden = None

    def select_hidden(self, idxs: torch.Tensor | Sequence[int]) -> None:
        """Keep the hidden state of batch rows `idxs` only (beam search)."""
        if self.hidden is not None:
            idx = torch.as_tensor(idxs, device=self.hidden[0][0].device, dtype=torch.long)
            self.hidden = [(h[:, idx].contiguous(), c[:, idx].contiguous()) for h, c in self.hidden]
            self.bs = len(idx)


class LinearDecoder(nn.Module):
    """Output dropout and a linear layer to vocabulary logits, its weight tied to `tie_encoder`'s
    when given; takes the encoder's (raw_outputs, outputs), returns (logits, raw_outputs, outputs)."""

    initrange = 0.1

    def __init__(self, n_out: int, n_hid: int, output_p: float, tie_encoder: nn.Module | None = None,
                 bias: bool = True):
        super().__init__()
        self.decoder = nn.Linear(n_hid, n_out, bias=bias)
        with torch.no_grad():
            self.decoder.weight.uniform_(-self.initrange, self.initrange)
            if bias:
                self.decoder.bias.zero_()
        self.output_dp = RNNDropout(output_p)
        if tie_encoder is not None:
            self.decoder.weight = tie_encoder.weight

    def forward(self, input: tuple[list[torch.Tensor], list[torch.Tensor]]) -> tuple[torch.Tensor, list, list]:
        raw_outputs, outputs = input[0], input[1]
        return self.decoder(self.output_dp(outputs[-1])), raw_outputs, outputs


class SequentialRNN(nn.Sequential):
    """nn.Sequential whose `reset()` resets every child that has one (the hidden states)."""

    def reset(self) -> None:
        for c in self.children():
            if hasattr(c, "reset"):
                c.reset()


# ------------------------------------------------------------------------------------ classifier


class MultiBatchEncoder(nn.Module):
    """Runs `module` (an AWD_LSTM) over long padded documents in chunks of `bptt` tokens, carrying the
    hidden state from chunk to chunk.

    Padding (`pad_idx`) may be on either side (v1 pads first); each row's real tokens are run from a
    zero state, so padding never reaches them. Only the last `max_len` tokens of each document are
    kept (and get gradients; earlier chunks only warm up the state, without autograd).

    Returns `(raw_outputs, outputs, mask)`: per layer a (bs, K, n) tensor holding each document's kept
    tokens from position 0 (K = min(longest document, max_len)), zeros after them, and `mask`
    (bs, K), True where there is no token (padding).
    """

    def __init__(self, bptt: int, max_len: int, module: nn.Module, pad_idx: int = 1):
        super().__init__()
        if bptt < 1 or max_len < 1:
            raise ConfigError(f"bptt and max_len must be positive, got bptt={bptt}, max_len={max_len}")
        self.bptt, self.max_len, self.module, self.pad_idx = bptt, max_len, module, pad_idx

    def reset(self) -> None:
        if hasattr(self.module, "reset"):
            self.module.reset()

    def forward(self, input: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        bs = input.size(0)
        pad = input == self.pad_idx
        lengths = (~pad).sum(1)
        # real tokens first, in order (a stable sort of the padding flags), then the longest rows first,
        # so the rows still running in a chunk are always the first ones
        tokens = input.gather(1, torch.sort(pad.to(torch.int8), dim=1, stable=True).indices)
        lens_sorted, perm = torch.sort(lengths, descending=True, stable=True)
        tokens = tokens[perm]
        lens = lens_sorted.tolist()
        longest = lens[0] if bs else 0
        k = max(1, min(longest, self.max_len))
        starts_t = (lens_sorted - self.max_len).clamp(min=0)
        starts = starts_t.tolist()
        self.reset()
        rows_all: list[torch.Tensor] = []
        cols_all: list[torch.Tensor] = []
        raws: list[list[torch.Tensor]] = []
        outs: list[list[torch.Tensor]] = []
        shapes: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
        for i in range(0, longest, self.bptt):
            n = sum(1 for length in lens if length > i)
            c = min(self.bptt, longest - i)
            keep = any(i + c > starts[r] for r in range(n))
            with torch.set_grad_enabled(keep and torch.is_grad_enabled()):
                r_out, o_out = self.module(tokens[:n, i:i + c])
            if not keep:
                continue
            pos = torch.arange(i, i + c, device=input.device)
            valid = (pos[None] >= starts_t[:n, None]) & (pos[None] < lens_sorted[:n, None])
            rows, cols = valid.nonzero(as_tuple=True)
            rows_all.append(perm[rows])
            cols_all.append(pos[cols] - starts_t[rows])
            raws.append([r[rows, cols] for r in r_out])
            outs.append([o[rows, cols] for o in o_out])
        if not raws:  # every document is empty: run one padding step for the output sizes
            with torch.no_grad():
                shapes.append(self.module(input[:, :1]))
            self.reset()
        mask = torch.arange(k, device=input.device)[None] >= lengths.clamp(max=self.max_len)[:, None]
        if not raws:
            zeros = [[x.new_zeros(bs, k, x.size(-1)) for x in group] for group in shapes[0]]
            return zeros[0], zeros[1], mask
        rows_cat, cols_cat = torch.cat(rows_all), torch.cat(cols_all)

        def place(pieces: list[list[torch.Tensor]]) -> list[torch.Tensor]:
            res = []
            for layer in range(len(pieces[0])):
                vals = torch.cat([p[layer] for p in pieces])
                res.append(vals.new_zeros(bs, k, vals.size(-1)).index_put((rows_cat, cols_cat), vals))
            return res

        return place(raws), place(outs), mask


def masked_concat_pool(output: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[last real time step, max pool, mean pool] of `output` (bs, seq, n) over the positions where
    `mask` (bs, seq) is False, wherever the padding is; an all-padding row pools to zeros."""
    real = ~mask
    lengths = real.sum(1)
    empty = (lengths == 0)[:, None]
    pos = torch.arange(mask.size(1), device=mask.device)[None].expand_as(mask)
    last_pos = torch.where(real, pos, torch.full_like(pos, -1)).max(1).values.clamp(min=0)
    last = output[torch.arange(output.size(0), device=output.device), last_pos]
    m3 = mask[:, :, None]
    avg = output.masked_fill(m3, 0).sum(1) / lengths.clamp(min=1)[:, None].to(output.dtype)
    mx = output.masked_fill(m3, float("-inf")).max(1).values
    zero = output.new_zeros(())
    return torch.cat([torch.where(empty, zero, last), torch.where(empty, zero, mx), avg], 1)


class PoolingLinearClassifier(nn.Module):
    """The classifier head: concat pooling ([last, max, mean] over the real tokens, see
    `masked_concat_pool`) then BatchNorm/Dropout/Linear blocks `layers[0] -> ... -> layers[-1]` with
    dropouts `drops` (ReLU between blocks). Takes (raw_outputs, outputs, mask), returns
    (logits, raw_outputs, outputs)."""

    def __init__(self, layers: Sequence[int], drops: Sequence[float]):
        super().__init__()
        layers, drops = list(layers), list(drops)
        if len(drops) != len(layers) - 1:
            raise ConfigError(f"a head with layer sizes {layers} needs {len(layers) - 1} dropout values, "
                              f"got {len(drops)}: {drops}")
        mods: list[nn.Module] = []
        for i, (n_in, n_out, p) in enumerate(zip(layers[:-1], layers[1:], drops)):
            actn = nn.ReLU(inplace=True) if i < len(layers) - 2 else None
            mods += bn_drop_lin(n_in, n_out, p=p, actn=actn)
        self.layers = nn.Sequential(*mods)

    def forward(self, input: tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor],
                ) -> tuple[torch.Tensor, list, list]:
        raw_outputs, outputs, mask = input
        return self.layers(masked_concat_pool(outputs[-1], mask)), raw_outputs, outputs


# --------------------------------------------------------------------------- configs and splits

#: v1's language-model configuration (dropouts scaled by `drop_mult`).
awd_lstm_lm_config: dict[str, Any] = dict(
    emb_sz=400, n_hid=1152, n_layers=3, pad_token=1, bidir=False, output_p=0.1, hidden_p=0.15, input_p=0.25,
    embed_p=0.02, weight_p=0.2, tie_weights=True, out_bias=True)
#: v1's classifier configuration (dropouts scaled by `drop_mult`).
awd_lstm_clas_config: dict[str, Any] = dict(
    emb_sz=400, n_hid=1152, n_layers=3, pad_token=1, bidir=False, output_p=0.4, hidden_p=0.3, input_p=0.4,
    embed_p=0.05, weight_p=0.5)


def _encoder_of(model: nn.Module) -> AWD_LSTM:
    enc = model[0]
    enc = enc.module if isinstance(enc, MultiBatchEncoder) else enc
    if not all(hasattr(enc, a) for a in ("encoder", "encoder_dp", "rnns", "hidden_dps")):
        raise ConfigError(f"expected an AWD_LSTM as the model's first part, got {type(enc).__name__}")
    return enc


def awd_lstm_lm_split(model: nn.Module) -> list[nn.Module]:
    """Layer groups of an AWD-LSTM language model: each RNN (with its dropout), then the embedding
    and the decoder together (their weights are tied)."""
    enc = _encoder_of(model)
    groups = [nn.ModuleList([rnn, dp]) for rnn, dp in zip(enc.rnns, enc.hidden_dps)]
    return groups + [nn.ModuleList([enc.encoder, enc.encoder_dp, model[1]])]


def awd_lstm_clas_split(model: nn.Module) -> list[nn.Module]:
    """Layer groups of an AWD-LSTM classifier: the embedding, each RNN (with its dropout), the head."""
    enc = _encoder_of(model)
    groups = [nn.ModuleList([enc.encoder, enc.encoder_dp])]
    groups += [nn.ModuleList([rnn, dp]) for rnn, dp in zip(enc.rnns, enc.hidden_dps)]
    return groups + [nn.ModuleList([model[1]])]


# ------------------------------------------------------------------------------------- registry


class TextArch:
    """A text architecture by name: the encoder class, which config key gives its output width
    (`hid_name`), v1's LM and classifier configs and layer-group splits (v1's `_model_meta`)."""

    def __init__(self, name: str, cls: type, lm_config: dict[str, Any], clas_config: dict[str, Any],
                 lm_split: Callable[[nn.Module], list[nn.Module]], clas_split: Callable[[nn.Module], list[nn.Module]],
                 hid_name: str = "emb_sz", pretrained_url: str | None = None):
        self.name, self.cls, self.hid_name = name, cls, hid_name
        self.lm_config, self.clas_config = dict(lm_config), dict(clas_config)
        self.lm_split, self.clas_split, self.pretrained_url = lm_split, clas_split, pretrained_url

    def __repr__(self) -> str:
        return f"TextArch({self.name!r})"


_TEXT_ARCHS: dict[str, TextArch] = {}


def register_text_arch(arch: TextArch) -> TextArch:
    """Make `arch` findable by its name and by its class (e.g. for export manifests)."""
    _TEXT_ARCHS[arch.name] = arch
    return arch


def list_text_archs() -> list[str]:
    """The names of the registered text architectures."""
    return sorted(_TEXT_ARCHS)


def get_text_arch(arch: str | type | TextArch) -> TextArch:
    """The registered `TextArch` for a name ('AWD_LSTM'), an encoder class (AWD_LSTM) or itself."""
    if isinstance(arch, TextArch):
        return arch
    if isinstance(arch, str):
        if arch in _TEXT_ARCHS:
            return _TEXT_ARCHS[arch]
    else:
        for a in _TEXT_ARCHS.values():
            if a.cls is arch:
                return a
    raise ConfigError(f"unknown text architecture {getattr(arch, '__name__', arch)!r}; known: {list_text_archs()} "
                      "(register your own with register_text_arch)")


register_text_arch(TextArch("AWD_LSTM", AWD_LSTM, awd_lstm_lm_config, awd_lstm_clas_config, awd_lstm_lm_split,
                            awd_lstm_clas_split, hid_name="emb_sz",
                            pretrained_url="https://s3.amazonaws.com/fast-ai-modelzoo/wt103-fwd"))


def _scaled_config(config: dict[str, Any], drop_mult: float) -> dict[str, Any]:
    config = dict(config)
    for key in config:
        if key.endswith("_p"):
            config[key] = config[key] * drop_mult
    return config


def get_language_model(arch: str | type | TextArch, vocab_sz: int, config: dict[str, Any] | None = None,
                       drop_mult: float = 1.0) -> SequentialRNN:
    """An encoder + LinearDecoder language model; every `*_p` dropout of `config` times `drop_mult`."""
    meta = get_text_arch(arch)
    spec = _spec("deftly.text.language_model", arch=meta.name, vocab_sz=int(vocab_sz),
                 config=meta.lm_config if config is None else config, drop_mult=float(drop_mult))
    config = _scaled_config(meta.lm_config if config is None else config, drop_mult)
    tie_weights, output_p, out_bias = (config.pop("tie_weights", True), config.pop("output_p", 0.1),
                                       config.pop("out_bias", True))
    init = config.pop("init", None)
    encoder = meta.cls(vocab_sz, **config)
    n_hid = config.get(meta.hid_name, getattr(encoder, meta.hid_name, None))
    decoder = LinearDecoder(vocab_sz, n_hid, output_p, tie_encoder=encoder.encoder if tie_weights else None,
                            bias=out_bias)
    model = SequentialRNN(encoder, decoder)
    model.arch_spec = spec
    return model if init is None else model.apply(init)


def _spec(name: str, config: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """How to rebuild a model (deftly.export) as plain data; an `init` function is left out (the
    exported weights replace what it did)."""
    return {"name": name, "args": [], "kwargs": dict(kwargs, config={k: v for k, v in config.items() if k != "init"})}


def get_text_classifier(arch: str | type | TextArch, vocab_sz: int, n_class: int, bptt: int = 70,
                        max_len: int = 20 * 70, config: dict[str, Any] | None = None, drop_mult: float = 1.0,
                        lin_ftrs: Sequence[int] | None = None, ps: Sequence[float] | None = None,
                        pad_idx: int = 1) -> SequentialRNN:
    """MultiBatchEncoder over the encoder + PoolingLinearClassifier head (hidden sizes `lin_ftrs`,
    default [50], dropouts `ps`, default [0.1], after the config's `output_p` on the pooled features)."""
    meta = get_text_arch(arch)
    lin_ftrs = [50] if lin_ftrs is None else list(lin_ftrs)
    ps = [0.1] if ps is None else list(ps)
    spec = _spec("deftly.text.classifier", arch=meta.name, vocab_sz=int(vocab_sz), n_class=int(n_class),
                 config=meta.clas_config if config is None else config, bptt=int(bptt), max_len=int(max_len),
                 drop_mult=float(drop_mult), lin_ftrs=[int(n) for n in lin_ftrs], ps=[float(p) for p in ps],
                 pad_idx=int(pad_idx))
    config = _scaled_config(meta.clas_config if config is None else config, drop_mult)
    init = config.pop("init", None)
    output_p = config.pop("output_p", 0.4)
    for key in ("tie_weights", "out_bias"):  # LM-only keys, harmless in a classifier config
        config.pop(key, None)
    encoder = meta.cls(vocab_sz, **config)
    n_hid = config.get(meta.hid_name, getattr(encoder, meta.hid_name, None))
    layers = [n_hid * 3, *lin_ftrs, n_class]
    model = SequentialRNN(MultiBatchEncoder(bptt, max_len, encoder, pad_idx=pad_idx),
                          PoolingLinearClassifier(layers, [output_p, *ps]))
    model.arch_spec = spec
    return model if init is None else model.apply(init)
