"""The state behind the cleaning widgets, with no user interface: what is shown, what was flagged.

`ImageCleaner` and `FileDeleter` (in `deftly.widgets.view`) are thin ipywidgets views over these
classes, so everything they decide is testable without a browser:

- `Review`: a list of item indexes in review order (e.g. sorted by loss) walked in batches, with a
  Delete flag per item.
- `CleanerState`: a review of a labelled dataset that never touches the image files; it writes
  `cleaned.csv` (columns `name,label`, names relative to `path`, as fastai v1's ImageCleaner)
  listing the kept files with their (possibly changed) labels, for
  `ImageDataBunch.from_csv(path, csv_labels='cleaned.csv')`. It lists the items of the dataset it
  is given and no others: give it the whole labelled dataset (a `split_none()` DataBunch's
  training split, as the course does), not a validation split, or from_csv loses the rest.
- `DeleterState`: a review of plain files whose confirmed deletions are *moved* to a trash folder
  (hidden, so `get_image_files` and `from_folder` skip it), never unlinked, and can be restored.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

from deftly.core.errors import ConfigError, DataError
from deftly.train.checkpoint import atomic_write

__all__ = ["CleanerState", "DeleterState", "Review"]


def _as_indexes(idxs: Iterable[Any], n: int, what: str) -> list[int]:
    """`idxs` (a list, array or tensor of ints) as Python ints, each checked to be in range(n)."""
    out = []
    for i in idxs:
        try:
            k = int(i)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{what} must hold integer indexes, got {i!r}") from e
        if not 0 <= k < n:
            raise ConfigError(f"{what} holds index {k}, outside the {n} items")
        out.append(k)
    return out


class Review:
    """Walk the items `order` (indexes into `n` items) `batch_size` at a time, flagging some for
    deletion. With `pairs`, `order` is a flat list of pairs (i0, j0, i1, j1, ...), each batch is one
    pair, and a pair one of whose items is already flagged is skipped (v1's duplicates mode)."""

    def __init__(self, n: int, order: Iterable[Any], batch_size: int = 5, pairs: bool = False):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.n = n
        self.order = _as_indexes(order, n, "the review order")
        if pairs and len(self.order) % 2:
            raise ConfigError(f"duplicates mode needs pairs of indexes, got an odd number ({len(self.order)})")
        self.pairs = pairs
        self.batch_size = 2 if pairs else batch_size
        self.flagged: set[int] = set()
        self.pos = 0  # position in `order` of the current batch's first item
        self._skip_settled()

    @property
    def done(self) -> bool:
        """Whether every batch has been reviewed."""
        return self.pos >= len(self.order)

    def batch(self) -> list[int]:
        """The item indexes of the current batch (empty when done)."""
        return self.order[self.pos:self.pos + self.batch_size]

    def flag(self, i: int, delete: bool = True) -> None:
        """Mark item `i` for deletion (or clear the mark); only items of the current batch."""
        if i not in self.batch():
            raise ConfigError(f"item {i} is not in the current batch {self.batch()}")
        if delete:
            self.flagged.add(i)
        else:
            self.flagged.discard(i)

    def next_batch(self) -> list[int]:
        """Settle the current batch (subclasses act on it here) and move to the next; returns it
        (empty when the review is done; nothing happens after that)."""
        if self.done:
            return []
        self._settle(self.batch())
        self.pos += self.batch_size
        self._skip_settled()
        return self.batch()

    def _settle(self, batch: list[int]) -> None:
        """What confirming `batch` does (nothing here)."""

    def _skip_settled(self) -> None:
        """In pairs mode, skip pairs one of whose items is already flagged."""
        while self.pairs and not self.done and any(i in self.flagged for i in self.batch()):
            self.pos += self.batch_size

    def progress(self) -> str:
        """e.g. 'batch 2 of 7' (or 'done')."""
        total = -(-len(self.order) // self.batch_size)
        return "done" if self.done else f"batch {self.pos // self.batch_size + 1} of {total}"


class CleanerState(Review):
    """A review of a labelled dataset: flag items to drop, give others a new label; each confirmed
    batch rewrites `path/csv_name` (atomically) with every kept item of the dataset and its label.

    `files` and `labels` are the dataset's items in its own order (the csv keeps that order);
    `classes` are the labels a relabel may choose. The image files are never touched.

    The csv holds these items only: built from `data.valid_ds` of split data it lists the
    validation images alone, and `from_csv` would then train on them without the training images.
    Clean the whole dataset instead (see `deftly.widgets`); DatasetFormatter warns when it hands
    out one split of several.
    """

    def __init__(self, files: Sequence[Any], labels: Sequence[Any], classes: Sequence[Any],
                 order: Iterable[Any], path: str | os.PathLike, batch_size: int = 5, duplicates: bool = False,
                 csv_name: str = "cleaned.csv"):
        if len(files) != len(labels):
            raise ConfigError(f"{len(files)} files but {len(labels)} labels")
        super().__init__(len(files), order, batch_size, pairs=duplicates)
        self.files = [Path(f) for f in files]
        self.labels = [str(label) for label in labels]
        self.classes = [str(c) for c in classes]
        self.path = Path(path)
        self.csv_name = csv_name
        self.new_labels: dict[int, str] = {}  # relabels chosen in the current batch, not yet confirmed
        self.deleted: set[int] = set()  # confirmed deletions
        self.relabelled: dict[int, str] = {}  # confirmed relabels: index -> new label

    @classmethod
    def from_dataset(cls, ds: Any, idxs: Iterable[Any], path: str | os.PathLike, **kwargs: Any) -> "CleanerState":
        """From a LabelList of files with single-label classes (`ds.x.items`, `ds.y.items`, `ds.classes`)."""
        x, y = getattr(ds, "x", None), getattr(ds, "y", None)
        classes = getattr(ds, "classes", None)
        if x is None or y is None or not classes:
            raise ConfigError(f"ImageCleaner needs a labelled dataset with classes (e.g. data.valid_ds or the ds of "
                              f"DatasetFormatter.from_toplosses), not a {type(ds).__name__}")
        labels = list(y.items)
        if labels and isinstance(labels[0], (list, tuple)):
            raise ConfigError("ImageCleaner relabels single-label data; this dataset has multi-label targets")
        return cls(list(x.items), labels, classes, idxs, path, **kwargs)

    def label(self, i: int) -> str:
        """Item `i`'s label as it stands (a pending or confirmed relabel, else the original)."""
        return self.new_labels.get(i, self.relabelled.get(i, self.labels[i]))

    def relabel(self, i: int, label: Any) -> None:
        """Give item `i` of the current batch the label `label` (one of `classes`)."""
        label = str(label)
        if i not in self.batch():
            raise ConfigError(f"item {i} is not in the current batch {self.batch()}")
        if label not in self.classes:
            raise ConfigError(f"cannot relabel {self.files[i].name} as {label!r}: "
                              f"not one of the classes {self.classes}")
        self.new_labels[i] = label

    def _settle(self, batch: list[int]) -> None:
        for i in batch:
            if i in self.flagged:
                self.deleted.add(i)
                self.relabelled.pop(i, None)
            elif i in self.new_labels:
                if self.new_labels[i] == self.labels[i]:
                    self.relabelled.pop(i, None)
                else:
                    self.relabelled[i] = self.new_labels[i]
        self.new_labels.clear()
        self.write_csv()

    def rows(self) -> list[tuple[str, str]]:
        """(name relative to `path`, label) of every kept item, in the dataset's order."""
        return [(self._name(i), self.relabelled.get(i, self.labels[i]))
                for i in range(self.n) if i not in self.deleted]

    def _name(self, i: int) -> str:
        file = self.files[i]
        try:
            return file.relative_to(self.path).as_posix()
        except ValueError:  # not under `path`: a path from `path` to it, as v1's os.path.relpath
            return Path(os.path.relpath(file, self.path)).as_posix()

    def write_csv(self) -> Path:
        """Write `path/csv_name` (header `name,label`) atomically; returns its path."""
        if not self.path.is_dir():
            raise DataError("the folder for cleaned.csv does not exist", where=str(self.path))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["name", "label"])
        writer.writerows(self.rows())
        file = self.path / self.csv_name
        atomic_write(file, lambda tmp: tmp.write_text(buffer.getvalue(), encoding="utf-8"))
        return file


class DeleterState(Review):
    """A review of plain files (v1's FileDeleter): each confirmed batch moves its flagged files
    into `trash`, keeping their path relative to `root` (the files' common folder), so they can be
    restored with `restore()`. `trash` defaults to `root/.deftly_trash`, a hidden folder that
    `get_image_files` and `ImageDataBunch.from_folder` do not read. Nothing is ever unlinked.

    Paths are made absolute when the state is built (a later `os.chdir` does not change them) and
    listed once each (the same file named twice, e.g. `a.jpg` and `./a.jpg`, is shown once). A
    symlink is moved as the link itself, next to the other files of its folder, never its target.
    A flagged file that is gone when its batch is confirmed (deleted outside the widget) is skipped
    with a warning and listed in `missing`; a batch that fails part-way can be confirmed again
    without moving any file twice.
    """

    def __init__(self, files: Iterable[Any], batch_size: int = 5, trash: str | os.PathLike | None = None):
        # an item list (the course passes `data.valid_ds.x[idxs]`) holds its file names in `.items`
        paths = [Path(f).absolute() for f in getattr(files, "items", files)]
        self.files = _unique_entries(f for f in paths if f.is_file())  # as v1: paths that are not files are not shown
        if not self.files:
            raise DataError(f"none of the {len(paths)} paths given is an existing file"
                            + (f", e.g. {paths[0]}" if paths else ""))
        super().__init__(len(self.files), range(len(self.files)), batch_size)
        # lexical, not resolved: the trash sits beside the links of a symlinked dataset, not in its targets' store
        self.root = Path(os.path.commonpath([os.path.normpath(f.parent) for f in self.files]))
        self.trash = Path(trash).absolute() if trash is not None else self.root / ".deftly_trash"
        self.moved: list[tuple[Path, Path]] = []  # (original, where it is now)
        self.missing: list[Path] = []  # flagged files that were gone when their batch was confirmed
        self.settled: set[int] = set()  # indexes whose confirmation is done (moved, kept or missing)

    def _settle(self, batch: list[int]) -> None:
        for i in batch:
            if i in self.settled:  # a retried batch: this one was already dealt with
                continue
            if i in self.flagged:
                file = self.files[i]
                try:
                    self.moved.append((file, self._move(file)))
                except FileNotFoundError:
                    self.missing.append(file)
                    warnings.warn(f"{file} is gone (deleted outside the FileDeleter?); nothing to move to the trash",
                                  stacklevel=3)
                except OSError as e:
                    raise DataError(f"cannot move the file to the trash folder {self.trash} ({e}); "
                                    f"confirm again to retry", where=str(file)) from e
            self.settled.add(i)

    def _move(self, file: Path) -> Path:
        if not os.path.lexists(file):
            raise FileNotFoundError(file)
        rel = Path(os.path.normpath(file)).relative_to(self.root)
        target = self.trash / rel
        k = 1
        while os.path.lexists(target):  # never overwrite an earlier trashed file (or link) of the same name
            target = self.trash / rel.with_name(f"{rel.stem}.{k}{rel.suffix}")
            k += 1
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(file), str(target))
        return target

    def restore(self) -> list[Path]:
        """Move every trashed file back where it was (unless something is there now); returns them.
        A trashed symlink comes back as the link (checked with `lexists`, not through its target)."""
        back, kept = [], []
        for original, now in self.moved:
            if os.path.lexists(original) or not os.path.lexists(now):
                kept.append((original, now))
                continue
            original.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(now), str(original))
            back.append(original)
        self.moved = kept
        return back


def _unique_entries(files: Iterable[Path]) -> list[Path]:
    """`files` in order without repeats of the same directory entry: two names are the same entry
    when their folders resolve to the same folder and their names match (`a.jpg`, `./a.jpg` and
    `link_to_here/a.jpg`); two symlinks to one target stay two entries, as each can be moved."""
    seen: set[Path] = set()
    out = []
    for f in files:
        key = f.parent.resolve() / f.name
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
