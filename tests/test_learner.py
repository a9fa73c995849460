"""The Learner's fit loop: events, cancellation, lr_find, NaN guard, logging, saving, bad input,
seeding, progress output, summary, callbacks."""
import io
import math
import re
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from deftly.basics import (
    EVENTS, Callback, CancelBatchException, CancelFitException, ConfigError, CSVLogger, DataBunch, DataError,
    EarlyStoppingCallback, ExportError, GradientClipping, Learner, SaveModelCallback, TrainingError,
    TrainingWarning, accuracy, set_seed,
)
from deftly.data import DatasetType
from deftly.train import checkpoint as checkpoint_module
from deftly.train.progress import ProgressCallback


@pytest.fixture
def data(mnist_sample):
    (xt, yt), (xv, yv) = mnist_sample
    return DataBunch.create(TensorDataset(xt[:640], yt[:640]), TensorDataset(xv[:200], yv[:200]), bs=64)


def mlp():
    return nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))


def make_learner(data, model=None, **kwargs):
    kwargs.setdefault("progress", False)
    return Learner(data, model or mlp(), loss_func=nn.CrossEntropyLoss(), metrics=accuracy, **kwargs)


class EventLog(Callback):
    """Records every event with the epoch, training flag and batch index."""

    def __init__(self):
        super().__init__()
        self.log = []
        for event in EVENTS:
            setattr(self, event, self._recorder(event))

    def _recorder(self, event):
        def record():
            s = self.learn.state
            self.log.append((event, s.epoch, s.training, s.iter))
        return record


# --- the loop's events --------------------------------------------------------------------------
def test_event_order_for_a_fit_with_validation(data):
    log = EventLog()
    make_learner(data, callbacks=[log]).fit(2, 1e-3)
    names = [e for e, *_ in log.log]
    batch = ["before_batch", "after_pred", "after_loss", "before_backward", "after_backward", "before_step",
             "after_step", "after_batch"]
    valid_batch = ["before_batch", "after_pred", "after_loss", "after_batch"]
    n_train, n_valid = len(data.train_dl), len(data.valid_dl)
    epoch = ["before_epoch", "before_train", *batch * n_train, "after_train",
             "before_validate", *valid_batch * n_valid, "after_validate", "after_epoch"]
    assert names == ["before_fit", *epoch, *epoch, "after_fit"]
    # the state is right where it is read
    assert ("before_batch", 1, True, n_train - 1) in log.log
    assert ("after_batch", 1, False, n_valid - 1) in log.log


def test_cancel_batch_skips_the_step_and_cancel_fit_ends_the_fit(data):
    class SkipAll(Callback):
        def after_loss(self):
            raise CancelBatchException()

    learn = make_learner(data, callbacks=[SkipAll()])
    before = [p.clone() for p in learn.model.parameters()]
    learn.fit(1, 1e-2)
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))

    class StopAt(Callback):
        order = 5

        def after_batch(self):
            if self.state.training and self.state.train_iter == 4:
                raise CancelFitException()

    log = EventLog()
    learn = make_learner(data, callbacks=[StopAt(), log])
    learn.fit(3, 1e-3)
    names = [e for e, *_ in log.log]
    assert names[-2:] == ["after_cancel_fit", "after_fit"]
    assert sum(n == "after_step" for n in names) == 5
    assert "before_validate" not in names


def test_callbacks_run_in_order(data):
    calls = []

    class A(Callback):
        order = 10

        def before_fit(self):
            calls.append("A")

    class B(Callback):
        order = -1

        def before_fit(self):
            calls.append("B")

    make_learner(data, callbacks=[A(), B()]).fit(1)
    assert calls == ["B", "A"]


def test_callback_fns_are_built_for_each_fit_with_the_learner(data, tmp_path):
    learn = make_learner(data, path=tmp_path, callback_fns=[CSVLogger])
    learn.fit(1)
    learn.fit(1)
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 2  # rewritten by the second fit


