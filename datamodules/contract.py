"""The batch contract: the keys a data module may yield, and the check methods run on them.

Every data module yields ``dict`` batches. A data module lists the keys it provides in
``provides``; a method lists the keys it needs in ``requires``; :func:`check_keys` fails early
with a message naming the missing key and data modules that have it.

Multi-view and temporal samples add a dimension after B: ``(B, V, ...)`` for synchronised views,
``(B, T, ...)`` for frame pairs or clips.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: key -> (shape, meaning). Units are part of the meaning and never guessed.
KEYS: dict[str, tuple[str, str]] = {
    "joints_3d": ("(B, J, 3)", "camera-frame joint positions, millimetres"),
    "joints_3d_world": ("(B, J, 3)", "world-frame joint positions (Z up), millimetres"),
    "joints_2d": ("(B, J, 2)", "image-plane joints, pixels (detections when the data module adds noise)"),
    "joints_2d_gt": ("(B, J, 2)", "noise-free projected joints, pixels"),
    "visible": ("(B, J)", "joint annotated and in frame (bool)"),
    "image": ("(B, 3, H, W)", "float RGB in [0, 1]"),
    "mask": ("(B, 1, H, W)", "figure-ground mask (bool)"),
    "parts": ("(B, H, W)", "part labels, 0 = background (int64)"),
    "depth": ("(B, 1, H, W)", "depth along the optical axis, millimetres, 0 = background"),
    "flow": ("(B, 2, H, W)", "optical flow to the next frame, pixels"),
    "background": ("(B, 3, H, W)", "background estimate of the sample's video (temporal median), float RGB in [0, 1]"),
    "K": ("(B, 3, 3)", "intrinsics, pixels"),
    "R": ("(B, 3, 3)", "world-to-camera rotation"),
    "t": ("(B, 3)", "world-to-camera translation, millimetres"),
    "subject": ("(B,)", "subject id (int64)"),
    "action": ("(B,)", "action id (int64), named by the data module's ``action_names``"),
    "frame": ("(B,)", "frame index within its sequence (int64)"),
    "sequence": ("(B,)", "sequence id (int64), for pairing frames of one video"),
    "camera": ("(B,)", "index of the camera in its dataset's or scene's rig (int64)"),
    "scene": ("(B,)", "scene (background and rig) id of rendered data (int64)"),
    "distortion": (
        "(B, 5)",
        "lens distortion [k1, k2, k3, p1, p2] of the Human3.6M model (datamodules.recorded.distortion)",
    ),
}

#: data module class name -> keys it provides, filled by :func:`register`.
PROVIDERS: dict[str, frozenset[str]] = {}


def register(cls):
    """Class decorator that records a data module's ``provides`` so error messages can name it."""
    unknown = set(cls.provides) - KEYS.keys()
    if unknown:
        raise ValueError(f"{cls.__name__}.provides has keys outside the batch contract: {sorted(unknown)}")
    PROVIDERS[cls.__name__] = frozenset(cls.provides)
    return cls


def check_keys(needed: Iterable[str], provided: Iterable[str], *, method: str, datamodule: str) -> None:
    """Raise ``KeyError`` naming each key ``method`` needs that ``datamodule`` does not provide."""
    missing = sorted(set(needed) - set(provided))
    if not missing:
        return
    import datamodules  # every data module registers itself on import: load them all to name the providers

    for name in datamodules.__all__:
        getattr(datamodules, name)
    lines = []
    for key in missing:
        shape, meaning = KEYS.get(key, ("?", "not in the batch contract"))
        having = sorted(name for name, keys in PROVIDERS.items() if key in keys)
        where = f"provided by: {', '.join(having)}" if having else "no registered data module provides it"
        lines.append(f"  - {key} {shape}: {meaning} ({where})")
    raise KeyError(
        f"method {method} needs batch keys that data module {datamodule} does not provide:\n" + "\n".join(lines)
    )


def check_batch(batch: Mapping, needed: Iterable[str], *, method: str) -> None:
    """Check a concrete batch (for data modules that did not declare ``provides``)."""
    missing = sorted(set(needed) - set(batch))
    if missing:
        raise KeyError(f"method {method} needs batch keys {missing}; the batch has {sorted(batch)}")
