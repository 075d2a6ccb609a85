"""Errors the engine raises: each says what was wrong and how to fix it.

Every error subclasses :class:`FootprintError` and, where one fits, a builtin, in the style
of ``RasterioIOError(RasterioError, OSError)``.
"""

from __future__ import annotations


class FootprintError(Exception):
    """Base of every error the engine reports to a user."""


class InputError(FootprintError, ValueError):
    """An input file or parameter is unusable."""


class RasterError(InputError):
    """A raster is missing, unreadable, not georeferenced or has no valid pixels."""


class LabelsError(InputError):
    """A vector layer of building labels is missing, unreadable or unusable."""


class ModelFileError(InputError):
    """A model file is corrupt, foreign, or does not fit the input."""


class ConfigError(InputError):
    """A parameter value is out of range or inconsistent with another."""


class OutputError(FootprintError, OSError):
    """An output cannot be written (exists without overwrite, unwritable folder)."""


class CancelledError(FootprintError):
    """The user cancelled the run; nothing was written."""

    def __init__(self, message: str = "Cancelled by the user; no output was written.") -> None:
        super().__init__(message)
