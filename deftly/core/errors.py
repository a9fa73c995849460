"""One small error hierarchy: every error deftly raises on purpose says what is wrong and where."""
from __future__ import annotations


class DeftlyError(Exception):
    """Base class of the errors deftly raises on purpose."""


class DataError(DeftlyError, ValueError):
    """Bad input data; `where` names the file, row, column or index at fault."""

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        super().__init__(f"{message} (at {where})" if where else message)


class ConfigError(DeftlyError, ValueError):
    """An argument or setting that cannot work (wrong value, wrong combination)."""


class TrainingError(DeftlyError, RuntimeError):
    """Training cannot go on: a NaN loss, a metric that does not fit its inputs, ..."""


class ExportError(DeftlyError):
    """A checkpoint or exported learner that cannot be read or written safely."""
