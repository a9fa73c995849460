"""`from deftly.tabular import *`: everything lesson 4 and 6 tabular code uses (the basics,
processors, date features, TabularList/TabularDataBunch, TabularModel, tabular_learner), as fastai
v1's `fastai.tabular` gave it."""
from deftly.basics import *  # noqa: F401,F403  (this module exists to re-export)
from deftly.basics import __all__ as _basics_all
from deftly.tabular.data import TabularDataBunch, TabularLabelList, TabularLine, TabularList
from deftly.tabular.dates import add_cyclic_datepart, add_datepart, cont_cat_split, make_date
from deftly.tabular.learner import TabularLearner, get_tabular_learner, tabular_learner
from deftly.tabular.models import TabularModel
from deftly.tabular.processor import TabularProcessor
from deftly.tabular.procs import Categorify, FillMissing, FillStrategy, Normalize, TabularProc

__all__ = [*_basics_all, "Categorify", "FillMissing", "FillStrategy", "Normalize", "TabularDataBunch",
           "TabularLabelList", "TabularLearner", "TabularLine", "TabularList", "TabularModel", "TabularProc",
           "TabularProcessor", "add_cyclic_datepart", "add_datepart", "cont_cat_split", "get_tabular_learner",
           "make_date", "tabular_learner"]
