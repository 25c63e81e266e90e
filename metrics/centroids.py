"""Pose Structure Score centroid artifacts: fit once per data set, cache as ``artifacts/pss_<data>_k<k>.pt``.

PSS numbers are only comparable between methods evaluated with the *same* centroids, so the centroids are an
artifact of the data set (fitted on its training poses with a fixed seed), not of a run. The file is a ``torch.save``
dict ``{"format", "centroids": (k, J*3) float32, "meta": {...}}`` loadable with ``weights_only=True``.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from metrics.functional import fit_pss_centroids

log = logging.getLogger(__name__)

FORMAT = "posebench.pss_centroids.v1"
#: k-means settings of cached centroids (recorded in the file's meta).
MAX_FIT_POSES = 100_000
N_INIT = 1
_META_TYPES = (str, int, float, bool, type(None))


def centroids_path(data_name: str, k: int, cache_dir: str | os.PathLike = "artifacts") -> Path:
    """``<cache_dir>/pss_<data_name>_k<k>.pt``."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", data_name):
        raise ValueError(f"PSS data_name {data_name!r} must be a plain file-name part (letters, digits, '_', '.', '-')")
    return Path(cache_dir) / f"pss_{data_name}_k{k}.pt"


def save_centroids(path: str | os.PathLike, centroids: torch.Tensor, meta: Mapping[str, object]) -> Path:
    """Write centroids and their metadata atomically (temp file in the same folder + ``os.replace``).

    Atomic so that concurrent writers (e.g. several DDP ranks fitting the same centroids) or an interrupted run never
    leave a half-written file that a later run would load.

    Args:
        path: destination ``.pt`` file; parent folders are created.
        centroids: (k, J*3) centroids (stored as float32 on CPU).
        meta: plain values (str, int, float, bool, None): data set, k, seed, number of poses, ...

    Returns:
        The path written.
    """
    path = Path(path)
    if not isinstance(centroids, torch.Tensor) or centroids.ndim != 2:
        raise ValueError(f"save_centroids({path}): centroids must be a (k, J*3) tensor")
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, _META_TYPES):
            raise TypeError(
                f"save_centroids({path}): meta[{key!r}] = {value!r} must be str, int, float, bool or None "
                "(so the file loads with weights_only=True)"
            )
    centroids = centroids.detach().to("cpu", torch.float32).contiguous()
    payload = {"format": FORMAT, "centroids": centroids, "meta": dict(meta)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_centroids(path: str | os.PathLike) -> tuple[torch.Tensor, dict]:
    """Read a file written by ``save_centroids``.

    Returns:
        ``(centroids (k, J*3) float32 on CPU, meta dict)``.

    Raises:
        FileNotFoundError: the file does not exist (the message says how to create it).
        ValueError: the file is not a valid centroid file (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"PSS centroid file {path} not found; create it with metrics.centroids_for(data_name, k, "
            "datamodule.train_poses_3d), which fits k-means on the training poses and saves it there"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt/foreign files
        raise ValueError(f"PSS centroid file {path} cannot be read ({err}); delete it to refit") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"PSS centroid file {path} is not a {FORMAT} file; delete it to refit")
    centroids, meta = payload.get("centroids"), payload.get("meta")
    if not isinstance(centroids, torch.Tensor) or centroids.ndim != 2 or not centroids.is_floating_point():
        raise ValueError(f"PSS centroid file {path}: 'centroids' must be a (k, J*3) float tensor; delete it to refit")
    if not isinstance(meta, dict):
        raise ValueError(f"PSS centroid file {path}: 'meta' must be a dict; delete it to refit")
    if "k" in meta and meta["k"] != centroids.shape[0]:
        raise ValueError(f"PSS centroid file {path}: meta says k={meta['k']} but holds {centroids.shape[0]} centroids")
    return centroids, meta


def centroids_for(
    data_name: str,
    k: int,
    poses_fn: Callable[[], torch.Tensor | np.ndarray],
    cache_dir: str | os.PathLike = "artifacts",
    seed: int = 0,
    num_poses: int | None = None,
) -> torch.Tensor:
    """PSS centroids for a data set: loaded from the cache, or fitted on ``poses_fn()`` and saved.

    The cached file ``<cache_dir>/pss_<data_name>_k<k>.pt`` is reused only if its metadata matches ``data_name``,
    ``k``, ``seed``, the number of training poses and the k-means settings; otherwise (or if it is unreadable) it is
    refitted and replaced. Several processes may call this at once (DDP): fitting is deterministic and the write is
    atomic, so they all end up with identical centroids.

    Args:
        data_name: data set name (``datamodule.name``), part of the file name.
        k: number of clusters.
        poses_fn: returns the (N, J, 3) training poses in mm, e.g. ``datamodule.train_poses_3d``; called only when
            needed (``num_poses`` not given, or fitting).
        cache_dir: folder of the artifact.
        seed: k-means / subsampling seed.
        num_poses: expected N; pass it to validate the cache without calling ``poses_fn``.

    Returns:
        (k, J*3) float32 centroids on CPU.
    """
    path = centroids_path(data_name, k, cache_dir)
    poses = None
    if path.is_file():
        try:
            centroids, meta = load_centroids(path)
        except ValueError as err:
            log.warning("%s; refitting", err)
        else:
            if num_poses is None:
                poses = torch.as_tensor(poses_fn())
                num_poses = int(poses.shape[0])
            want = {"data": data_name, "k": k, "seed": seed, "num_poses": num_poses, "max_poses": MAX_FIT_POSES,
                    "n_init": N_INIT}  # fmt: skip
            stale = {key: (meta.get(key), value) for key, value in want.items() if meta.get(key) != value}
            if not stale:
                return centroids
            log.warning("PSS centroid file %s is stale (found vs wanted: %s); refitting", path, stale)
    if poses is None:
        poses = torch.as_tensor(poses_fn())
    if poses.ndim != 3:
        shape = tuple(poses.shape)
        raise ValueError(f"centroids_for({data_name!r}): poses_fn must return (N, J, 3) poses, got {shape}")
    log.info("fitting PSS centroids k=%d on %d poses of %s", k, poses.shape[0], data_name)
    centroids = fit_pss_centroids(poses, k=k, seed=seed, max_poses=MAX_FIT_POSES, n_init=N_INIT)
    import sklearn

    meta = {
        "data": data_name,
        "k": k,
        "seed": seed,
        "num_poses": int(poses.shape[0]),
        "num_joints": int(poses.shape[1]),
        "max_poses": MAX_FIT_POSES,
        "n_init": N_INIT,
        "sklearn": sklearn.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    save_centroids(path, centroids, meta)
    return centroids
