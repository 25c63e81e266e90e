"""3D pose metrics: per-pose tensor functions, PSS centroid artifacts and torchmetrics wrappers.

See ``metrics.functional`` for the protocols (MPJPE, P-MPJPE, N-MPJPE, T-MPJPE, PCK, AUC, PSS) and ``metrics.classes`` for the
``torchmetrics.Metric`` classes with per-group (per-action) means.
"""

from metrics.centroids import centroids_for, centroids_path, load_centroids, save_centroids
from metrics.classes import AUC, MPJPE, NMPJPE, PCK, PMPJPE, PSS, TMPJPE
from metrics.functional import (
    AUC_THRESHOLDS_MM,
    auc,
    fit_pss_centroids,
    joint_errors,
    medoid_pose,
    mpjpe,
    n_mpjpe,
    p_mpjpe,
    pck,
    procrustes_align,
    pss,
    pss_labels,
    pss_normalise,
    root_centre,
    t_mpjpe,
)

__all__ = [
    "AUC",
    "AUC_THRESHOLDS_MM",
    "MPJPE",
    "NMPJPE",
    "PCK",
    "PMPJPE",
    "PSS",
    "TMPJPE",
    "auc",
    "centroids_for",
    "centroids_path",
    "fit_pss_centroids",
    "joint_errors",
    "load_centroids",
    "medoid_pose",
    "mpjpe",
    "n_mpjpe",
    "p_mpjpe",
    "pck",
    "procrustes_align",
    "pss",
    "pss_labels",
    "pss_normalise",
    "root_centre",
    "t_mpjpe",
    "save_centroids",
]
