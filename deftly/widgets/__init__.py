"""`from deftly.widgets import *`: the notebook tools of lesson 2 for cleaning an image dataset.

    ds, idxs = DatasetFormatter().from_toplosses(learn)   # likeliest mislabelled images first
    ImageCleaner(ds, idxs, path)                          # flag / relabel; writes path/cleaned.csv
    data = ImageDataBunch.from_csv(path, csv_labels='cleaned.csv', ...)

`FileDeleter(file_paths)` is the course's earlier widget: its confirmed deletions are moved to a
trash folder, never unlinked. The widgets need ipywidgets (`pip install deftly[notebook]`); their
logic (`CleanerState`, `DeleterState`) does not.
"""
from deftly.widgets.formatter import DatasetFormatter
from deftly.widgets.review import CleanerState, DeleterState, Review
from deftly.widgets.view import FileDeleter, ImageCleaner, thumbnail

__all__ = ["CleanerState", "DatasetFormatter", "DeleterState", "FileDeleter", "ImageCleaner", "Review", "thumbnail"]
