"""The errors gru_infer raises, and the warning it gives.

Every refusal is a GruInferError, itself a ValueError so that `except ValueError`
keeps working: FormatError for files (truncated, malformed, hostile, over a
limit), ConversionError for readable checkpoints that do not map onto a model,
InputError for bad call arguments.  A missing file is FileNotFoundError.
"""

from __future__ import annotations


class GruInferError(ValueError):
    """Base of every error gru_infer raises on purpose."""


class FormatError(GruInferError):
    """A file that is not what it claims: truncated, malformed, over a limit."""


class ConversionError(GruInferError):
    """A readable checkpoint that does not map onto a gru_infer model."""


class InputError(GruInferError):
    """A call argument of the wrong shape, value or kind."""


class InputTypeError(InputError, TypeError):
    """A call argument of the wrong dtype or type (also a TypeError)."""


class CoreUnavailableError(GruInferError, ImportError):
    """The compiled core cannot load here: models can be converted and saved,
    not run."""


class GruInferWarning(UserWarning):
    """Something a conversion assumed (a forward pass guessed from a state
    dict): filter it, or turn it into an error with warnings.simplefilter."""
