"""`from deftly.widgets import *`: the notebook tools of lesson 2 for cleaning an image dataset.

Clean the *whole* dataset, as the course does: rank every labelled image by the trained model's
loss, from a DataBunch with no validation split, so that `cleaned.csv` lists every image you keep:

    db = (ImageList.from_folder(path)
                   .split_none()                          # every image in the training split
                   .label_from_folder()
                   .transform(get_transforms(), size=224)
                   .databunch())
    learn_cln = cnn_learner(db, models.resnet34, metrics=error_rate)
    learn_cln.load('stage-2')                             # the model trained on the split data
    ds, idxs = DatasetFormatter().from_toplosses(learn_cln)
    ImageCleaner(ds, idxs, path)                          # flag / relabel; writes path/cleaned.csv
    data = ImageDataBunch.from_csv(path, csv_labels='cleaned.csv', valid_pct=0.2, size=224)

`cleaned.csv` holds the items of the `ds` given to ImageCleaner and nothing else. DatasetFormatter
ranks the training split by default (v1's `fix_dl`); on data split into training and validation
sets, cleaned.csv would list one split alone and `from_csv` would lose the other, so
DatasetFormatter warns when the split it ranks is not the whole labelled dataset.
`DatasetFormatter().from_similars(learn_cln)` with `ImageCleaner(ds, idxs, path, duplicates=True)`
finds duplicates.

`FileDeleter(file_paths)` is the course's earlier widget: its confirmed deletions are moved to a
trash folder, never unlinked. The widgets need ipywidgets (`pip install deftly[notebook]`); their
logic (`CleanerState`, `DeleterState`) does not.
"""
from deftly.widgets.formatter import DatasetFormatter
from deftly.widgets.review import CleanerState, DeleterState, Review
from deftly.widgets.view import FileDeleter, ImageCleaner, thumbnail

__all__ = ["CleanerState", "DatasetFormatter", "DeleterState", "FileDeleter", "ImageCleaner", "Review", "thumbnail"]
