"""What every method shares: the batch-contract check, evaluation through the shared metrics,
per-action tables, the trivial baselines reported beside every method, and prediction plots.

A method subclasses :class:`PoseEstimator`, lists the batch keys it needs in ``requires`` and
implements :meth:`PoseEstimator.predict_pose` plus its own training step.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DistributedSampler

from datamodules.contract import check_keys
from datamodules.skeleton import H36M_17, Skeleton
from metrics import AUC, MPJPE, NMPJPE, PCK, PMPJPE, PSS, centroids_for, medoid_pose
from metrics import uncertainty as U

from .geometry import mean_root_distance, normalise_2d, root_centre

#: Keys every evaluation needs besides what a method needs for prediction.
EVAL_KEYS = ("joints_3d", "action")
#: the trivial baselines: their role in a table (the mean training pose is the floor of every table) and the
#: batch keys they read at test time (their leaderboard input). The medoid pose is the best constant prediction under
#: P-MPJPE: a method that does not beat it has not learnt a pose that follows its input.
BASELINE_ROLES = {"baseline-mean-pose": "floor", "baseline-medoid-pose": "baseline", "baseline-zero-depth": "baseline"}
BASELINE_INPUTS = {"baseline-mean-pose": (), "baseline-medoid-pose": (), "baseline-zero-depth": ("joints_2d",)}
BASELINES = tuple(BASELINE_ROLES)


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite; the message names the loss and the step."""


#: columns of the per-pose identities kept during test: resampling unit, frame, action, ground-truth checksum
ID_COLUMNS = ("unit", "frame", "action", "checksum")


def unpadded_share(loader) -> int | None:
    """How many of this process's samples of ``loader`` are real, when a ``DistributedSampler`` shards it.

    Under DDP, Lightning gives evaluation loaders a ``DistributedSampler`` (``drop_last=False``), which
    pads the index list to ``num_replicas * num_samples`` by repeating its first indices *at the end*;
    process ``r`` takes global positions ``r, r + W, r + 2W, ...``, so its padded samples are the
    tail of its share: it holds ``ceil((N - r) / W)`` real ones. None when nothing is padded (no
    distributed sampler, ``drop_last=True``, or a sampler that never pads).
    """
    sampler = getattr(loader, "sampler", None)
    if not isinstance(sampler, DistributedSampler):
        sampler = getattr(getattr(loader, "batch_sampler", None), "sampler", None)
    if not isinstance(sampler, DistributedSampler) or sampler.drop_last:
        return None
    real = math.ceil((len(sampler.dataset) - sampler.rank) / sampler.num_replicas)
    return None if real >= sampler.num_samples else max(real, 0)


def data_fingerprint(poses: torch.Tensor) -> str:
    """Short content hash of a pose tensor, to name artifacts after the data they came from."""
    return hashlib.sha1(poses.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:10]


