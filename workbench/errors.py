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


class ArtifactCorruptError(WorkbenchError, OSError):
    """A saved file (array, checkpoint or JSON) that is damaged: its sha256 does not match the
    one recorded beside it, its JSON does not parse, or its safetensors header is unreadable."""


class ArtifactNotFoundError(WorkbenchError, FileNotFoundError):
    """A folder that does not hold the artifact asked for (missing, empty or of another kind)."""


class StoreCorruptError(ArtifactCorruptError):
    """A store file whose checksum or shape does not match its manifest."""


class StoreLockedError(WorkbenchError, BlockingIOError):
    """A run folder that another process is writing to (it holds the folder's lock)."""


class OutputPathError(WorkbenchError, OSError):
    """An output path that cannot be written: read-only, not a folder, or the disk is full."""


class OptionError(WorkbenchError, ValueError):
    """An option with a value out of range or of the wrong kind (``shard_size=0``, ``layers=[1.5]``,
    ``layers`` together with ``hook_points``)."""


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


_CLI = False


def use_cli_names(enabled: bool = True) -> None:
    """Make messages name CLI flags (``--overwrite``) instead of Python arguments; set by the CLI."""
    global _CLI
    _CLI = enabled


def arg(python: str, cli: str) -> str:
    """How to spell an option in a message: ``cli`` (a flag) under the CLI, else ``python``."""
    return cli if _CLI else python


def usage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a usage error (a bad value the caller passed: CLI exit code 2) rather
    than a runtime failure (disk, permissions, damaged files, locks: exit code 1)."""
    return isinstance(exc, WorkbenchError) and not isinstance(
        exc, OSError | ImportError | RuntimeError
    )


__all__ = [
    "ArtifactCorruptError",
    "ArtifactNotFoundError",
    "StoreLockedError",
    "OutputPathError",
    "OptionError",
    "arg",
    "use_cli_names",
    "usage_error",
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
