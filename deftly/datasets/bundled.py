"""Small real samples shipped inside the package, so `untar_data` works offline for them.

``bundled_archive(url)`` maps a fastai dataset URL (``URLs.MNIST_TINY``, ``URLs.MNIST_SAMPLE``,
``URLs.PETS``, ``URLs.PLANET_TINY``, ``URLs.ADULT_SAMPLE``, ``URLs.IMDB_SAMPLE``) or one of deftly's own samples
(``URLs.CHICAGO_RIDERSHIP``) to the ``.tgz`` shipped in ``deftly/datasets/samples/``, after
checking its SHA-256 once per process. ``samples/SAMPLES.md`` says what each archive holds and
where it comes from; ``scripts/build_samples.py`` rebuilds them byte for byte.
"""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path

from deftly.core.errors import DataError
from deftly.core.paths import file_sha256

__all__ = ["BUNDLED_SHA256", "bundled_archive", "bundled_name"]

#: Archive file name -> SHA-256 of its bytes (printed by scripts/build_samples.py).
BUNDLED_SHA256: dict[str, str] = {
    "mnist_tiny.tgz": "9b4724b3c6448db3d246d9c425451191771af3bcf93a497623ad77000e67ec12",
    "mnist_sample.tgz": "ff659cf5a01ceba74a205bb607e5dd1777f3d73ae5ac51b372a66faf432c99ab",
    "oxford-iiit-pet.tgz": "c2cc5667ef44361f8a6ab03894df0170939bff86c2c6172b90fe7abd1cc9bdd7",
    "planet_tiny.tgz": "e091a1cd9b51ee85f64fa81173a57a437811bc73625506fd18060eb7940efcfc",
    "adult_sample.tgz": "1cb203995a4fba993558bff43503b834a3ba42d81a14696b31ea2751a893e082",
    "chicago_ridership.tgz": "be226031f5079c4bfc88b0fa421cb5803bd8f1edf3cd5f3c60b4bc46051c513d",
    "imdb_sample.tgz": "04b7b95dd932fb9075d3bafd2663888541baeff62811fc7736a8d370ad1f1f16",
}

_verified: set[str] = set()
_lock = threading.Lock()


def bundled_name(url: str) -> str | None:
    """The archive file name bundled for `url` (matched on its last path component, a trailing
    ``.tgz``/``/`` ignored), or None when no sample is bundled for it."""
    last = str(url).rstrip("/").rsplit("/", 1)[-1]
    if last.endswith(".tgz"):
        last = last[: -len(".tgz")]
    name = f"{last}.tgz"
    return name if name in BUNDLED_SHA256 else None


def bundled_archive(url: str) -> Path | None:
    """Path of the bundled ``.tgz`` for `url`, or None if none is bundled.

    Raises DataError when the archive is missing from the installed package or its SHA-256 is not
    the recorded one (checked once per process per archive).
    """
    name = bundled_name(url)
    if name is None:
        return None
    path = Path(str(resources.files("deftly.datasets") / "samples" / name))
    with _lock:
        if name not in _verified:
            if not path.is_file():
                raise DataError(f"bundled sample {name} is missing from the installed package", where=str(path))
            digest = file_sha256(path)
            if digest != BUNDLED_SHA256[name]:
                raise DataError(
                    f"bundled sample {name} is corrupt: sha256 {digest}, expected {BUNDLED_SHA256[name]}",
                    where=str(path),
                )
            _verified.add(name)
    return path