class PoseEstimator(L.LightningModule):
    """Base class of every method.

    Evaluation protocol: predictions and ground truth are camera-frame poses in mm on the data
    module's skeleton; every metric root-centres at the pelvis. Methods that recover a pose only
    up to scale return it at the mean training-pose size (a single global number taken from the
    data module, recorded as ``scale`` in the protocol); P-MPJPE, N-MPJPE and PSS do not depend on it.

    Args:
        pss_k: cluster counts of the Pose Structure Score.
        eval_baselines: also evaluate the trivial baselines (mean training pose, zero-depth 2D).
        artifacts_dir: where PSS centroids are cached (named after the data they came from).
        finite_check_every: check the training losses for NaN/inf every this many steps (0: never); a
            non-finite loss stops the fit before its backward pass, naming the loss and the step (the
            exception makes the checkpoint callback write ``last.ckpt``). Each check waits for the
            device, so on GPUs a larger value (e.g. 50) keeps the step free of host syncs.
    """

    requires: tuple[str, ...] = ("joints_2d",)
    #: the batch keys the method reads at inference: they decide the "input" column of its leaderboard row
    input_keys: tuple[str, ...] = ("joints_2d",)
    #: "method", or "ceiling" for the supervised reference the self-supervised rows are read against
    role = "method"
    scale_source = "train-mean"

    def __init__(self, pss_k: tuple[int, ...] = (50, 100), eval_baselines: bool = True,
                 artifacts_dir: str = "artifacts", finite_check_every: int = 1):  # fmt: skip
        super().__init__()
        if finite_check_every < 0:
            raise ValueError(f"finite_check_every must be >= 0 (0: never), got {finite_check_every}")
        self.finite_check_every = finite_check_every
        self.pss_k = tuple(pss_k)
        self.eval_baselines = eval_baselines
        self.artifacts_dir = artifacts_dir
        self.skeleton: Skeleton = H36M_17
        #: the background estimate the training pairs came with (``SyntheticHumanPairs``: median or plate), for the
        #: input column of methods that read it; None for other data modules. Known at setup.
        self.background_source: str | None = None
        self.evaluators = nn.ModuleDict()
        self.test_results: dict[str, dict] = {}
        #: the method's metrics at every validation (saved in checkpoints, copied into result records)
        self.val_history: list[dict] = []
        #: "val" / "test" -> (predictions, ground truth) of a few samples of the epoch's first batch, for plots
        self._plot_batches: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        # DDP: real samples of this process's share of the evaluation loader (see unpadded_share) and samples seen
        self._eval_real: int | None = None
        self._eval_seen = 0
        # test: per-pose identities (B, 4) per batch, see ID_COLUMNS; None outside a test epoch
        self._kept_ids: list[torch.Tensor] | None = None

    # -- what a method implements ---------------------------------------------------------------
    def predict_pose(self, batch: dict) -> torch.Tensor:
        """(B, J, 3) camera-frame pose in mm (root-relative is fine) for every sample of ``batch``."""
        raise NotImplementedError

    def stop_if_not_finite(self, losses: dict[str, torch.Tensor]) -> None:
        """Raise :class:`NonFiniteLossError` naming the first NaN/inf loss of this step (see ``finite_check_every``)."""
        every = self.finite_check_every
        if not every or self.global_step % every:
            return
        values = torch.stack([v.detach().float().reshape(()) for v in losses.values()])
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            first = int((~finite).nonzero()[0, 0])
            name = list(losses)[first]
            raise NonFiniteLossError(
                f"{type(self).__name__}: loss {name!r} is {float(values[first])} at step "
                f"{self.global_step} (epoch {self.current_epoch}); the fit stopped before its backward pass and "
                "last.ckpt holds the weights before it. Lower the learning rate or check the data of this step."
            )

    # -- inputs of each estimator (the leaderboard's "input" column) ------------------------------------
    def input_description(self, name: str, data_protocol: dict | None = None) -> str:
        """What estimator ``name`` (the method or a baseline) reads at test time, e.g. ``image rgb64x64`` or
        ``2D gt+noise5px``, from the data module's protocol (default: the one of the last setup)."""
        keys = BASELINE_INPUTS.get(name, self.input_keys)
        if not keys:
            return "none"
        proto = getattr(self, "data_protocol", {}) if data_protocol is None else data_protocol
        words = {"image": f"image {proto.get('input', '')}".strip(), "joints_2d": f"2D {proto.get('input_2d', 'gt')}"}
        return " + ".join(words.get(k, k) for k in keys)

    # -- setup --------------------------------------------------------------------------------------
    @property
    def method_name(self) -> str:
        return type(self).__name__.lower()

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule if self.trainer is not None else None
        if dm is None:
            raise RuntimeError(f"{type(self).__name__} needs a data module (set 'data:' in the config)")
        needed = set(self.requires) | (set(EVAL_KEYS) if stage in ("fit", "validate", "test") else set())
        check_keys(needed, getattr(dm, "provides", ()), method=type(self).__name__, datamodule=type(dm).__name__)
        self.read_datamodule(dm)
        self.prepare_evaluation(dm)

    def read_datamodule(self, dm) -> None:
        """What the estimator keeps of its data module besides the batches: the skeleton, and the background
        estimate training reads (``SyntheticHumanPairs``), which input descriptions name. :meth:`setup` calls it,
        and so does the suite before it works out a run's record name (no setup there)."""
        self.skeleton = getattr(dm, "skeleton", H36M_17)
        self.background_source = getattr(dm, "background_source", None)

    def prepare_evaluation(self, dm) -> None:
        """Statistics of the training poses (mean pose, scale, PSS clusters) and the metric objects."""
        train = root_centre(dm.train_poses_3d().float(), self.skeleton.root)
        self.mean_pose = train.mean(dim=0)
        self.medoid_pose = medoid_pose(train)
        self.pose_scale_mm = float(mean_root_distance(train, self.skeleton.root).mean())
        data_name = f"{dm.name}-{data_fingerprint(train)}"
        self.centroids = {
            k: centroids_for(data_name, k, lambda: train, cache_dir=self.artifacts_dir) for k in self.pss_k
        }
        self.action_names = list(getattr(dm, "action_names", []))
        self.data_name = dm.name
        self.data_protocol = dict(getattr(dm, "protocol", {}))
        names = [self.method_name, *(BASELINES if self.eval_baselines else ())]
        groups = max(1, len(self.action_names))
        self.evaluators = nn.ModuleDict({name: self.make_metrics(groups) for name in names}).to(self.device)

    def make_metrics(self, groups: int) -> nn.ModuleDict:
        metrics = [MPJPE(num_groups=groups), PMPJPE(num_groups=groups), NMPJPE(num_groups=groups),
                   PCK(num_groups=groups), AUC(num_groups=groups)]  # fmt: skip
        metrics += [PSS(self.centroids[k], num_groups=groups) for k in self.pss_k]
        return nn.ModuleDict({m.name: m for m in metrics})

    # -- evaluation ---------------------------------------------------------------------------------
    def baseline_pose(self, name: str, batch: dict) -> torch.Tensor:
        """The trivial baselines: the mean and the medoid training pose, and the input 2D pose with zero depth."""
        if name in ("baseline-mean-pose", "baseline-medoid-pose"):
            pose = self.mean_pose if name == "baseline-mean-pose" else self.medoid_pose
            return pose.to(batch["joints_3d"]).expand_as(batch["joints_3d"])
        flat = normalise_2d(batch["joints_2d"].float(), 1.0, self.skeleton.root) * self.pose_scale_mm
        return torch.cat([flat, torch.zeros_like(flat[..., :1])], dim=-1)

    def estimates(self, batch: dict) -> dict[str, torch.Tensor]:
        out = {self.method_name: self.predict_pose(batch)}
        for name in self.evaluators:
            if name in BASELINES:
                out[name] = self.baseline_pose(name, batch)
        return out

    def _start_evaluation(self, loaders) -> None:
        """Before a validation / test epoch: count samples so that DDP padding can be dropped (see unpadded_share)."""
        if isinstance(loaders, (list, tuple)):
            if len(loaders) > 1 and self.trainer.world_size > 1:
                raise NotImplementedError(
                    f"{type(self).__name__}: several evaluation loaders under DDP are not supported (their "
                    "DistributedSampler padding would be counted); use one validation / test loader"
                )
            loaders = loaders[0] if loaders else None
        self._eval_real = unpadded_share(loaders)
        self._eval_seen = 0

    def _drop_padding(self, batch: dict) -> dict:
        """The batch without the DistributedSampler's repeated samples (they come last in this process's share)."""
        size = batch["joints_3d"].shape[0]
        start, self._eval_seen = self._eval_seen, self._eval_seen + size
        if self._eval_real is None or start + size <= self._eval_real:
            return batch
        keep = max(self._eval_real - start, 0)
        return {
            k: v[:keep] if isinstance(v, (torch.Tensor, list, tuple)) and len(v) == size else v
            for k, v in batch.items()
        }

    def on_validation_epoch_start(self) -> None:
        self._start_evaluation(self.trainer.val_dataloaders)

    def on_test_epoch_start(self) -> None:
        self._start_evaluation(self.trainer.test_dataloaders)
        self._keep_per_pose(True)

    # -- per-pose values at test: intervals and paired tests (metrics.uncertainty) -------------------------------
    @property
    def resampling_unit(self) -> str:
        """'sequence' when the data module gives sequence ids (frames of a sequence are correlated), else 'pose'."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        return "sequence" if "sequence" in getattr(dm, "provides", ()) else "pose"

    def _keep_per_pose(self, keep: bool) -> None:
        self._kept_ids = [] if keep else None
        for metrics in self.evaluators.values():
            for metric in metrics.values():
                metric.keep_values(keep)

    def _identities(self, batch: dict) -> torch.Tensor:
        """(B, 4) int64 identities of the batch's poses (ID_COLUMNS); -1 where the data module lacks the key."""
        target = batch["joints_3d"]
        size = target.shape[0]
        missing = torch.full((size,), -1, dtype=torch.long, device=target.device)
        cols = [batch.get("sequence", missing), batch.get("frame", missing), batch["action"], U.pose_checksum(target)]
        return torch.stack([c.reshape(size, -1)[:, 0].long().to(target.device) for c in cols], dim=1)

    def _gather_rows(self, local: torch.Tensor) -> np.ndarray:
        """(N, K) rows of every process (each process's share of the test set; their order is fixed later)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return local.cpu().numpy()
        counts = self.all_gather(torch.tensor(local.shape[0], device=self.device))
        padded = local.new_zeros((int(counts.max()), local.shape[1]))
        padded[: local.shape[0]] = local.to(padded.device)
        rows = self.all_gather(padded)  # (W, max share, K): shares differ by the dropped padding
        real = torch.arange(padded.shape[0], device=rows.device)[None] < counts.to(rows.device)[:, None]
        return rows[real].cpu().numpy()

    def per_pose_results(self) -> dict[str, dict]:
        """Every estimator's per-pose values of this test epoch, their intervals and frame identities.

        Poses are put in a canonical order (unit, frame, checksum), so that records of one test set are aligned
        pose by pose whatever the batching or the number of processes. Returns ``{estimator: {"ci", "uncertainty",
        "per_pose"}}``; ``per_pose["arrays"]`` holds the identity columns and one float32 array per metric.
        """
        device = self.device
        ids = self._gather_rows(torch.cat(self._kept_ids) if self._kept_ids else torch.zeros(0, 4, dtype=torch.long))
        count = sum(len(i) for i in self._kept_ids or [])
        # only metrics that kept a value per pose of this epoch (one a method adds mid-test keeps none): the others
        # get no interval
        kept = {(name, key): m.kept_values() for name, metrics in self.evaluators.items() for key, m in metrics.items()}
        columns = [nk for nk, v in kept.items() if v.numel() == count]
        local = [kept[nk].to(device) for nk in columns]
        values = self._gather_rows(torch.stack(local, 1) if local else torch.zeros(count, 0, device=device))
        if len(ids) == 0:
            return {}
        order = np.lexsort((ids[:, 3], ids[:, 1], ids[:, 0]))
        ids, values = ids[order], values[order]
        unit = self.resampling_unit
        if unit == "pose":
            ids[:, 0] = np.arange(len(ids))
        arrays = dict(zip(ID_COLUMNS, ids.T))
        frames = U.frames_hash(arrays["unit"], arrays["frame"], arrays["checksum"])
        meta = {"method": "percentile bootstrap", "level": U.LEVEL, "resamples": U.RESAMPLES, "seed": 0,
                "unit": unit, "units": int(len(np.unique(arrays["unit"]))), "poses": int(len(ids))}  # fmt: skip
        out = {}
        for name in self.evaluators:
            cols = [k for k, (n, _) in enumerate(columns) if n == name]
            if not cols:
                continue
            keys = [columns[k][1] for k in cols]
            low, high = U.bootstrap_ci(values[:, cols], arrays["unit"], U.LEVEL, U.RESAMPLES, seed=0)
            per_metric = {key: values[:, k].astype(np.float32) for key, k in zip(keys, cols)}
            out[name] = {
                "ci": {key: [float(lo), float(hi)] for key, lo, hi in zip(keys, low, high)},
                "uncertainty": meta,
                "per_pose": {"frames_sha1": frames, "arrays": {**arrays, **per_metric}},
            }
        return out

    def _evaluate(self, batch: dict) -> dict[str, torch.Tensor]:
        """Update every estimator's metrics with ``batch``; returns the predictions ({} if the batch was all padding)."""
        batch = self._drop_padding(batch)
        if batch["joints_3d"].shape[0] == 0:
            return {}
        target = batch["joints_3d"].float()
        group = batch["action"].long() if self.action_names else None
        if self._kept_ids is not None:
            self._kept_ids.append(self._identities(batch))
        preds = self.estimates(batch)
        for name, pred in preds.items():
            for metric in self.evaluators[name].values():
                metric.update(pred.float(), target, group)
        return preds

    def _evaluate_and_keep(self, stage: str, batch: dict, batch_idx: int) -> None:
        preds = self._evaluate(batch)
        if batch_idx == 0 and preds:
            self._plot_batches[stage] = (
                preds[self.method_name][:4].detach().cpu(),
                batch["joints_3d"][:4].detach().cpu(),
            )

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate_and_keep("val", batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        current = {"step": int(self.global_step)}
        for name, metrics in self.evaluators.items():
            prefix = "val" if name == self.method_name else f"val_{name}"
            for key, metric in metrics.items():
                value = metric.compute()
                # the value is already reduced over processes (equal on all): sync_dist only averages equal numbers
                self.log(f"{prefix}/{key}", value, prog_bar=prefix == "val" and key == "p_mpjpe", sync_dist=True)
                if name == self.method_name:
                    current[key] = float(value)
                metric.reset()
        if not self.trainer.sanity_checking:
            self.val_history.append(current)
            # a plot costs ~0.3 s: at validation only for loggers that take images (W&B), not for CSV
            if any(hasattr(lg, "log_image") for lg in self.loggers):
                self.plot_predictions("val", step=int(self.global_step))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["val_history"] = self.val_history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.val_history = list(checkpoint.get("val_history", []))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate_and_keep("test", batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        self.test_results = {}
        per_pose = self.per_pose_results()  # every process: gathers across processes
        self._keep_per_pose(False)
        for name, metrics in self.evaluators.items():
            overall, per_action, protocol = {}, {}, {}
            for key, metric in metrics.items():
                value = metric.compute()
                overall[key] = float(value)
                protocol[key] = self.result_protocol(name, key, metric)
                self.log(f"test/{key}" if name == self.method_name else f"test_{name}/{key}", value, sync_dist=True)
                if self.action_names:
                    for action, v in zip(self.action_names, metric.compute_groups().tolist()):
                        if v == v:  # NaN: no test pose of this action (e.g. a training-only action)
                            per_action.setdefault(action, {})[key] = v
                metric.reset()
            self.test_results[name] = {"metrics": overall, "per_action": per_action, "metric_protocol": protocol,
                                       "input": self.input_description(name), "role": self.result_role(name),
                                       **per_pose.get(name, {})}  # fmt: skip
        self.plot_predictions("test")

    def result_protocol(self, name: str, key: str, metric) -> dict:
        """The record's ``metric_protocol`` entry for metric ``key`` of estimator ``name`` (a method may add to it)."""
        return {**metric.protocol, "scale": self.scale_source if key in ("mpjpe", "pck150", "auc") else "n/a"}

    def result_role(self, name: str) -> str:
        """The record's ``role`` of estimator ``name``: the method's own, or the baseline's (floor / baseline)."""
        return self.role if name == self.method_name else BASELINE_ROLES.get(name, "baseline")

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.predict_pose(batch)

    # -- plots --------------------------------------------------------------------------------------
    def plot_predictions(self, stage: str, step: int | None = None) -> Path | None:
        """``<log dir>/<stage>_predictions.png``: a few predictions (Procrustes-aligned) over their ground truth,
        also logged as ``<stage>/predictions`` to loggers that take images (W&B)."""
        if stage not in self._plot_batches or self.trainer is None:
            return None
        log_dir = Path(self.trainer.log_dir or ".")  # every process: trainer.log_dir is a collective call under DDP
        if not self.trainer.is_global_zero:
            return None
        from .plots import plot_pose_pairs

        path = plot_pose_pairs(*self._plot_batches[stage], self.skeleton, log_dir / f"{stage}_predictions.png")
        for logger in self.loggers:
            if hasattr(logger, "log_image"):
                extra = {} if step is None else {"step": step}
                logger.log_image(key=f"{stage}/predictions", images=[str(path)], **extra)
        return path
