"""Data modules of the suite, one batch contract (``datamodules.contract``).

Layout: the foundation every family shares sits at the top (``skeleton``, ``cameras``, ``contract``,
``poses``: virtual cameras, batch gathering, loaders; ``stats``), and each family of data has its own
subpackage:

* ``datamodules.motion``: motion seen by virtual cameras (``SyntheticPoses``: procedural motion;
  ``MocapPoses``: BVH motion capture, with the BVH reader and the rigs' name tables);
* ``datamodules.render``: rendered people (``SyntheticHumans``: bodies, scenes, the analytic ray caster
  ``render.raycast``, previews);
* ``datamodules.recorded``: the licensed datasets on their published formats (``Human36M``,
  ``MPIINF3DHP``, ``SURREAL``, the lens model, ``data check``).

The data modules import lazily from here (``datamodules.SyntheticHumans`` in a config), so importing
the skeleton does not load the renderer.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SyntheticPoses": "datamodules.motion.synthetic",
    "MocapPoses": "datamodules.motion.mocap",
    "SyntheticHumans": "datamodules.render.humans",
    "SyntheticHumanPairs": "datamodules.render.video_background",
    "Human36M": "datamodules.recorded.h36m",
    "MPIINF3DHP": "datamodules.recorded.mpi3dhp",
    "SURREAL": "datamodules.recorded.surreal",
    "PoseDataModule": "datamodules.poses",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
