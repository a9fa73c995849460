"""Pretrained language-model weights: fastai's published WikiText-103 AWD-LSTM, converted safely, and
deftly's own pretrained LMs, stored as safetensors + JSON (never pickle).

    state, itos = convert_fastai_wt103("lstm_fwd.pth", "itos_wt103.pkl")   # from wt103-fwd.tgz
    state = match_embeds(state, itos, data.vocab.itos)                    # rows for the new vocabulary
    model.load_state_dict(state)

fastai's vocabulary file is a pickle: `read_itos_pickle` reads it with an unpickler that resolves no
class or function at all, so only plain data (a list of strings) can come out of it, and nothing in
the file can run. The weights are read with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from deftly.core.errors import ExportError

__all__ = ["PretrainedLM", "RestrictedUnpickler", "convert_fastai_lm_state", "convert_fastai_wt103",
           "default_pretrained_lm", "load_fastai_weights", "load_pretrained_files", "load_pretrained_lm",
           "match_embeds", "own_lm_path", "read_itos_pickle", "save_pretrained_lm"]

StateDict = dict[str, torch.Tensor]

FORMAT = "deftly.text.lm/1"
ENC_KEY, ENC_DP_KEY = "0.encoder.weight", "0.encoder_dp.emb.weight"
_SCALE = "__row_scale__."  # safetensors key prefix of the per-row scales of int8 matrices
DEC_KEY, DEC_BIAS_KEY = "1.decoder.weight", "1.decoder.bias"


# ---------------------------------------------------------------------------------- safe reading


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global (class, function) and persistent id: it can build only
    plain data (lists, dicts, strings, numbers), so no code in the file can run."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only plain lists of strings are accepted")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused a persistent id: only plain lists of strings are accepted")


def read_itos_pickle(path: str | os.PathLike) -> list[str]:
    """The vocabulary (a list of str) in fastai's `itos_*.pkl`, read with `RestrictedUnpickler`;
    ExportError for anything else (a class, a function call, a dict, a damaged file)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ExportError(f"cannot read the vocabulary file {path}: {e}") from e
    try:
        itos = RestrictedUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as e:
        raise ExportError(f"{path} is not a plain pickled list of strings ({e}); it was not loaded") from e
    except Exception as e:  # a damaged or truncated pickle raises many types (EOFError, ValueError, ...)
        raise ExportError(f"{path} is not a readable pickled vocabulary ({type(e).__name__}: {e})") from e
    if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
        raise ExportError(f"{path} holds a {type(itos).__name__}, not a list of strings (the vocabulary)")
    if not itos:
        raise ExportError(f"{path} holds an empty vocabulary")
    return itos


def load_fastai_weights(path: str | os.PathLike) -> StateDict:
    """A fastai language-model state dict from a .pth file, read with `torch.load(weights_only=True)`
    (fastai's `{'model': ..., 'opt': ...}` checkpoints are unwrapped)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for damaged or unsafe files
        raise ExportError(f"cannot read the weights file {path} safely: {type(e).__name__}: {e}") from e
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ExportError(f"{path} does not hold a state dict of tensors")
    return dict(state)


# ---------------------------------------------------------------------------------- key renaming


def convert_fastai_lm_state(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Rename a fastai AWD-LSTM language model's state dict to deftly's module names.

    fastai v1 and v2 use deftly's names already (`0.encoder.weight`, `0.encoder_dp.emb.weight`,
    `0.rnns.{i}.weight_hh_l0_raw`, `0.rnns.{i}.module.weight_ih_l0`, `...bias_ih_l0`, `...bias_hh_l0`,
    `1.decoder.weight`, `1.decoder.bias`); v1 also saved the dropped copy `0.rnns.{i}.module.weight_hh_l0`,
    which is left out. fastai 0.7's names (`0.encoder_with_dropout.embed.weight`,
    `0.rnns.{i}.module.weight_hh_l0_raw`) are mapped too. A missing `0.encoder_dp.emb.weight` is
    filled from `0.encoder.weight` (the same embedding).
    """
    out: StateDict = {}
    for key, value in state.items():
        parts = key.split(".")
        if key.endswith("encoder_with_dropout.embed.weight"):
            key = key.replace("encoder_with_dropout.embed.weight", "encoder_dp.emb.weight")
        elif len(parts) >= 2 and parts[-2] == "module" and parts[-1].endswith("_raw"):  # 0.7: rnns.i.module.w_raw
            key = ".".join(parts[:-2] + parts[-1:])
        elif len(parts) >= 2 and parts[-2] == "module" and parts[-1].startswith("weight_hh_l") and (
                ".".join(parts[:-2] + [parts[-1] + "_raw"]) in state or f"{key}_raw" in state):
            continue  # v1's dropped copy of the raw weight
        out[key] = value
    if ENC_KEY in out and ENC_DP_KEY not in out:
        out[ENC_DP_KEY] = out[ENC_KEY]
    return out


