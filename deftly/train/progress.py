"""Progress output that adapts: an HTML table in Jupyter, a live bar in a terminal, plain lines in
a log file or pipe (no control characters). `defaults.progress = False` (or the environment
variable DEFTLY_PROGRESS=0, or `Learner(progress=False)`) silences it."""
from __future__ import annotations

import html
import sys
import time
from typing import Any, TextIO

from deftly.train.callback import Callback
from deftly.train.recorder import format_time


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not a plain IPython terminal)."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    ip = shell.get_ipython()
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def format_cell(value: Any, name: str) -> str:
    if value is None:
        return "#na#"
    if name == "time":
        return format_time(value)
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.4f}" for v in value) + "]"
    return str(value)


class _Plain:
    """Writes whole lines only: the header, one row per epoch, the total time."""

    def __init__(self, out: TextIO):
        self.out = out

    def start(self, names: list[str]) -> None:
        self.widths = [max(len(n), 8) for n in names]
        if names:
            self.line(names)

    def line(self, cells: list[str]) -> None:
        self.out.write("  ".join(c.ljust(w) for c, w in zip(cells, self.widths)).rstrip() + "\n")
        self.out.flush()

    def row(self, cells: list[str]) -> None:
        self.line(cells)

    def start_bar(self, total: int, label: str) -> None:
        pass

    def update_bar(self, n: int, comment: str) -> None:
        pass

    def end_bar(self) -> None:
        pass

    def finish(self, total_time: str) -> None:
        self.out.write(f"Total time: {total_time}\n")
        self.out.flush()


class _Terminal(_Plain):
    """Plain rows plus a live tqdm bar under them while an epoch runs."""

    def start_bar(self, total: int, label: str) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=label, leave=False, file=self.out, dynamic_ncols=True,
                        mininterval=0.2, bar_format="{desc} {percentage:3.0f}%|{bar}| {n}/{total} [{elapsed}<{remaining}{postfix}]")

    def update_bar(self, n: int, comment: str) -> None:
        if comment:
            self.bar.set_postfix_str(comment, refresh=False)
        self.bar.update(n)

    def end_bar(self) -> None:
        self.bar.close()

    def line(self, cells: list[str]) -> None:
        from tqdm.auto import tqdm

        tqdm.write("  ".join(c.ljust(w) for c, w in zip(cells, self.widths)).rstrip(), file=self.out)


class _Notebook:
    """An HTML table updated in place, with a progress element under it."""

    def start(self, names: list[str]) -> None:
        from IPython.display import HTML, display

        self.names, self.rows, self.bar_html = names, [], ""
        self.handle = display(HTML(self._html()), display_id=True)
        self._last = 0.0

    def _html(self) -> str:
        if not self.names:
            return self.bar_html
        head = "".join(f"<th>{html.escape(n)}</th>" for n in self.names)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.rows)
        return f'<table border="1" class="dataframe"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{self.bar_html}'

    def _show(self) -> None:
        from IPython.display import HTML

        self.handle.update(HTML(self._html()))

    def row(self, cells: list[str]) -> None:
        self.rows.append(cells)
        self._show()

    def start_bar(self, total: int, label: str) -> None:
        self.total, self.done, self.label = total, 0, label

    def update_bar(self, n: int, comment: str) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self._last > 0.2 or self.done == self.total:
            self._last = now
            self.bar_html = (f'<div><progress value="{self.done}" max="{self.total}" style="width:300px"></progress> '
                             f"{html.escape(self.label)} {self.done}/{self.total} {html.escape(comment)}</div>")
            self._show()

    def end_bar(self) -> None:
        self.bar_html = ""
        self._show()

    def finish(self, total_time: str) -> None:
        self.bar_html = f"<div>Total time: {total_time}</div>"
        self._show()


class _BarOnly:
    """Wraps an output to show the batch bar but no table (the LR finder's run)."""

    def __init__(self, out):
        self.inner = out

    def start(self, names: list[str]) -> None:
        self.inner.start([])

    def row(self, cells: list[str]) -> None:
        pass

    def start_bar(self, total: int, label: str) -> None:
        self.inner.start_bar(total, label)

    def update_bar(self, n: int, comment: str) -> None:
        self.inner.update_bar(n, comment)

    def end_bar(self) -> None:
        self.inner.end_bar()

    def finish(self, total_time: str) -> None:
        pass


def make_output(stream: TextIO | None = None):
    """Pick the output style for where we are running."""
    stream = stream or sys.stdout
    if in_notebook():
        return _Notebook()
    isatty = getattr(stream, "isatty", None)
    return _Terminal(stream) if isatty is not None and isatty() else _Plain(stream)


class ProgressCallback(Callback):
    """Shows the epoch table (epoch, train_loss, valid_loss, metrics, time) and a batch bar."""

    order = 60

    def __init__(self, learn=None, stream: TextIO | None = None):
        super().__init__(learn)
        self.stream = stream

    def before_fit(self) -> None:
        self.out = make_output(self.stream)
        self.table = self.state.show_table
        if not self.table:
            self.out = _BarOnly(self.out)
        self.out.start(self.learn.recorder.names)
        recorder = self.learn.recorder
        for row in recorder.values:  # a resumed fit shows the epochs it already did
            self.out.row([format_cell(v, n) for v, n in zip(row, recorder.names)])
        self._fit_start = time.perf_counter()

    def before_train(self) -> None:
        self._bar(len(self.learn.data.train_dl), f"epoch {self.state.epoch + 1}/{self.state.n_epochs}")

    def before_validate(self) -> None:
        dl = self.learn.data.valid_dl
        self._bar(len(dl) if dl is not None else 0, "validating")

    def _bar(self, total: int, label: str) -> None:
        self.out.start_bar(total, label)
        self._pending, self._bar_open = 0, True

    def after_batch(self) -> None:
        self._pending += 1
        if self._pending >= 8:
            self._flush_bar()

    def _flush_bar(self) -> None:
        losses = self.learn.recorder.smooth_losses
        comment = f"loss {losses[-1]:.4f}" if self.state.training and losses else ""
        self.out.update_bar(self._pending, comment)
        self._pending = 0

    def _close_bar(self) -> None:
        if getattr(self, "_bar_open", False):
            self._flush_bar()
            self.out.end_bar()
            self._bar_open = False

    def after_train(self) -> None:
        self._close_bar()

    def after_cancel_train(self) -> None:
        self._close_bar()

    def after_validate(self) -> None:
        self._close_bar()

    def after_cancel_validate(self) -> None:
        self._close_bar()

    def after_epoch(self) -> None:
        recorder = self.learn.recorder
        if recorder.values:
            self.out.row([format_cell(v, n) for v, n in zip(recorder.values[-1], recorder.names)])

    def after_fit(self) -> None:
        self._close_bar()
        self.out.finish(format_time(time.perf_counter() - self._fit_start))
