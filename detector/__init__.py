"""customs-detector: finds suspicious customs declarations before the goods are released.

Public API::

    import detector
    df = detector.generate(rows=10_000, seed=1)          # synthetic labelled declarations
    model = detector.train(df, budget=0.01)              # features + isolation forest
    model.save("models/detector.joblib")
    model = detector.load_model("models/detector.joblib")
    result = model.score(df)                             # one row out per row in

Attributes are imported lazily so that ``detector --help`` and services that only load a
model do not pay for what they do not use (the CLI must not import pandas or sklearn).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__

__all__ = [
    "__version__",
    "generate",
    "train",
    "load_model",
    "DeclarationModel",
    "DeclarationFeatures",
    "PackedForest",
    "errors",
]

_LAZY = {
    "generate": ("detector.synth", "generate"),
    "train": ("detector.model", "train"),
    "DeclarationModel": ("detector.model", "DeclarationModel"),
    "load_model": ("detector.model", "load_model"),
    "DeclarationFeatures": ("detector.features", "DeclarationFeatures"),
    "PackedForest": ("detector.forest", "PackedForest"),
    "errors": ("detector.errors", None),
}

if TYPE_CHECKING:  # pragma: no cover
    from . import errors
    from .features import DeclarationFeatures
    from .forest import PackedForest
    from .model import DeclarationModel, load_model, train
    from .synth import generate


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        value = mod if attr is None else getattr(mod, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'detector' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