# --- lr_find ----------------------------------------------------------------------------------------
def test_lr_find_restores_weights_and_records_a_geometric_sweep(data, capsys):
    learn = make_learner(data, progress=True)
    learn.fit(1, 1e-3)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt_before = {i: {k: v.clone() for k, v in s.items()} for i, s in learn.opt.state_dict()["state"].items()}
    capsys.readouterr()
    learn.lr_find(start_lr=1e-5, end_lr=1, num_it=30, stop_div=False)
    assert all(torch.equal(before[k], v) for k, v in learn.model.state_dict().items())
    for i, s in learn.opt.state_dict()["state"].items():
        assert all(torch.equal(opt_before[i][k], v) for k, v in s.items())
    lrs = learn.recorder.lrs
    assert len(lrs) == 30
    assert lrs[0] == pytest.approx(1e-5) and lrs[-1] == pytest.approx(1)
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-6)
    out = capsys.readouterr().out
    assert "LR Finder is complete" in out and "valid_loss" not in out  # a bar only, no epoch table
    suggestion = learn.recorder.plot(skip_start=0, skip_end=0, suggestion=True)
    assert 1e-5 <= suggestion <= 1 and suggestion == learn.recorder.min_grad_lr


def test_lr_find_stops_when_the_loss_diverges(data):
    learn = make_learner(data)
    learn.lr_find(start_lr=1e-3, end_lr=1e4, num_it=100)
    assert len(learn.recorder.lrs) < 100


# --- NaN guard ----------------------------------------------------------------------------------------
def test_nan_loss_stops_with_a_message_naming_epoch_and_batch(data):
    calls = {"n": 0}
    n_batches = len(data.train_dl)

    def loss_func(pred, targ):
        calls["n"] += 1
        loss = nn.functional.cross_entropy(pred, targ)
        return loss * float("nan") if calls["n"] == n_batches + 3 else loss  # epoch 2, batch 3

    learn = Learner(data, mlp(), loss_func=loss_func, progress=False)
    # validation batches also call the loss; count only training calls
    learn.data.valid_dl = None
    with pytest.warns(TrainingWarning, match=rf"epoch 2/3, batch 3/{n_batches}: the training loss is nan"):
        learn.fit(3, 1e-3)
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
    assert len(learn.recorder.values) == 1  # only epoch 1 finished
    assert "epoch 2/3, batch 3" in learn.state.stop_reason


# --- CSV log, saving, loading -----------------------------------------------------------------------------
def test_csv_logger_writes_one_row_per_epoch_matching_the_recorder(data, tmp_path):
    learn = make_learner(data, path=tmp_path, callback_fns=[CSVLogger])
    learn.fit(2, 1e-3)
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,valid_loss,accuracy,time"
    assert len(lines) == 3
    for line, row in zip(lines[1:], learn.recorder.values):
        cells = line.split(",")
        assert int(cells[0]) == row[0]
        assert float(cells[2]) == pytest.approx(row[2], abs=1e-6)
        assert float(cells[3]) == pytest.approx(row[3], abs=1e-6)


def test_save_and_load_round_trip_and_chain(data, tmp_path):
    learn = make_learner(data, path=tmp_path)
    learn.fit(1, 1e-3)
    path = learn.save("stage-1")
    assert path == tmp_path / "models" / "stage-1.safetensors" and path.exists()
    saved = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt_saved = {i: {k: v.clone() for k, v in st.items()} for i, st in learn.opt.state_dict()["state"].items()}
    learn.fit(1, 1e-2)
    assert learn.load("stage-1") is learn
    assert all(torch.equal(saved[k], v) for k, v in learn.model.state_dict().items())
    state = learn.opt.state_dict()["state"]
    assert all(torch.equal(opt_saved[i]["exp_avg"], state[i]["exp_avg"]) for i in state)


