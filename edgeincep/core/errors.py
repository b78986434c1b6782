"""User-facing errors: each carries a one-line message and a distinct exit code.

The CLI maps these to `error: <message>` and the code; anything else is a bug and
shows a traceback only with --debug.
"""
from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A mistake in the user's input: bad file, bad option, bad data."""

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)


class CheckpointError(UserError):
    exit_code = 3


class DataError(UserError):
    exit_code = 4


class ExportMismatchError(UserError):
    """The exported graph does not reproduce PyTorch within tolerance."""

    exit_code = 5


class OfflineError(UserError):
    exit_code = 6


class OutputError(UserError):
    exit_code = 7


class UnexpectedError(UserError):
    """Not a known user mistake (a bug, or a library failing in a way edgeincep does not recognise):
    still one line, with the traceback behind --debug."""

    exit_code = 1


class ConversionError(UserError):
    """A converter (onnx2tf, TensorFlow's TFLite converter, ...) could not turn the model into its format."""

    exit_code = 8


class GateError(UserError):
    """The artifact moved further from FP32 than the recipe's drift budget allows."""

    exit_code = 10


class OutOfTime(Exception):
    """A step that honours a deadline (the escalation ladder's time budget) stopped at it. Not a user error:
    whoever set the deadline catches it and reports the step as stopped."""
