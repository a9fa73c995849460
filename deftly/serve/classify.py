"""One image through an exported image classifier, as JSON-ready data.

Shared by `deftly predict` (one JSON line per file) and the web app (`POST /predict`), so both
refuse the same models with the same words and answer in the same shape:

    {"prediction": "7", "probabilities": [["7", 0.93], ["3", 0.07]]}     # most probable first

A multi-label model's prediction is the list of its labels over the threshold. `read_image` decodes
an image's bytes as `predict` would, so a caller can tell an unreadable input from a failing model.
"""
from __future__ import annotations

from typing import Any

from deftly.core.errors import ConfigError, ExportError

__all__ = ["image_classes", "ranked_prediction", "read_image"]


def image_classes(learn: Any, source: str, needs: str) -> list[str]:
    """The class names of `learn`, an (exported) image classifier, as strings.

    Any other model (tabular, text, collab, or an image model without classes such as a
    regression) raises ConfigError naming `source` (the model file) and what it holds; `needs`
    ends the message with why an image classifier was expected (e.g. "`deftly serve` serves
    image classifiers").
    """
    from deftly.vision.data import ImageDataBunch

    data = learn.data
    classes = getattr(data, "classes", None)
    if isinstance(data, ImageDataBunch) and classes:
        return [str(c) for c in classes]
    if isinstance(data, ImageDataBunch):
        what = "an image model without classes (a regression?)"
    else:
        from deftly.export.apps import application_of

        try:
            what = f"a {application_of(data)} model"
        except ExportError:
            what = f"a model of {type(data).__name__} data"
    raise ConfigError(f"{source} holds {what}, not an image classifier: {needs}")


def ranked_prediction(learn: Any, classes: list[str], image: Any, top: int = 0) -> dict[str, Any]:
    """`learn.predict(image)` as {"prediction": label or [labels], "probabilities": [[class, p], ...]},
    the most probable class first (probabilities rounded to 6 places); `top` > 0 keeps that many.

    `image` is anything `learn.predict` takes (an Image, a PIL image, a file name, bytes);
    unreadable input raises deftly's DataError, as predict does.
    """
    label, _, probs = learn.predict(image)
    ranked = sorted(zip(classes, probs.tolist()), key=lambda p: -p[1])
    if top:
        ranked = ranked[:top]
    obj = getattr(label, "obj", label)
    prediction = [str(o) for o in obj] if isinstance(obj, (list, tuple)) else str(obj)
    return {"prediction": prediction, "probabilities": [[c, round(p, 6)] for c, p in ranked]}


def read_image(learn: Any, data: bytes) -> Any:
    """`data` (an image file's bytes) decoded as `learn.predict(data)` would decode it: by the item
    list that prepares `predict`'s input (its colour mode, JPEG draft size and `after_open`).

    The result goes to `learn.predict` (or `ranked_prediction`) with the same prediction as the
    bytes. Decoding on its own lets the web app answer a file PIL cannot decode (which may raise
    any exception, not only deftly's DataError) as the request's fault, and a failing model as the
    server's. Data without such an item list gets `data` back: `predict` decodes it then.
    """
    bunch = learn.data
    items = getattr(getattr(bunch, "single_ds", None), "x", None)
    if items is None:
        items = getattr(getattr(bunch, "train_ds", None), "x", None)
    from_object = getattr(items, "from_object", None)
    return data if from_object is None else from_object(data)