def convert_fastai_wt103(weights_path: str | os.PathLike, itos_path: str | os.PathLike) -> tuple[StateDict, list[str]]:
    """fastai's WT103 AWD-LSTM (`lstm_fwd.pth`, `itos_wt103.pkl` from `wt103-fwd.tgz`) as a deftly state
    dict for `get_language_model(AWD_LSTM, len(itos))` and its vocabulary."""
    state = convert_fastai_lm_state(load_fastai_weights(weights_path))
    itos = read_itos_pickle(itos_path)
    if ENC_KEY not in state:
        raise ExportError(f"{weights_path} is not an AWD-LSTM language model (no {ENC_KEY!r})")
    if state[ENC_KEY].size(0) != len(itos):
        raise ExportError(f"the weights have {state[ENC_KEY].size(0)} embedding rows but the vocabulary "
                          f"{itos_path} has {len(itos)} tokens: they do not belong together")
    return state, itos


def match_embeds(old_wgts: Mapping[str, torch.Tensor], old_itos: Sequence[str], new_itos: Sequence[str]) -> StateDict:
    """Adapt LM weights to a new vocabulary (v1's `convert_weights`): each word of `new_itos` found in
    `old_itos` keeps its embedding row (and decoder bias), every other word gets the mean row; the
    encoder, its dropout copy and the decoder get the same new matrix. Other weights are unchanged."""
    if ENC_KEY not in old_wgts:
        raise ExportError(f"these weights have no {ENC_KEY!r}: not an AWD-LSTM language model")
    enc = old_wgts[ENC_KEY]
    if enc.size(0) != len(old_itos):
        raise ExportError(f"the weights have {enc.size(0)} embedding rows for a vocabulary of {len(old_itos)}")
    old_stoi = {w: i for i, w in enumerate(old_itos)}
    idx = torch.tensor([old_stoi.get(w, -1) for w in new_itos], dtype=torch.long)
    known = idx >= 0

    def remap(t: torch.Tensor) -> torch.Tensor:
        new = t.mean(0, keepdim=True).expand(len(new_itos), *t.shape[1:]).clone()
        new[known] = t[idx[known]]
        return new

    out = dict(old_wgts)
    new_w = remap(enc)
    out[ENC_KEY] = new_w
    if ENC_DP_KEY in old_wgts:
        out[ENC_DP_KEY] = new_w.clone()
    if DEC_KEY in old_wgts:
        out[DEC_KEY] = new_w.clone()
    if DEC_BIAS_KEY in old_wgts:
        out[DEC_BIAS_KEY] = remap(old_wgts[DEC_BIAS_KEY])
    return out


# ------------------------------------------------------------------------ deftly's own format


