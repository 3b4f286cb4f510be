"""Named exceptions: every error the product raises on purpose is one of these.

Messages state the rule first, then the numbers seen, so that a user can fix the
input without reading the code.
"""

from __future__ import annotations

__all__ = [
    "DetectorError",
    "SchemaError",
    "InputError",
    "NotFittedError",
    "ArtifactError",
    "UnsafeArtifactError",
    "CorruptArtifactError",
    "IncompatibleArtifactError",
    "SignatureError",
]


class DetectorError(Exception):
    """Base class of every error raised on purpose by the detector."""


class SchemaError(DetectorError, ValueError):
    """The input as a whole breaks the declaration contract (missing columns, ...)."""


class InputError(DetectorError, ValueError):
    """A file cannot be read (missing, empty, wrong encoding, unknown format, ...)."""


class NotFittedError(DetectorError, ValueError):
    """A fit-time object was used before ``fit``."""


class ArtifactError(DetectorError):
    """A model file cannot be trusted or loaded."""


class UnsafeArtifactError(ArtifactError):
    """The model file asks to load something that a model artifact never contains."""


class CorruptArtifactError(ArtifactError):
    """The model file's bytes do not match the checksum written inside it."""


class IncompatibleArtifactError(ArtifactError):
    """The model file was written in an artifact format this version cannot read."""


class SignatureError(ArtifactError):
    """HMAC signing is required and the file's signature is missing or wrong."""
