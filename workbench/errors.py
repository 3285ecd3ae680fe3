"""Every exception the workbench raises on bad input.

Each subclasses the built-in a caller would expect (``ValueError``, ``KeyError``, ...) and its
message says what is wrong, what is valid and how to fix it.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class of all workbench errors."""


class UnknownModelError(WorkbenchError, ValueError):
    """A model spec that is neither bundled, a local path, a .gguf file nor a hub id."""


class ModelStructureError(WorkbenchError, ValueError):
    """The block list (or a block's attention/MLP) could not be found by module path."""


class LayerOutOfRangeError(WorkbenchError, IndexError):
    """A layer index outside ``-(n_layers+1) .. n_layers``."""


class UnknownHookPointError(WorkbenchError, KeyError):
    """A hook-point name that the model does not have."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly.
        return str(self.args[0]) if self.args else ""


class TargetTokenError(WorkbenchError, ValueError):
    """A target or foil that is not exactly one token of the model's tokenizer."""


class PoolingError(WorkbenchError, ValueError):
    """An unknown pooling, template or position specification."""


class EmptyDatasetError(WorkbenchError, ValueError):
    """A dataset with no rows, or rows whose text is empty."""


class ColumnNotFoundError(WorkbenchError, KeyError):
    """A text or label column that the file does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DatasetEncodingError(WorkbenchError, ValueError):
    """A data file that is not valid UTF-8."""


class DatasetFormatError(WorkbenchError, ValueError):
    """A data file that cannot be parsed in the format its extension says."""


class UnknownDatasetError(WorkbenchError, ValueError):
    """A dataset spec that is no built-in name, no file of a supported type and no ``hf:NAME``."""


class DatasetNotFoundError(WorkbenchError, FileNotFoundError):
    """A data file that does not exist, or a hub dataset that cannot be fetched."""


class DatasetOptionError(WorkbenchError, ValueError):
    """A dataset option that is out of range or that the loader does not take."""


class MissingDependencyError(WorkbenchError, ImportError):
    """An optional dependency that is not installed; the message names the pip extra."""


class ContextLengthError(WorkbenchError, ValueError):
    """A text longer than the model's context when truncation was refused."""


class StoreMismatchError(WorkbenchError, FileExistsError):
    """An output folder that holds a different run (other model, texts or spec)."""


class StoreCorruptError(WorkbenchError, OSError):
    """A store file whose checksum or shape does not match its manifest."""


class StoreSelectionError(WorkbenchError, KeyError):
    """A pooling, hook point, layer or row that the store does not hold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TaskFormatError(WorkbenchError, ValueError):
    """An evaluation task file that cannot be read: an unexpected header, a score that is not a
    number, a line with too few fields or a pair with an empty sentence."""


class ProbeTargetError(WorkbenchError, ValueError):
    """Labels that do not fit the probe: one class, continuous targets for a classifier, NaN,
    or a length that does not match the store's rows."""


class SpecError(WorkbenchError, ValueError):
    """An experiment spec (probes/*.toml) with an unknown key or a bad value."""


class RunFolderError(WorkbenchError, FileNotFoundError):
    """A results folder (a probe experiment, a saved sweep, a grid) without a file it needs."""


class EvaluationOptionError(WorkbenchError, ValueError):
    """An evaluation option that is not valid: an unknown metric or post-processing, or a metric
    the task cannot support."""


__all__ = [
    "ProbeTargetError",
    "SpecError",
    "WorkbenchError",
    "UnknownModelError",
    "ModelStructureError",
    "LayerOutOfRangeError",
    "UnknownHookPointError",
    "PoolingError",
    "EmptyDatasetError",
    "ColumnNotFoundError",
    "DatasetEncodingError",
    "DatasetFormatError",
    "UnknownDatasetError",
    "DatasetNotFoundError",
    "DatasetOptionError",
    "MissingDependencyError",
    "ContextLengthError",
    "StoreMismatchError",
    "StoreCorruptError",
    "StoreSelectionError",
    "TaskFormatError",
    "EvaluationOptionError",
]
