"""ImageCleaner and FileDeleter: the ipywidgets views of `deftly.widgets.review`'s states.

Each view shows one batch of images at a time (a thumbnail, the file name, a Delete toggle, and
for ImageCleaner a label dropdown) and a button that confirms the batch and shows the next. The
decisions live in the state object (`view.state`); the widgets only forward clicks to it, so the
same flow works from code: set `view.delete_buttons[k].value = True`, pick
`view.label_dropdowns[k].value`, then `view.next_button.click()`.

ipywidgets is imported when a view is built (`pip install deftly[notebook]`). In a Jupyter kernel
the view displays itself when created, as v1's did (`fd = FileDeleter(...)` shows the images);
elsewhere pass `display=True` or display `view.widget` yourself.
"""
from __future__ import annotations

import html
import io
import os
from pathlib import Path
from typing import Any, Iterable

from deftly.core.errors import ConfigError
from deftly.train.progress import in_notebook
from deftly.widgets.review import CleanerState, DeleterState, Review

__all__ = ["FileDeleter", "ImageCleaner", "thumbnail"]


def _ipywidgets() -> Any:
    """The ipywidgets module, or a clear error saying how to install it."""
    try:
        import ipywidgets
    except ImportError as e:
        raise ConfigError("the cleaning widgets need ipywidgets: pip install 'deftly[notebook]' "
                          "(or pip install ipywidgets)") from e
    return ipywidgets


def thumbnail(file: str | os.PathLike, size: int = 150) -> bytes | None:
    """`file` as PNG bytes whose longer side is `size` pixels (small images are enlarged with
    nearest-neighbour, so pixels stay sharp); None when the file cannot be read as an image."""
    import PIL.Image

    try:
        with PIL.Image.open(file) as im:
            im = im.convert("RGB")
            scale = size / max(im.size)
            new = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
            resample = PIL.Image.Resampling.NEAREST if scale > 1 else PIL.Image.Resampling.LANCZOS
            im = im.resize(new, resample)
            out = io.BytesIO()
            im.save(out, "PNG")
    except (OSError, ValueError, PIL.Image.DecompressionBombError):
        return None
    return out.getvalue()


class _BatchView:
    """The layout both views share: a row of tiles for the current batch, then the confirm button
    and where the review stands. Subclasses make the tiles and say what confirming means."""

    confirm_label = "Next batch"
    done_message = "No images to show :)"

    def __init__(self, state: Review, files: list[Path], thumb_size: int, display: bool | None):
        self._ipw = _ipywidgets()
        self.state, self.files, self.thumb_size = state, files, thumb_size
        self.next_button = self._ipw.Button(description=self.confirm_label, button_style="primary")
        self.next_button.on_click(lambda _button: self.next_batch())
        self.status = self._ipw.Label()
        self.widget = self._ipw.VBox()
        self.delete_buttons: list[Any] = []
        self.render()
        if display if display is not None else in_notebook():
            from IPython.display import display as show

            show(self.widget)

    def next_batch(self) -> None:
        """Confirm the current batch (what the button does) and show the next one."""
        self.state.next_batch()
        self.render()

    def render(self) -> None:
        """Rebuild the tiles for the current batch (or the closing message)."""
        w = self._ipw
        self.delete_buttons = []
        if self.state.done:
            self.widget.children = [w.HTML(f"<p>{html.escape(self.done_message)}</p>"), *self._closing()]
            return
        tiles = [self._tile(i) for i in self.state.batch()]
        self.status.value = self.state.progress()
        self.widget.children = [w.HBox(tiles), w.HBox([self.next_button, self.status])]

    def _closing(self) -> list[Any]:
        return []

    def _image(self, i: int) -> Any:
        data = thumbnail(self.files[i], self.thumb_size)
        if data is None:
            return self._ipw.HTML(f"<p>cannot read<br>{html.escape(self.files[i].name)}</p>")
        return self._ipw.Image(value=data, format="png")

    def _delete_button(self, i: int) -> Any:
        button = self._ipw.ToggleButton(value=False, description="Delete", icon="trash",
                                           tooltip=f"flag {self.files[i].name}")

        def changed(change: dict[str, Any]) -> None:
            self.state.flag(i, bool(change["new"]))
            button.button_style = "danger" if change["new"] else ""

        button.observe(changed, names="value")
        self.delete_buttons.append(button)
        return button

    def _tile(self, i: int) -> Any:
        raise NotImplementedError


