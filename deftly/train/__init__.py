"""Training layer: Learner and its fit loop, callbacks, schedules, metrics and losses."""
from deftly.train.callback import (
    EVENTS, Callback, CancelBatchException, CancelEpochException, CancelFitException,
    CancelStepException, CancelTrainException, CancelValidException, TrainState,
)
from deftly.train.callbacks import (
    CSVLogger, EarlyStoppingCallback, GradientClipping, ResumeCallback, SaveModelCallback,
    TerminateOnNaN, TrainingWarning,
)
from deftly.train.checkpoint import load_state, save_state
from deftly.train.layers import SigmoidRange, bn_types, children, emb_sz_rule, embedding, flatten_model, requires_grad
from deftly.train.learner import SGD, Adam, AdamW, Learner
from deftly.train.losses import BCEWithLogitsFlat, CrossEntropyFlat, FlattenedLoss, L1LossFlat, MSELossFlat
from deftly.train.lr_finder import LRFinder, lr_find
from deftly.train.metrics import (
    AvgMetric, Dice, F1Score, FBeta, Metric, Precision, Recall, WholeSetMetric, accumulates, accuracy,
    accuracy_thresh, dice, error_rate, exp_rmspe, fbeta, mae, mse, r2_score, rmse, top_k_accuracy,
)
from deftly.train.mixed_precision import GradScalerCallback
from deftly.train.progress import ProgressCallback
from deftly.train.recorder import Recorder
from deftly.train.schedule import OneCycleScheduler, annealing_cos, annealing_exp, annealing_linear, lr_range

from deftly.train.interpret import ClassificationInterpretation

__all__ = [
    "ClassificationInterpretation", "SigmoidRange", "emb_sz_rule", "embedding",
    "EVENTS", "Adam", "AdamW", "AvgMetric", "BCEWithLogitsFlat", "CSVLogger", "Callback", "CancelBatchException",
    "CancelEpochException", "CancelFitException", "CancelStepException", "CancelTrainException",
    "CancelValidException", "CrossEntropyFlat", "Dice", "EarlyStoppingCallback", "F1Score", "FBeta",
    "FlattenedLoss", "GradScalerCallback", "GradientClipping", "L1LossFlat", "LRFinder", "Learner", "MSELossFlat",
    "Metric", "OneCycleScheduler", "Precision", "ProgressCallback", "Recall", "Recorder", "ResumeCallback",
    "SGD", "SaveModelCallback", "TerminateOnNaN", "TrainState", "TrainingWarning", "WholeSetMetric",
    "accumulates", "accuracy", "accuracy_thresh", "annealing_cos", "annealing_exp", "annealing_linear",
    "bn_types", "children", "dice", "error_rate", "exp_rmspe", "fbeta", "flatten_model", "load_state",
    "lr_find", "lr_range", "mae", "mse", "r2_score", "requires_grad", "rmse", "save_state", "top_k_accuracy",
]
