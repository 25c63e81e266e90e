"""MPI-INF-3DHP test-set evaluation as the official MATLAB scripts compute it.

The test set's ``test_util`` (``mpii_test_predictions.m``, ``mpii_evaluate_errors.m``, ``mpii_compute_3d_pck.m``)
scores predictions like this, and so does :func:`evaluate_3dhp`:

* only frames with ``valid_frame`` count;
* ground truth is ``univ_annot3`` and both poses are root-centred at the pelvis before the per-joint distance;
* a joint is correct when its error is **strictly less than** the threshold; PCK uses 150 mm, the AUC is the mean
  PCK over the 31 thresholds 0, 5, ..., 150 mm (so a perfect prediction has AUC 30/31 = 96.8, as in the scripts);
* PCK and AUC pool all (frame, joint) pairs of a joint group; the 'Total' pools all joints of the set;
* results come per test sequence (TS1..TS6), per activity (the 7 ``activity_annotation`` classes, pooling frames of
  all sequences) and for 'All' frames pooled; values are percentages as in the scripts' tables.

Two joint groupings circulate, both named here (joint indices are ``H36M_17``'s):

* ``all17``: all 17 joints, groups Head (head top + head, [1, 17]), Neck, Shoulder, Elbow, Wrist, Spine ([16]), Hip
  (left, right and pelvis, [9, 12, 15]), Knee, Ankle -- the grouping of the released test set's
  ``mpii_get_pck_auc_joint_groups.m``;
* ``h36m14``: the 14 joints without pelvis, spine and head centre (``H36M_14_SUBSET``), groups Head (head top), Neck,
  Shoulder, Elbow, Wrist, Hip, Knee, Ankle -- a later variant of that script (head centre and spine rows commented
  out, pelvis dropped from Hip) that many lifting papers' copies of ``test_util`` use.

The pelvis is error-free after root-centring, so ``all17`` scores are higher than ``h36m14`` ones for the same
prediction: always say which one a number is.
"""

from __future__ import annotations

import torch

from datamodules.skeleton import H36M_14_SUBSET, H36M_17

from .functional import AUC_THRESHOLDS_MM, auc, mpjpe, pck

PCK_THRESHOLD_MM = 150.0

_j = H36M_17.index
#: Joint sets by name: indices into ``H36M_17``.
JOINT_SETS: dict[str, tuple[int, ...]] = {"all17": tuple(range(17)), "h36m14": tuple(H36M_14_SUBSET)}
#: Joint groups of the per-group PCK/AUC tables, per joint set. Each set's groups partition it, so the scripts'
#: 'Total' (group results weighted by group size) is the pooled value over the whole set.
JOINT_GROUPS: dict[str, dict[str, tuple[int, ...]]] = {
    "all17": {
        "Head": (_j("Head"), _j("Neck/Nose")), "Neck": (_j("Thorax"),),
        "Shoulder": (_j("RShoulder"), _j("LShoulder")), "Elbow": (_j("RElbow"), _j("LElbow")),
        "Wrist": (_j("RWrist"), _j("LWrist")), "Spine": (_j("Spine"),), "Hip": (_j("RHip"), _j("LHip"), _j("Hip")),
        "Knee": (_j("RKnee"), _j("LKnee")), "Ankle": (_j("RFoot"), _j("LFoot")),
    },
    "h36m14": {
        "Head": (_j("Head"),), "Neck": (_j("Thorax"),), "Shoulder": (_j("RShoulder"), _j("LShoulder")),
        "Elbow": (_j("RElbow"), _j("LElbow")), "Wrist": (_j("RWrist"), _j("LWrist")), "Hip": (_j("RHip"), _j("LHip")),
        "Knee": (_j("RKnee"), _j("LKnee")), "Ankle": (_j("RFoot"), _j("LFoot")),
    },
}  # fmt: skip
#: ``mpii_get_activity_name``, activity codes 1..7.
ACTIVITIES = ("Standing/Walking", "Exercising", "Sitting", "Reaching/Crouching", "On The Floor", "Sports",
              "Miscellaneous")  # fmt: skip