class ImageCleaner(_BatchView):
    """Review `idxs` of the labelled image dataset `ds` (e.g. from `DatasetFormatter.from_toplosses`)
    `batch_size` at a time: flag images to drop, relabel others. Each "Next batch" writes
    `path/csv_name` with every kept image of `ds` and its label (v1's ImageCleaner), ready for
    `ImageDataBunch.from_csv(path, csv_labels='cleaned.csv')`. No image file is deleted or moved.
    With `duplicates` (idxs from `from_similars`), the images are shown as pairs.

    The csv lists the items of `ds` and no others, so `ds` should be the whole labelled dataset:
    the training split of a `split_none()` DataBunch, as the course does (see `deftly.widgets`),
    not `data.valid_ds`, whose csv would make from_csv train on the validation images alone."""

    def __init__(self, ds: Any, idxs: Iterable[Any], path: str | os.PathLike, batch_size: int = 5,
                 duplicates: bool = False, csv_name: str = "cleaned.csv", thumb_size: int = 150,
                 display: bool | None = None):
        state = CleanerState.from_dataset(ds, idxs, path, batch_size=batch_size, duplicates=duplicates,
                                          csv_name=csv_name)
        self.label_dropdowns: list[Any] = []
        super().__init__(state, state.files, thumb_size, display)

    def render(self) -> None:
        self.label_dropdowns = []
        super().render()

    def _closing(self) -> list[Any]:
        file = self.state.path / self.state.csv_name
        note = f"the kept images and their labels are in {file}" if file.exists() else "nothing was written"
        return [self._ipw.Label(note)]

    def _tile(self, i: int) -> Any:
        w = self._ipw
        dropdown = w.Dropdown(options=self.state.classes, value=self.state.label(i), layout=w.Layout(width="auto"))
        dropdown.observe(lambda change: self.state.relabel(i, change["new"]), names="value")
        self.label_dropdowns.append(dropdown)
        return w.VBox([self._image(i), w.Label(self.files[i].name), dropdown, self._delete_button(i)])


class FileDeleter(_BatchView):
    """Show `file_paths` (e.g. sorted by loss) `batch_size` at a time with a Delete toggle each;
    "Confirm" moves the flagged files of the batch into a trash folder and shows the next batch
    (v1's FileDeleter, which deleted them for good).

    deftly never unlinks your images: they go to `trash` (default: `.deftly_trash` in the files'
    common folder, a hidden folder the data factories do not read), keeping their relative paths,
    and `deleter.state.restore()` puts them back. Empty the trash folder yourself to free the space.
    """

    confirm_label = "Confirm"

    def __init__(self, file_paths: Iterable[Any], batch_size: int = 5, trash: str | os.PathLike | None = None,
                 thumb_size: int = 150, display: bool | None = None):
        state = DeleterState(file_paths, batch_size, trash)
        super().__init__(state, state.files, thumb_size, display)

    def _closing(self) -> list[Any]:
        moved, missing = len(self.state.moved), len(self.state.missing)
        notes = [f"{moved} file(s) moved to {self.state.trash}"] if moved else []
        if missing:
            names = ", ".join(f.name for f in self.state.missing)
            notes.append(f"{missing} flagged file(s) were already gone: {names}")
        return [self._ipw.Label(note) for note in notes]

    def _tile(self, i: int) -> Any:
        w = self._ipw
        return w.VBox([self._image(i), w.Label(self.files[i].name), self._delete_button(i)])
