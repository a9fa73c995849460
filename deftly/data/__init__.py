"""Data layer: DataBunch over torch DataLoaders (item lists and splitters arrive with the applications)."""
from deftly.data.databunch import DataBunch, DatasetType

__all__ = ["DataBunch", "DatasetType"]
