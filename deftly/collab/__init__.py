"""`from deftly.collab import *`: everything lessons 4-5 collaborative-filtering code uses (the basics,
CollabDataBunch, collab_learner, the two models, interpretation), as fastai v1's `fastai.collab` gave it."""
from deftly.basics import *  # noqa: F401,F403  (this module exists to re-export)
from deftly.basics import __all__ as _basics_all
from deftly.collab.data import NA, CollabDataBunch, CollabDataset
from deftly.collab.learner import CollabLearner, FactorTensor, collab_learner, pca
from deftly.collab.models import EmbeddingDotBias, EmbeddingNN

__all__ = [*_basics_all, "NA", "CollabDataBunch", "CollabDataset", "CollabLearner", "EmbeddingDotBias",
           "EmbeddingNN", "FactorTensor", "collab_learner", "pca"]
