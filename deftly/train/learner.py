"""Learner: a model, its data, a loss, a torch optimizer and callbacks, and the fit loop.

The loop (`_fit`, `_run_train`, `_run_validate`, `_one_batch`) is meant to be read top to bottom:
for each epoch, each batch: forward, loss, backward, step, zero_grad, with a named event around
each step. Everything else (schedules, recording, progress, checkpoints, mixed precision) is a
callback.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from deftly.core.device import cpu_has_bf16, to_cpu, to_device
from deftly.core.errors import ConfigError, DataError, ExportError, TrainingError
from deftly.data.databunch import DataBunch, DatasetType
from deftly.train.callback import (
    Callback, CancelBatchException, CancelEpochException, CancelFitException, CancelStepException,
    CancelTrainException, CancelValidException, TrainState, handlers,
)
from deftly.train.callbacks import TerminateOnNaN
from deftly.train.checkpoint import load_state, save_state
from deftly.train.layers import set_trainable, split_no_wd_params
from deftly.train.losses import default_loss, loss_activation
from deftly.train.metrics import as_metric, metric_errors
from deftly.train.mixed_precision import GradScalerCallback
from deftly.train.progress import ProgressCallback
from deftly.train.recorder import Recorder
from deftly.train.schedule import LR, ConstantScheduler, OneCycleScheduler, lr_range, set_momentum
from deftly.core.device import defaults

#: v1's default optimizer: Adam with betas (0.9, 0.99); torch's AdamW gives the decoupled
#: ("true") weight decay that `true_wd=True` asks for.
Adam = partial(torch.optim.AdamW, betas=(0.9, 0.99))
AdamW = Adam
SGD = torch.optim.SGD
default_lr = 3e-3


def _opt_class(opt_func: Callable) -> Any:
    while isinstance(opt_func, partial):
        opt_func = opt_func.func
    return opt_func


def _listify(x: Any) -> list:
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


class Learner:
    """Trains `model` on `data` (v1 signature and defaults).

    `opt_func` builds a torch optimizer from param groups: two per layer group (parameters that
    take weight decay, and normalisation weights plus biases, which skip it when `bn_wd=False`).
    `true_wd=True` means decoupled weight decay (AdamW's; applied by hand for other optimizers).
    """

    def __init__(self, data: DataBunch, model: nn.Module, opt_func: Callable = Adam,
                 loss_func: Callable | None = None, metrics: Any = None, wd: float = 1e-2,
                 true_wd: bool = True, bn_wd: bool = True, train_bn: bool = True,
                 path: str | Path | None = None, model_dir: str | Path = "models",
                 callbacks: Sequence[Callback] | None = None, callback_fns: Sequence[Callable] | None = None,
                 layer_groups: Sequence[nn.Module] | None = None, progress: bool | None = None):
        self.data, self.opt_func = data, opt_func
        self.model = model.to(data.device)
        self.loss_func = loss_func if loss_func is not None else getattr(data, "loss_func", None)
        if self.loss_func is None:
            self.loss_func = default_loss(getattr(data, "loss_kind", None))
        if self.loss_func is None:
            raise ConfigError("no loss function: pass loss_func= (e.g. nn.CrossEntropyLoss()) to the Learner")
        self.metrics = _listify(metrics)
        for m in self.metrics:
            as_metric(m)  # fail now, not after the first epoch, on something that is not a metric
        self.wd, self.true_wd, self.bn_wd, self.train_bn = wd, true_wd, bn_wd, train_bn
        self.path = Path(path) if path is not None else Path(getattr(data, "path", "."))
        self.model_dir = Path(model_dir)
        self.layer_groups = list(layer_groups) if layer_groups else [self.model]
        self.callback_fns = _listify(callback_fns)
        self.recorder = Recorder(self)
        show = defaults.progress if progress is None else progress
        self.callbacks: list[Callback] = [self.recorder, TerminateOnNaN(self)]
        if show:
            self.callbacks.append(ProgressCallback(self))
        for cb in _listify(callbacks):
            self.add_cb(cb)
        self.opt: torch.optim.Optimizer | None = None
        self.state = TrainState()
        self.autocast_dtype: torch.dtype | None = None
        self._events: dict[str, list] = {}
        self._activ_cache: tuple[Any, Callable] | None = None  # (loss_func, its activation) for predict

    # --- callbacks ------------------------------------------------------------------------
    def add_cb(self, cb: Callback) -> "Learner":
        """Attach a callback for every later fit."""
        cb.learn = self
        self.callbacks.append(cb)
        return self

    def remove_cb(self, cb: Callback | type) -> "Learner":
        """Detach a callback (an instance, or every instance of a class)."""
        self.callbacks = [c for c in self.callbacks if not (c is cb or (isinstance(cb, type) and isinstance(c, cb)))]
        return self

    def _call(self, event: str) -> None:
        for handler in self._events[event]:
            handler()

    # --- optimizer and param groups ---------------------------------------------------------
    def create_opt(self, lr: LR = default_lr, wd: float | None = None) -> torch.optim.Optimizer:
        """Build the torch optimizer with one param group per layer group (two if `bn_wd=False`)."""
        cls, seen, groups = _opt_class(self.opt_func), set(), []
        for i, layer_group in enumerate(self.layer_groups):
            decay, no_decay = split_no_wd_params(layer_group, seen)
            if self.bn_wd:  # every parameter decays alike: one group is cheaper to step
                groups.append({"params": decay + no_decay, "layer_group": i, "bn_group": False})
            else:
                groups += [{"params": decay, "layer_group": i, "bn_group": False},
                           {"params": no_decay, "layer_group": i, "bn_group": True}]
        leftover = [p for p in self.model.parameters() if id(p) not in seen]
        if leftover:  # parameters outside every given layer group train with the last group
            groups.append({"params": leftover, "layer_group": len(self.layer_groups) - 1, "bn_group": False})
        groups = [g for g in groups if g["params"]]
        if not groups:
            raise ConfigError("the model has no parameters to train")
        opt_func = self.opt_func
        if not self.true_wd and isinstance(cls, type) and issubclass(cls, torch.optim.AdamW):
            # L2 regularisation asked for: torch's Adam adds weight_decay to the gradient.
            opt_func = partial(torch.optim.Adam, **(self.opt_func.keywords if isinstance(self.opt_func, partial) else {}))
            cls = torch.optim.Adam
        self._native_wd = not self.true_wd or (isinstance(cls, type) and issubclass(cls, torch.optim.AdamW))
        self.opt = opt_func(groups, lr=default_lr, **_fused_step(cls, opt_func, groups))
        self._opt_settings = (self.bn_wd, self.true_wd)
        self.set_lrs(lr_range(lr, len(self.layer_groups)))
        self.set_wd(self.wd if wd is None else wd)
        return self.opt

    def set_lrs(self, lrs: Sequence[float], mom: float | None = None) -> None:
        """Write one learning rate per layer group (and optionally the momentum) into the optimizer."""
        for group in self.opt.param_groups:
            group["lr"] = float(lrs[group["layer_group"]])
            if mom is not None:
                set_momentum(group, mom)

    def set_wd(self, wd: float) -> None:
        """Set weight decay on every param group (zero for norm/bias groups when bn_wd=False)."""
        for group in self.opt.param_groups:
            value = 0.0 if group["bn_group"] and not self.bn_wd else float(wd)
            if self._native_wd:
                group["weight_decay"] = value
            else:
                group["weight_decay"], group["true_wd"] = 0.0, value

    @torch.no_grad()
    def decay_weights(self) -> None:
        """Decoupled weight decay for optimizers that lack it, part of each step (a cancelled step
        does not decay): p <- p * (1 - lr * wd). AdamW does this itself, so nothing happens then."""
        if self._native_wd:
            return
        for group in self.opt.param_groups:
            factor = 1 - group["lr"] * group["true_wd"]
            if factor != 1:
                for p in group["params"]:
                    if p.grad is not None:
                        p.mul_(factor)

    # --- freezing -----------------------------------------------------------------------------
    def freeze_to(self, n: int) -> None:
        """Train only layer groups [n:]; earlier groups are frozen except their BatchNorm layers
        when `train_bn`. The optimizer is rebuilt at the next fit (v1)."""
        set_trainable(self.layer_groups[:n], False, self.train_bn)
        set_trainable(self.layer_groups[n:], True, self.train_bn)
        self.opt = None

    def freeze(self) -> None:
        """Train only the last layer group (the head)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Train every layer group."""
        self.freeze_to(0)

    # --- fitting ------------------------------------------------------------------------------
    def fit(self, epochs: int, lr: LR = default_lr, wd: float | None = None,
            callbacks: Sequence[Callback] | None = None) -> "Learner":
        """Train for `epochs` at constant learning rate(s) `lr` (a number or a slice)."""
        return self._fit(epochs, wd, [ConstantScheduler(lr=lr), *_listify(callbacks)])

    def fit_one_cycle(self, cyc_len: int, max_lr: LR = default_lr, moms: tuple[float, float] | None = (0.95, 0.85),
                      div_factor: float = 25.0, pct_start: float = 0.3, final_div: float | None = None,
                      wd: float | None = None, callbacks: Sequence[Callback] | None = None,
                      mom: float | tuple[float, float] | None = None) -> "Learner":
        """Train for `cyc_len` epochs with the 1cycle policy (see `OneCycleScheduler`).

        `mom=` is accepted as the course writes it: a pair means `moms`, a number a constant momentum.
        """
        if mom is not None:
            moms = tuple(mom) if isinstance(mom, (tuple, list)) else (mom, mom)
        sched = OneCycleScheduler(lr_max=max_lr, moms=moms, div_factor=div_factor,
                                  pct_start=pct_start, final_div=final_div)
        return self._fit(cyc_len, wd, [sched, *_listify(callbacks)])

    def _fit(self, n_epochs: int, wd: float | None, extra: list[Callback]) -> "Learner":
        if not isinstance(n_epochs, int) or n_epochs < 1:
            raise ConfigError(f"the number of epochs must be a positive integer, got {n_epochs!r}")
        n_iter = len(self.data.train_dl)
        if n_iter == 0:
            raise DataError("the training DataLoader yields no batches (fewer items than bs with drop_last?)")
        if self.opt is None or self._opt_settings != (self.bn_wd, self.true_wd):
            self.create_opt()
        self.set_wd(self.wd if wd is None else wd)
        active = [*self.callbacks, *(fn(self) for fn in self.callback_fns), *extra]
        for cb in active:
            cb.learn = self
        self.active_callbacks = sorted(active, key=lambda c: c.order)
        self._events = handlers(active)
        self._device = None if self.data.device.type == "cpu" else self.data.device
        s = self.state = TrainState(n_epochs=n_epochs, n_iter=n_iter, fit_start_time=time.perf_counter())
        try:
            self._call("before_fit")  # a resume callback may move s.start_epoch forward here
            s.train_iter = s.start_epoch * n_iter
            for epoch in range(s.start_epoch, n_epochs):
                s.epoch = epoch
                s.epoch_start_time = time.perf_counter()
                try:
                    self._call("before_epoch")
                    self._run_train()
                    self._run_validate()
                except CancelEpochException:
                    self._call("after_cancel_epoch")
                self._call("after_epoch")
        except CancelFitException:
            self._call("after_cancel_fit")
        self._call("after_fit")
        return self

    def _run_train(self) -> None:
        s = self.state
        self.model.train()
        s.training = True
        try:
            self._call("before_train")
            for s.iter, batch in enumerate(self.data.train_dl):
                self._one_batch(batch)
                s.train_iter += 1
        except CancelTrainException:
            self._call("after_cancel_train")
        self._call("after_train")

    def _run_validate(self) -> None:
        if self.data.valid_dl is None:
            return
        s = self.state
        self.model.eval()
        s.training = False
        try:
            self._call("before_validate")
            with torch.no_grad():
                for s.iter, batch in enumerate(self.data.valid_dl):
                    self._one_batch(batch)
        except CancelValidException:
            self._call("after_cancel_validate")
        self._call("after_validate")

    def _one_batch(self, batch: Any) -> None:
        s = self.state
        s.xb, s.yb = self._split_batch(batch)
        try:
            self._call("before_batch")
            with self._autocast():
                s.pred = self._forward(s.xb)
                self._call("after_pred")
                s.loss = self._compute_loss(s.pred, s.yb)
            self._call("after_loss")
            if s.training:
                s.loss_grad = s.loss
                self._call("before_backward")
                s.loss_grad.backward()
                self._call("after_backward")
                try:
                    self._call("before_step")
                    self.decay_weights()
                    self.opt.step()
                except CancelStepException:
                    self._call("after_cancel_step")
                self._call("after_step")
                self.opt.zero_grad(set_to_none=True)
        except CancelBatchException:
            self._call("after_cancel_batch")
        self._call("after_batch")

    def _split_batch(self, batch: Any) -> tuple[Any, Any]:
        if self._device is not None:
            batch = to_device(batch, self._device)
        try:
            xb, yb = batch
        except (TypeError, ValueError) as e:
            raise DataError(f"a batch must be a pair (inputs, targets); got {type(batch).__name__} "
                            f"of length {len(batch) if hasattr(batch, '__len__') else '?'}") from e
        return xb, yb

    def _forward(self, xb: Any) -> Any:
        return self.model(*xb) if isinstance(xb, (list, tuple)) else self.model(xb)

    def _compute_loss(self, pred: Any, yb: Any) -> torch.Tensor:
        loss = self.loss_func(pred, *yb) if isinstance(yb, (list, tuple)) else self.loss_func(pred, yb)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise TrainingError(f"the loss function must return a scalar tensor, got {shape}; "
                                "use a reduction such as 'mean'")
        return loss

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.data.device.type, dtype=self.autocast_dtype)

    # --- mixed precision ------------------------------------------------------------------------
    def to_fp16(self) -> "Learner":
        """Mixed precision: fp16 autocast with a GradScaler on CUDA; on the CPU, bf16 autocast
        (fp16 is slow there), said once as a warning."""
        if self.data.device.type != "cuda":
            warnings.warn("to_fp16: no CUDA device, so training uses bfloat16 autocast on the CPU instead",
                          stacklevel=2)
            return self.to_bf16()
        self.to_fp32()
        self.autocast_dtype = torch.float16
        return self.add_cb(GradScalerCallback())

    def to_bf16(self) -> "Learner":
        """bfloat16 autocast (no loss scaling needed); 1.8-2.5x faster for CNNs on CPUs with bf16 units,
        much slower on CPUs without them (said as a warning)."""
        if self.data.device.type == "cpu" and not cpu_has_bf16():
            warnings.warn("this CPU has no native bfloat16 support (no AVX512-BF16/AMX): bf16 autocast will run "
                          "much slower than fp32; call learn.to_fp32() to go back", stacklevel=2)
        self.to_fp32()
        self.autocast_dtype = torch.bfloat16
        return self

    def to_fp32(self) -> "Learner":
        """Back to full precision."""
        self.autocast_dtype = None
        return self.remove_cb(GradScalerCallback)

    # --- predictions -----------------------------------------------------------------------------
    def get_preds(self, ds_type: DatasetType = DatasetType.Valid, activ: Callable | None = None,
                  with_loss: bool = False) -> list[torch.Tensor]:
        """Predictions (after the loss's activation, e.g. softmax) and targets for a whole split;
        with `with_loss`, also the loss of each item."""
        activ = activ or loss_activation(self.loss_func)
        per_item = _per_item_loss(self.loss_func) if with_loss else None
        preds, targs, losses = [], [], []
        for out, yb in self._eval_outputs(self.data.dl(ds_type)):
            if per_item is not None:
                losses.append(to_cpu(per_item(out, yb).float()))
            preds.append(to_cpu(activ(out.float())))
            targs.append(to_cpu(yb))
        result = [torch.cat(preds), _cat(targs)]
        if with_loss:
            result.append(torch.cat(losses))
        return result

    def pred_batch(self, ds_type: DatasetType = DatasetType.Valid, batch: Any = None,
                   reconstruct: bool = False, activ: Callable | None = None) -> Any:
        """Predictions (after the loss's activation) for one batch: `batch`, or the first of a split;
        with `reconstruct`, as label objects (e.g. Categories)."""
        activ = activ or loss_activation(self.loss_func)
        if batch is None:
            batch = next(iter(self.data.dl(ds_type)))
        self._device = None if self.data.device.type == "cpu" else self.data.device
        xb, _ = self._split_batch(batch)
        self.model.eval()
        with torch.no_grad(), self._autocast():
            out = activ(self._forward(xb).float())
        out = to_cpu(out)
        if not reconstruct:
            return out
        y = self._label_list().y
        return [y.reconstruct(y.analyze_pred(o)) for o in out]

    def predict(self, item: Any, **kwargs: Any) -> Any:
        """Predict one item (e.g. an Image): (label object, decoded prediction, probabilities).
        No DataLoader is involved; `kwargs` go to the labels' `analyze_pred` (e.g. `thresh`).
        A list of items is predicted in one forward pass and gives a list of such tuples."""
        data = self.data
        if data.is_item_list(item):
            return self._predict_items(item, **kwargs)
        probs = self._infer(data.one_item(item))[0]
        y = self._label_list().y
        pred = y.analyze_pred(probs, **kwargs)
        return y.reconstruct(pred), pred, probs

    def _predict_items(self, items: list[Any], **kwargs: Any) -> list[tuple[Any, torch.Tensor, torch.Tensor]]:
        """`predict` on a list: one batch, one forward; a tuple per item, in order."""
        if not items:
            return []
        y = self._label_list().y
        out = []
        for probs in self._infer(self.data.items_batch(items)):
            pred = y.analyze_pred(probs, **kwargs)
            out.append((y.reconstruct(pred), pred, probs))
        return out

    #: whether `predict` runs under torch.inference_mode instead of no_grad (outputs are cloned into
    #: ordinary tensors). Off by default: it measured no faster here, and a model that keeps tensors
    #: made in forward (lazy modules, an RNN's hidden state) could not train with them afterwards.
    inference_mode: bool = False

    def _infer(self, batch: Any) -> torch.Tensor:
        """Activated outputs (CPU) for a batch already prepared on the device: eval mode, no autograd."""
        xb = batch[0]
        model = self.model
        if any(m.training for m in model.modules()):
            model.eval()
        with (torch.inference_mode() if self.inference_mode else torch.no_grad()), self._autocast():
            out = self._activation()(self._forward(xb).float())
        out = out.detach().cpu() if out.device.type != "cpu" else out
        return out.clone() if out.is_inference() else out

    def _activation(self) -> Callable:
        """The loss's activation (softmax, sigmoid, identity), looked up once per loss function."""
        cached = self._activ_cache
        if cached is None or cached[0] is not self.loss_func:
            cached = self._activ_cache = (self.loss_func, loss_activation(self.loss_func))
        return cached[1]

    def _label_list(self) -> Any:
        ll = getattr(self.data, "label_list", None)
        if ll is None or not hasattr(ll, "y"):
            raise DataError("predict needs data built with the data block API (it knows how to decode labels)")
        return ll

    def TTA(self, beta: float | None = 0.4, ds_type: DatasetType = DatasetType.Valid, n_aug: int = 4,
            with_loss: bool = False) -> list[torch.Tensor]:
        """Test-time augmentation: predictions on the split blended (`beta`) with the mean over
        `n_aug` randomly augmented passes; beta=None returns both. Targets come second."""
        preds, targs = self.get_preds(ds_type)
        tta_dl = self.data.tta_dl(ds_type)
        activ = loss_activation(self.loss_func)
        passes = []
        for _ in range(n_aug):
            passes.append(torch.cat([to_cpu(activ(out.float())) for out, _ in self._eval_outputs(tta_dl)]))
        avg = torch.stack(passes).mean(0)
        if beta is None:
            return [preds, avg, targs]
        final = preds * beta + avg * (1 - beta)
        if with_loss:
            return [final, targs, _loss_on_probs(final, targs)]
        return [final, targs]

    def show_results(self, ds_type: DatasetType = DatasetType.Valid, rows: int = 5, return_fig: bool = False,
                     **kwargs: Any) -> Any:
        """One batch shown with predictions against targets (each item type draws itself)."""
        xb, yb = self.data.one_batch(ds_type, cpu=False)
        preds = self.pred_batch(batch=(xb, yb))
        ll = self.data.dl(ds_type).dataset
        n = min(rows * rows, len(preds))
        denorm = getattr(self.data, "denorm", lambda t: t)
        xb = to_cpu(denorm(xb[:n].float()))
        xs = [ll.x.reconstruct(x.clamp(0, 1)) for x in xb]
        ys = [ll.y.reconstruct(y) for y in to_cpu(yb)[:n]]
        zs = [ll.y.reconstruct(ll.y.analyze_pred(p)) for p in preds[:n]]
        fig = ll.x.show_xyzs(xs, ys, zs, **kwargs)
        return fig if return_fig else None

    def validate(self, dl: Iterable | None = None, metrics: Sequence[Any] | None = None) -> list[float]:
        """Loss and metrics on the validation set (or `dl`): [valid_loss, *metrics]."""
        ms = [as_metric(m) for m in (self.metrics if metrics is None else metrics)]
        for m in ms:
            m.reset()
        total, count = 0.0, 0
        for out, yb in self._eval_outputs(self.data.dl(DatasetType.Valid) if dl is None else dl):
            targ = yb[0] if isinstance(yb, (list, tuple)) and len(yb) == 1 else yb
            n = (yb[0] if isinstance(yb, (list, tuple)) else yb).shape[0]
            total += float(self._compute_loss(out, yb)) * n
            count += n
            for m in ms:
                with metric_errors(m, out, targ, "validate()"):
                    m.accumulate(out, targ)
        values = []
        for m in ms:
            with metric_errors(m, None, None, "validate()"):
                values.append(m.value)
        return [total / max(count, 1), *values]

    def _eval_outputs(self, dl: Iterable):
        """Yield (model output, targets) for each batch of `dl`, in eval mode without gradients."""
        self.model.eval()
        self._device = None if self.data.device.type == "cpu" else self.data.device
        with torch.no_grad(), self._autocast():
            for batch in dl:
                xb, yb = self._split_batch(batch)
                yield self._forward(xb), yb

    # --- saving and loading ----------------------------------------------------------------------
    def _model_file(self, name: str | Path) -> Path:
        if isinstance(name, Path):
            return name
        return self.path / self.model_dir / f"{name}.safetensors"

    def save(self, name: str | Path, with_opt: bool = True) -> Path:
        """Write the weights (and the optimizer state) to `path/model_dir/name.safetensors`,
        atomically. Returns the file's path."""
        state: dict[str, Any] = {"model": self.model.state_dict()}
        if with_opt and self.opt is not None:
            state["opt"] = self.opt.state_dict()
        return save_state(self._model_file(name), state)

    def load(self, name: str | Path, with_opt: bool = True, strict: bool = True,
             device: torch.device | str | None = None) -> "Learner":
        """Read what `save` wrote (no unpickling); returns the learner, so calls chain."""
        file = self._model_file(name)
        state = load_state(file, device=device or self.data.device)
        self.load_state(state, strict=strict, with_opt=with_opt, source=file)
        return self

    def load_state(self, state: dict[str, Any], strict: bool = True, with_opt: bool = True,
                   source: Any = "checkpoint") -> None:
        """Put a saved model (and optimizer) state into this learner, with a clear error on mismatch."""
        try:
            self.model.load_state_dict(state["model"], strict=strict)
        except RuntimeError as e:
            raise ExportError(f"the weights in {source} do not fit this model: {e}") from e
        if with_opt and "opt" in state:
            if self.opt is None:
                self.create_opt()
            try:
                self.opt.load_state_dict(state["opt"])
            except (ValueError, KeyError) as e:
                raise ExportError(f"the optimizer state in {source} does not fit this learner's "
                                  f"param groups (were the layer groups changed?): {e}") from e

    def export(self, fname: str | Path = "export.pkl", destroy: bool = False) -> Path:
        """Write this learner as one file, `path/fname` (a JSON manifest and safetensors weights; no
        pickle), for `load_learner`; returns its path. With `destroy`, the model, optimizer and data
        are released afterwards (v1) and this learner cannot be used any more."""
        from deftly.export import export_learner  # the export layer sits above the applications

        file = export_learner(self, fname)
        if destroy:
            self.opt, self.model, self.data, self.layer_groups = None, None, None, []
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return file

    def to_onnx(self, fname: str | Path = "model.onnx", size: int | tuple[int, int] | None = None,
                dynamo: bool = True, opset: int | None = None, check: bool = True) -> Path:
        """Write this image or tabular learner's model as ONNX, `path/fname`, outputting what `predict`
        reports (probabilities, or raw outputs for regression) with a dynamic batch size and its
        preprocessing in the metadata; returns its path. Needs `pip install deftly[onnx]`; see
        `deftly.export.onnx` for the arguments and how to run the file with onnxruntime."""
        from deftly.export.onnx import export_onnx  # the export layer sits above the applications

        return export_onnx(self, fname, size=size, dynamo=dynamo, opset=opset, check=check)

    # --- inspection --------------------------------------------------------------------------------
    def summary(self) -> str:
        """Layers, output shapes, parameter counts and whether they train, from one batch."""
        from deftly.train.summary import model_summary

        return model_summary(self)

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100,
                stop_div: bool = True, wd: float | None = None) -> None:
        """The learning-rate range test; then `recorder.plot()` (see `deftly.train.lr_finder`)."""
        from deftly.train.lr_finder import lr_find

        lr_find(self, start_lr, end_lr, num_it, stop_div, wd)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(data={self.data!r}, model={type(self.model).__name__}, "
                f"opt_func={getattr(_opt_class(self.opt_func), '__name__', self.opt_func)}, "
                f"loss_func={self.loss_func!r}, metrics={[getattr(m, '__name__', m) for m in self.metrics]})")


def _cat(items: list[Any]) -> Any:
    if isinstance(items[0], (list, tuple)):
        return type(items[0])(torch.cat(parts) for parts in zip(*items))
    return torch.cat(items)


def _per_item_loss(loss_func: Any) -> Callable:
    """A per-item version of `loss_func` (reduction='none'), averaged over all but the first axis."""
    import copy

    inner = getattr(loss_func, "func", loss_func)
    if not hasattr(inner, "reduction"):
        raise ConfigError(f"cannot compute per-item losses with {loss_func!r}: it has no `reduction` attribute")
    lf = copy.deepcopy(loss_func)
    getattr(lf, "func", lf).reduction = "none"

    def per_item(out: torch.Tensor, yb: Any) -> torch.Tensor:
        targ = yb[0] if isinstance(yb, (list, tuple)) else yb
        losses = lf(out, targ)
        n = targ.shape[0]
        return losses.view(n, -1).mean(dim=1)
    return per_item


def _loss_on_probs(probs: torch.Tensor, targs: torch.Tensor) -> torch.Tensor:
    """Per-item negative log-likelihood of blended probabilities (TTA with_loss), or squared error."""
    if targs.dtype == torch.long and probs.ndim == targs.ndim + 1:
        return -torch.log(probs.gather(-1, targs[..., None]).squeeze(-1).clamp_min(1e-12))
    return ((probs - targs.float()) ** 2).reshape(len(probs), -1).mean(1)


def _fused_step(cls: Any, opt_func: Callable, groups: list[dict[str, Any]]) -> dict[str, Any]:
    """`fused=True` for torch's Adam/AdamW when torch has the fused step for these parameters (torch
    2.4+, floating point, all on the CPU or all on CUDA) and the user chose no implementation: one
    kernel over every tensor, about 30% cheaper than the per-tensor loop torch uses on the CPU."""
    given = opt_func.keywords if isinstance(opt_func, partial) else {}
    adam = isinstance(cls, type) and issubclass(cls, (torch.optim.Adam, torch.optim.AdamW))
    if "fused" in given or "foreach" in given or not adam:
        return {}
    if tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 4):
        return {}
    params = [p for g in groups for p in g["params"]]
    devices = {p.device.type for p in params}
    if len(devices) != 1 or devices - {"cpu", "cuda"} or not all(p.is_floating_point() for p in params):
        return {}
    return {"fused": True}