def test_save_is_atomic_a_failed_write_keeps_the_old_file(data, tmp_path, monkeypatch):
    learn = make_learner(data, path=tmp_path)
    path = learn.save("model")
    original = path.read_bytes()

    def torn_write(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module, "save_file", torn_write)
    learn.fit(1, 1e-2)
    with pytest.raises(OSError, match="disk full"):
        learn.save("model")
    assert path.read_bytes() == original
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # no temporary left behind
    monkeypatch.undo()
    make_learner(data, path=tmp_path).load("model")


def test_load_rejects_pickles_wrong_models_and_missing_files(data, tmp_path):
    learn = make_learner(data, path=tmp_path)
    (tmp_path / "models").mkdir()
    torch.save(learn.model.state_dict(), tmp_path / "models" / "pickled.safetensors")
    with pytest.raises(ExportError, match="not a readable deftly checkpoint"):
        learn.load("pickled")
    with pytest.raises(ExportError, match="no checkpoint at"):
        learn.load("nothing-here")
    learn.save("small")
    other = make_learner(data, nn.Sequential(nn.Linear(784, 10)), path=tmp_path)
    with pytest.raises(ExportError, match="do not fit this model"):
        other.load("small")


# --- bad input -------------------------------------------------------------------------------------------
def test_empty_dataset_and_bad_batch_size_give_clear_errors():
    empty = TensorDataset(torch.zeros(0, 3), torch.zeros(0))
    some = TensorDataset(torch.zeros(4, 3), torch.zeros(4))
    with pytest.raises(DataError, match="training dataset is empty"):
        DataBunch.create(empty, some)
    with pytest.raises(DataError, match="validation dataset is empty"):
        DataBunch.create(some, empty)
    with pytest.raises(DataError, match="bs must be a positive"):
        DataBunch.create(some, some, bs=0)


def test_loss_that_is_not_a_scalar_and_batches_that_are_not_pairs(data):
    learn = Learner(data, mlp(), loss_func=nn.CrossEntropyLoss(reduction="none"), progress=False)
    with pytest.raises(TrainingError, match=r"scalar tensor, got \(64,\)"):
        learn.fit(1)

    triples = TensorDataset(torch.zeros(8, 784), torch.zeros(8, dtype=torch.long), torch.zeros(8))
    learn = make_learner(DataBunch.create(triples, None, bs=4))
    with pytest.raises(DataError, match="a batch must be a pair"):
        learn.fit(1)


def test_metric_with_a_wrong_shape_names_the_metric_and_shapes(data):
    learn = Learner(data, nn.Sequential(nn.Linear(784, 10), nn.Flatten(0)), loss_func=lambda p, t: p.mean(),
                    metrics=[accuracy], progress=False)
    with pytest.raises(TrainingError, match=r"metric 'accuracy' failed on predictions of shape \(640,\)"):
        learn.fit(1)


def test_missing_loss_and_bad_settings(data):
    with pytest.raises(ConfigError, match="no loss function"):
        Learner(data, mlp())
    learn = make_learner(data)
    with pytest.raises(ConfigError, match="positive integer"):
        learn.fit(0)
    with pytest.raises(ConfigError, match="monitors 'f1'"):
        learn.fit(1, callbacks=[SaveModelCallback(monitor="f1")])


# --- reproducibility ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_workers", [0, 1])
def test_same_seed_same_losses(mnist_sample, num_workers):
    (xt, yt), (xv, yv) = mnist_sample

    def run(seed):
        set_seed(seed)
        model = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))
        data = DataBunch.create(TensorDataset(xt[:320], yt[:320]), TensorDataset(xv[:64], yv[:64]), bs=32,
                                num_workers=num_workers)
        learn = make_learner(data, model)
        learn.fit_one_cycle(2, 1e-2)
        return learn.recorder.losses, [row[2] for row in learn.recorder.values]

    first, second = run(123), run(123)
    assert first == second
    assert run(124) != first  # and the seed really is what decides


