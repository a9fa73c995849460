"""`from deftly.basics import *`: the names the course uses outside any one application
(DataBunch, Learner, callbacks, metrics, losses), plus torch, nn, F, np and partial as v1 gave."""
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn, optim, tensor

from deftly.core import (
    ConfigError, DataError, DeftlyError, ExportError, TrainingError, defaults, set_seed,
)
from deftly.data import DataBunch, DatasetType
from deftly.train import *  # noqa: F401,F403  (this module exists to re-export)
from deftly.train import __all__ as _train_all

__all__ = ["ConfigError", "DataBunch", "DataError", "DatasetType", "DeftlyError", "ExportError", "F",
           "TrainingError", "defaults", "nn", "np", "optim", "partial", "set_seed", "tensor", "torch",
           *_train_all]