def pck_auc(pred: torch.Tensor, target: torch.Tensor, joints: tuple[int, ...], root: int = 0) -> tuple[float, float]:
    """PCK@150 mm and AUC (both in %) pooled over all frames and the given joints.

    Args:
        pred, target: (N, 17, 3) joints (mm); both are root-centred at ``root`` (the pelvis).
        joints: indices into the 17 joints.

    Returns:
        (pck, auc) in percent. Every frame has the same joints, so the pooled fraction is the mean of the per-frame
        fractions of :func:`metrics.functional.pck` / :func:`metrics.functional.auc`.
    """
    if pred.shape[0] == 0:
        return float("nan"), float("nan")
    p = pck(pred, target, PCK_THRESHOLD_MM, joints=list(joints), root=root).double().mean()
    a = auc(pred, target, AUC_THRESHOLDS_MM, joints=list(joints), root=root).double().mean()
    return 100.0 * float(p), 100.0 * float(a)


def _table(pred: torch.Tensor, target: torch.Tensor, joint_set: str, root: int) -> dict:
    joints = JOINT_SETS[joint_set]
    pck_all, auc_all = pck_auc(pred, target, joints, root)
    err = float(mpjpe(pred, target, root=root, joints=list(joints)).double().mean()) if len(pred) else float("nan")
    groups = {}
    for name, idx in JOINT_GROUPS[joint_set].items():
        g_pck, g_auc = pck_auc(pred, target, idx, root)
        groups[name] = {"pck": g_pck, "auc": g_auc}
    return {"pck": pck_all, "auc": auc_all, "mpjpe": err, "frames": int(pred.shape[0]), "groups": groups}


def evaluate_3dhp(pred: torch.Tensor, target: torch.Tensor, sequence: torch.Tensor, activity: torch.Tensor,
                  valid: torch.Tensor | None = None, joint_sets: tuple[str, ...] = ("all17", "h36m14"), root: int = 0,
                  sequence_names: dict[int, str] | None = None) -> dict[str, dict]:  # fmt: skip
    """The official per-sequence, per-activity and overall tables.

    Args:
        pred: (N, 17, 3) predictions (mm), ``H36M_17`` order (root-relative or not: both are re-centred).
        target: (N, 17, 3) ground truth (mm), ``univ_annot3`` in ``H36M_17`` order.
        sequence: (N,) int test sequence of each frame (e.g. 1..6, named ``TS<i>`` unless ``sequence_names``).
        activity: (N,) int activity code 1..7 (``activity_annotation``; a data module's ``action`` + 1).
        valid: (N,) bool ``valid_frame``; None = all frames are valid.
        joint_sets: which of ``JOINT_SETS`` to report.
        root: pelvis index (0 in ``H36M_17``).

    Returns:
        {joint set: {"sequences": {name: row}, "activities": {name: row}, "all": row}}, each row
        {"pck", "auc" (%), "mpjpe" (mm, over the set's joints), "frames", "groups": {group: {"pck", "auc"}}}.
        Activities without valid frames are left out.
    """
    if pred.ndim != 3 or pred.shape != target.shape or pred.shape[1:] != (17, 3):
        raise ValueError(f"evaluate_3dhp: pred {tuple(pred.shape)} and target {tuple(target.shape)} must be (N, 17, 3)")
    n = pred.shape[0]
    for arg, x in (("sequence", sequence), ("activity", activity), ("valid", valid)):
        if x is not None and tuple(x.shape) != (n,):
            raise ValueError(f"evaluate_3dhp: {arg} must have shape ({n},), got {tuple(x.shape)}")
    unknown = [s for s in joint_sets if s not in JOINT_SETS]
    if unknown:
        raise ValueError(f"evaluate_3dhp: joint sets {unknown} unknown; choose from {sorted(JOINT_SETS)}")
    keep = torch.ones(n, dtype=torch.bool) if valid is None else valid.bool().cpu()
    pred, target = pred[keep].float(), target[keep].float()
    sequence, activity = sequence.cpu()[keep].long(), activity.cpu()[keep].long()
    bad = activity[(activity < 1) | (activity > 7)].unique().tolist()
    if bad:
        raise ValueError(f"evaluate_3dhp: activity codes must be 1..7 (activity_annotation), got {bad}")
    names = sequence_names or {}
    out = {}
    for joint_set in joint_sets:
        seqs = {names.get(s, f"TS{s}"): _table(pred[sequence == s], target[sequence == s], joint_set, root)
                for s in sequence.unique().tolist()}  # fmt: skip
        acts = {ACTIVITIES[a - 1]: _table(pred[activity == a], target[activity == a], joint_set, root)
                for a in range(1, 8) if (activity == a).any()}  # fmt: skip
        out[joint_set] = {"sequences": seqs, "activities": acts, "all": _table(pred, target, joint_set, root)}
    return out
