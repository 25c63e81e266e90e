"""Methods of the suite, one ``LightningModule`` per paper (``methods.base.PoseEstimator`` is their base).

The methods import lazily from here (``methods.SVMAC``); the CLI imports every one of them so that
``--model SVMAC`` resolves by its short name (jsonargparse knows the imported subclasses).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SVMAC": "methods.svmac",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'methods' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
