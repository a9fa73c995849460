"""Data layer: item lists, the data block API, and the DataBunch over torch DataLoaders."""
from deftly.data.block import ItemLists, LabelList, LabelLists, collate_skipping
from deftly.data.databunch import DataBunch, DatasetType, DeviceDataLoader
from deftly.data.items import (
    Category, CategoryList, EmptyLabelList, FloatItem, FloatList, ItemList, MultiCategory, MultiCategoryList,
)
from deftly.data.tensors import BatchIndexSampler, TensorBatches, tensor_loader

__all__ = ["Category", "CategoryList", "DataBunch", "DatasetType", "DeviceDataLoader", "EmptyLabelList",
           "FloatItem", "FloatList", "ItemList", "ItemLists", "LabelList", "LabelLists", "MultiCategory",
           "MultiCategoryList", "collate_skipping", "BatchIndexSampler", "TensorBatches", "tensor_loader"]