# --- progress output ---------------------------------------------------------------------------------------
def test_progress_in_a_log_is_plain_lines_without_control_characters(data):
    stream = io.StringIO()
    learn = make_learner(data, progress=False, callbacks=[ProgressCallback(stream=stream)])
    learn.fit(2, 1e-3)
    text = stream.getvalue()
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)
    lines = text.splitlines()
    assert lines[0].split() == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert [line.split()[0] for line in lines[1:3]] == ["1", "2"]
    assert re.fullmatch(r"Total time: \d\d:\d\d", lines[3])


def test_progress_in_a_terminal_draws_a_live_bar(data):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    make_learner(data, progress=False, callbacks=[ProgressCallback(stream=stream)]).fit(1, 1e-3)
    text = stream.getvalue()
    assert "\r" in text and "epoch 1/1" in text and "valid_loss" in text


def test_progress_switch_silences_everything(data, capsys, monkeypatch):
    from deftly.core import defaults

    monkeypatch.setattr(defaults, "progress", False)
    learn = Learner(data, mlp(), loss_func=nn.CrossEntropyLoss(), metrics=accuracy)
    learn.fit(1)
    learn.get_preds()
    assert capsys.readouterr().out == ""


def test_notebook_output_is_an_updating_html_table(data, monkeypatch):
    pytest.importorskip("IPython")
    from deftly.train import progress

    shown = []

    class Handle:
        def update(self, obj):
            shown.append(obj.data)

    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda obj, display_id=None: (shown.append(obj.data), Handle())[1])
    make_learner(data, progress=True).fit(2, 1e-3)
    final = shown[-1]
    assert final.count("<tr>") == 3 and "<th>valid_loss</th>" in final and "Total time" in final
    assert any("<progress" in html for html in shown)


# --- summary, callbacks ---------------------------------------------------------------------------------
def test_summary_lists_layers_shapes_params_and_trainable(data):
    learn = make_learner(data, layer_groups=None)
    learn.model[0].weight.requires_grad_(False)
    learn.model[0].bias.requires_grad_(False)
    text = learn.summary()
    assert re.search(r"Linear\s+64x32\s+25,120\s+False", text)
    assert re.search(r"Linear\s+64x10\s+330\s+True", text)
    assert "Total params: 25,450" in text and "Total trainable params: 330" in text


def test_save_model_callback_every_epoch_and_best(data, tmp_path):
    learn = make_learner(data, path=tmp_path)
    learn.fit(2, 1e-3, callbacks=[SaveModelCallback(every="epoch", name="ep")])
    assert {p.name for p in (tmp_path / "models").iterdir()} == {"ep_1.safetensors", "ep_2.safetensors"}

    learn = make_learner(data, path=tmp_path)
    cb = SaveModelCallback(monitor="accuracy", name="best")
    learn.fit(3, 1e-3, callbacks=[cb])
    accs = learn.recorder.value_history("accuracy")
    assert cb.best == max(accs)
    assert learn.validate()[1] == pytest.approx(max(accs))  # the best model is loaded at the end


def test_early_stopping_stops_after_patience(data):
    learn = make_learner(data)
    # a learning rate of 0 never improves the valid loss after the first epoch
    learn.fit(10, 0.0, callbacks=[EarlyStoppingCallback(monitor="valid_loss", patience=1)])
    assert len(learn.recorder.values) == 3
    assert "early stopping at epoch 3" in learn.state.stop_reason


def test_gradient_clipping_bounds_the_norm_before_the_step(data):
    norms = []

    class Norm(Callback):
        order = 50

        def before_step(self):
            grads = [p.grad for p in self.learn.model.parameters() if p.grad is not None]
            norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())

    make_learner(data, callbacks=[GradientClipping(clip=0.05), Norm()]).fit(1, 1e-3)
    assert max(norms) <= 0.05 + 1e-6