class PretrainedLM:
    """A pretrained language model as stored: its state dict, vocabulary, architecture name and config."""

    def __init__(self, state: StateDict, itos: list[str], arch: str, config: dict[str, Any]):
        self.state, self.itos, self.arch, self.config = state, itos, arch, config

    def __repr__(self) -> str:
        return f"PretrainedLM({self.arch}, {len(self.itos)} tokens, config={self.config})"


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_pretrained_lm(path: str | os.PathLike, model: nn.Module | Mapping[str, torch.Tensor], itos: Sequence[str],
                       config: Mapping[str, Any], arch: str = "AWD_LSTM", dtype: torch.dtype | None = None) -> Path:
    """Write a language model as `<path>.safetensors` (weights; tied tensors stored once) and
    `<path>.json` (format, arch, config, itos, which keys alias which). `dtype` float16 halves the
    floats; int8 stores each matrix row as int8 with a float32 scale (a quarter of the bytes) and
    other floats as float16. Loading always gives float32. Returns the weights path."""
    from safetensors.torch import save_file

    from deftly.train.checkpoint import atomic_write

    wpath, jpath = _paths(path)
    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for key, t in state.items():
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and ident in seen:
            aliases[key] = seen[ident]
            continue
        seen[ident] = key
        t = t.detach().to("cpu")
        if dtype == torch.int8 and t.is_floating_point() and t.ndim == 2:
            scale = (t.abs().amax(dim=1) / 127).clamp_min(1e-12)  # per row: the largest value maps to 127
            tensors[key] = torch.round(t / scale[:, None]).to(torch.int8).contiguous()
            tensors[_SCALE + key] = scale.to(torch.float32).contiguous()
            continue
        if dtype is not None and t.is_floating_point():
            t = t.to(torch.float16 if dtype == torch.int8 else dtype)  # loading gives float32 back
        tensors[key] = t.contiguous().clone()
    try:
        json.dumps(dict(config))
    except TypeError as e:
        raise ExportError(f"the config must be plain JSON data (numbers, strings, lists): {e}") from e
    meta = {"format": FORMAT, "arch": arch, "config": dict(config), "itos": list(itos), "aliases": aliases}
    atomic_write(wpath, lambda tmp: save_file(tensors, str(tmp), metadata={"format": FORMAT}))
    atomic_write(jpath, lambda tmp: tmp.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8"))
    return wpath


def load_pretrained_lm(path: str | os.PathLike) -> PretrainedLM:
    """Read what `save_pretrained_lm` wrote (`path` with or without a suffix); never unpickles."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    wpath, jpath = _paths(path)
    if not wpath.is_file() or not jpath.is_file():
        raise ExportError(f"a pretrained LM needs both {wpath.name} and {jpath.name} in {wpath.parent}")
    try:
        meta = json.loads(jpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{jpath} is not a readable pretrained-LM description ({e})") from e
    found = meta.get("format") if isinstance(meta, dict) else None
    if found != FORMAT:
        raise ExportError(f"{jpath} is not a deftly pretrained LM (format {found!r}, expected {FORMAT!r})")
    itos, config, aliases = meta.get("itos"), meta.get("config"), meta.get("aliases", {})
    if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
        raise ExportError(f"{jpath}: 'itos' must be a list of strings")
    if not isinstance(config, dict) or not isinstance(aliases, dict):
        raise ExportError(f"{jpath}: 'config' and 'aliases' must be objects")
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as e:
        raise ExportError(f"{wpath} is not a readable safetensors file ({e})") from e
    scales = {k[len(_SCALE):]: state.pop(k) for k in [k for k in state if k.startswith(_SCALE)]}
    for key, scale in scales.items():  # int8 rows back to float32
        if key not in state or state[key].dtype != torch.int8 or state[key].shape[:1] != scale.shape:
            raise ExportError(f"{wpath}: the row scales of {key!r} do not fit its weights")
        state[key] = state[key].float() * scale.float()[:, None]
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    for key, target in aliases.items():
        if target not in state:
            raise ExportError(f"{jpath}: alias {key!r} points at missing tensor {target!r}")
        state[key] = state[target]
    return PretrainedLM(state, itos, str(meta.get("arch", "AWD_LSTM")), config)


# ----------------------------------------------------------------------- finding a pretrained LM

#: where `scripts/pretrain_lm.py` caches deftly's own English language model (under $DEFTLY_HOME/models)
OWN_LM_NAME = "deftly_awd_lstm_en"


def own_lm_path() -> Path:
    """The cache path (without suffix) of deftly's own pretrained English AWD-LSTM."""
    from deftly.core.paths import deftly_home

    return deftly_home() / "models" / OWN_LM_NAME


#: the copy of deftly's own English LM that ships inside the package (float16), if any
SHIPPED_LM = Path(__file__).parent / "weights" / OWN_LM_NAME


def load_pretrained_files(folder: str | os.PathLike, weights: str,
                          vocab: str) -> tuple[StateDict, list[str], dict[str, Any] | None]:
    """A language model from files in `folder` (v1's `pretrained_fnames`): fastai's
    `weights.pth` + `vocab.pkl` (converted safely; v1's default size), or deftly's own
    `weights.safetensors` + `.json` (with its config). Returns (state, itos, config or None)."""
    folder = Path(folder)
    own = folder / f"{weights}.safetensors"
    if own.is_file():
        lm = load_pretrained_lm(own)
        return lm.state, lm.itos, lm.config
    wpath = folder / (weights if weights.endswith(".pth") else f"{weights}.pth")
    ipath = folder / (vocab if vocab.endswith(".pkl") else f"{vocab}.pkl")
    for p in (wpath, ipath):
        if not p.is_file():
            raise ExportError(f"no pretrained weights file {p.name} in {folder} (pretrained_fnames names a fastai "
                              "'.pth' + '.pkl' pair, or deftly's '.safetensors' + '.json' pair, without suffixes)")
    return (*convert_fastai_wt103(wpath, ipath), None)


def default_pretrained_lm(arch: Any = "AWD_LSTM") -> tuple[StateDict, list[str], dict[str, Any] | None]:
    """The pretrained English LM for `arch`: fastai's WT103 weights when they can be downloaded
    (online; v1's size, config None), else deftly's own model pretrained on public-domain English
    by `scripts/pretrain_lm.py` (with its config); a clear error saying what to do when neither is
    there."""
    from deftly.datasets.download import offline
    from deftly.text.models import get_text_arch

    meta = get_text_arch(arch)
    errors = []
    if meta.pretrained_url and not offline():
        from deftly.core.errors import DataError
        from deftly.datasets import untar_data

        try:
            folder = untar_data(meta.pretrained_url, data=False)
            pth, pkl = sorted(folder.glob("*.pth")), sorted(folder.glob("*.pkl"))
            if pth and pkl:
                return (*convert_fastai_wt103(pth[0], pkl[0]), None)
            errors.append(f"{folder} holds no .pth + .pkl pair")
        except (DataError, OSError) as e:
            errors.append(f"the WT103 download failed ({e})")
    own = own_lm_path()
    if not own.with_name(own.name + ".safetensors").is_file() and SHIPPED_LM.with_name(
            SHIPPED_LM.name + ".safetensors").is_file():
        own = SHIPPED_LM  # nothing pretrained on this machine: the copy in the package
    if own.with_name(own.name + ".safetensors").is_file():
        lm = load_pretrained_lm(own)
        if lm.arch != meta.name:
            raise ExportError(f"deftly's pretrained LM at {own} is a {lm.arch}, not a {meta.name}")
        return lm.state, lm.itos, lm.config
    why = "; ".join(errors) or "offline (DEFTLY_OFFLINE=1)"
    raise ExportError(f"no pretrained {meta.name} language model: {why}, and deftly's own is not in {own.parent}. "
                      "Run `python scripts/pretrain_lm.py` once to pretrain it on public-domain English, "
                      "or pass pretrained=False")
