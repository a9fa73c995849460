"""`from deftly.basics import *`: the names the course uses outside any one application
(DataBunch, Learner, callbacks, metrics, losses), plus torch, nn, F, np and partial as v1 gave."""
import re
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn, optim, tensor

from deftly.core import (
    ConfigError, DataError, DeftlyError, ExportError, TrainingError, defaults, set_seed,
)
from deftly.data import *  # noqa: F401,F403
from deftly.data import __all__ as _data_all
from deftly.datasets import URLs, download_images, download_url, untar_data, verify_images
from deftly.export import load_learner
from deftly.train import *  # noqa: F401,F403  (this module exists to re-export)
from deftly.train import __all__ as _train_all

__all__ = ["ConfigError", "DataError", "DeftlyError", "ExportError", "F", "Path", "TrainingError", "URLs",
           "defaults", "download_images", "download_url", "load_learner", "nn", "np", "optim", "partial", "pd",
           "plt", "re", "set_seed", "tensor", "torch", "untar_data", "verify_images", *_data_all, *_train_all]