def test_to_fp16_on_cpu_trains_in_bf16_and_says_so(data):
    learn = make_learner(data)
    with pytest.warns(UserWarning, match="bfloat16"):
        learn.to_fp16()
    seen = []

    class Dtype(Callback):
        def after_pred(self):
            seen.append(self.state.pred.dtype)

    learn.fit(1, 1e-2, callbacks=[Dtype()])
    assert seen[0] == torch.bfloat16 and learn.recorder.values[0][3] > 0.6
    learn.to_fp32()
    seen.clear()
    learn.fit(1, 1e-3, callbacks=[Dtype()])
    assert seen[0] == torch.float32


def test_get_preds_gives_probabilities_targets_and_item_losses(data):
    learn = make_learner(data)
    learn.fit(1, 1e-2)
    preds, targs, losses = learn.get_preds(with_loss=True)
    assert preds.shape == (200, 10) and targs.shape == (200,) and losses.shape == (200,)
    assert torch.allclose(preds.sum(dim=1), torch.ones(200), atol=1e-5)
    assert losses.mean().item() == pytest.approx(learn.validate()[0], rel=1e-4)


def test_get_preds_fix_gives_the_training_set_in_order(mnist_sample):
    (xt, yt), (xv, yv) = mnist_sample
    data = DataBunch.create(TensorDataset(xt[:150], yt[:150]), TensorDataset(xv[:50], yv[:50]), bs=64)
    learn = make_learner(data)
    preds, targs = learn.get_preds(DatasetType.Fix)
    assert targs.tolist() == yt[:150].tolist()  # every item once, in order, the last partial batch kept
    shuffled = torch.cat([y for _, y in data.train_dl])
    assert len(shuffled) == 128 and shuffled.tolist() != yt[:128].tolist()  # the training loader itself
    with torch.no_grad():
        assert torch.allclose(preds, learn.model(xt[:150]).softmax(1), atol=1e-5)

def test_databunch_basics(data):
    x, y = data.one_batch()
    assert x.shape == (64, 784) and y.shape == (64,)
    assert "train: 640 items" in repr(data)
    with pytest.raises(DataError, match="no test set"):
        data.dl(DatasetType.Test)


def test_recorder_plots_draw_what_was_recorded(data):
    import matplotlib

    matplotlib.use("Agg")
    learn = make_learner(data)
    learn.fit_one_cycle(2, 1e-2)
    fig = learn.recorder.plot_lr(show_moms=True, return_fig=True)
    lr_line, mom_line = fig.axes[0].lines[0], fig.axes[1].lines[0]
    assert list(lr_line.get_ydata()) == learn.recorder.lrs and list(mom_line.get_ydata()) == learn.recorder.moms
    fig = learn.recorder.plot_losses(return_fig=True)
    train, valid = fig.axes[0].lines
    assert len(train.get_ydata()) == 2 * len(data.train_dl)
    assert list(valid.get_ydata()) == learn.recorder.value_history("valid_loss")
    fig = learn.recorder.plot_metrics(return_fig=True)
    assert list(fig.axes[0].lines[0].get_ydata()) == learn.recorder.value_history("accuracy")
    with pytest.raises(TrainingError, match="run learn.lr_find"):
        make_learner(data).recorder.plot()


def test_to_bf16_warns_on_a_cpu_without_native_bfloat16(data, monkeypatch):
    import warnings as _warnings

    import deftly.train.learner as learner_module

    learn = make_learner(data)
    monkeypatch.setattr(learner_module, "cpu_has_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no native bfloat16"):
        learn.to_bf16()
    monkeypatch.setattr(learner_module, "cpu_has_bf16", lambda: True)
    with _warnings.catch_warnings():
        _warnings.simplefilter("error")
        learn.to_bf16()
    assert learn.autocast_dtype == torch.bfloat16
