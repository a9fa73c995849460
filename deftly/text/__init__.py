"""`from deftly.text import *`: everything lessons 3-4 text code uses (the basics, tokenizer and
vocabulary, TextList and the text DataBunches, AWD-LSTM, the ULMFiT learners), as fastai v1's
`fastai.text` gave it."""
from deftly.basics import *  # noqa: F401,F403  (this module exists to re-export)
from deftly.basics import __all__ as _basics_all
from deftly.text.data import (LMLabelList, LanguageModelStream, SortishSampler, SortSampler, Text, TextClasDataBunch,
                              TextDataBunch, TextLMDataBunch, TextList, load_data, pad_collate)
from deftly.text.learner import (LanguageLearner, RNNLearner, RNNTrainer, TextClassificationInterpretation,
                                 language_model_learner, text_classifier_learner)
from deftly.text.models import AWD_LSTM, get_language_model, get_text_classifier
from deftly.text.transform import (BOS, EOS, FLD, PAD, TK_MAJ, TK_REP, TK_UP, TK_WREP, UNK, BaseTokenizer,
                                   SpacyTokenizer, Tokenizer, Vocab, WordTokenizer, deal_caps, fix_html,
                                   replace_all_caps, replace_rep, replace_wrep, rm_useless_spaces,
                                   spec_add_spaces)

__all__ = [*_basics_all, "AWD_LSTM", "BOS", "BaseTokenizer", "EOS", "FLD", "LMLabelList", "LanguageLearner",
           "LanguageModelStream", "PAD", "RNNLearner", "RNNTrainer", "SortSampler", "SortishSampler",
           "SpacyTokenizer", "TK_MAJ", "TK_REP", "TK_UP", "TK_WREP", "Text", "TextClasDataBunch",
           "TextClassificationInterpretation", "TextDataBunch", "TextLMDataBunch", "TextList", "Tokenizer", "UNK",
           "Vocab", "WordTokenizer", "deal_caps", "fix_html", "get_language_model", "get_text_classifier",
           "language_model_learner", "load_data", "pad_collate", "replace_all_caps", "replace_rep", "replace_wrep",
           "rm_useless_spaces", "spec_add_spaces", "text_classifier_learner"]
