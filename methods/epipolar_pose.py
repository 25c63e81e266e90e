"""EpipolarPose (Kocabas et al., CVPR 2019): self-supervised 3D pose from multi-view images through epipolar geometry.

Paper notes: ``../shared/papers/kocabas2019_epipolarpose_notes.md``. Sections and equations below refer to it.

Pipeline (Sec. 3.1, Fig. 2). Two branches start from the same pose network (a ResNet, three deconvolutions of
256 filters with kernel 4, volumetric heatmaps of J x D channels; integral soft-argmax gives the 3D pose and,
over x and y only, the 2D pose). The **lower branch** is frozen and gives 2D poses U_i of every view; from the
consecutive view pairs (i, i+1) of a multi-view sample the geometry of :mod:`methods.epipolar` makes a 3D
pseudo-label V (RANSAC fundamental matrix, E = K^T F K, the four (R, t), cheirality, triangulation, vector
median across pairs, scale dropped). The **upper branch** is trained on every view with V expressed in that
view's camera frame, by smooth L1 (Eq. 2). Inference is the upper branch on one image (Sec. 3.2).

Choices where the paper leaves a detail open:

* **Two stages in one fit.** The paper pretrains the network on MPII 2D poses. Here stage 1 trains it on the
  data module's ``joints_2d`` for the first ``lower_steps`` optimiser steps of the same fit (smooth L1, Eq. 2,
  on the soft-argmax 2D pose in normalised heatmap coordinates); at step ``lower_steps`` the weights are copied
  into the frozen lower branch, written to ``<log dir>/lower_2d.pt``, the Adam state is cleared and stage 2
  trains the same (now upper) network on pseudo-labels: both branches start from the 2D-trained weights, as
  both start from the MPII network in the paper. ``lower_checkpoint`` instead loads a stage-1 network (a
  ``lower_2d.pt`` or an EpipolarPose ``.ckpt``) into both branches and skips stage 1. ``use_gt_2d`` (the paper's
  "GT 2D" rows) takes the batch's ``joints_2d`` as the 2D poses and needs no lower branch.
* **Validation during stage 1** is skipped and logs ``val/p_mpjpe = inf``: the network has no 3D estimate yet
  (its x, y with an untrained depth axis can even beat the mean pose, as a flat 2D pose does), so the best
  checkpoint, and the test, always come from stage 2. The record's budget counts both stages.
* **Triangulation** is linear (DLT, kornia ``triangulate_points``), not the polynomial method of Hartley and
  Sturm the paper uses: on exact projections both are exact, and DLT is batched.
* **RANSAC** is :func:`methods.epipolar.ransac_fundamental`: ``kornia`` (batched over pairs and hypotheses:
  8-point minimal sets, MSAC scoring, weighted refit on the inliers) or ``opencv`` (``cv2.findFundamentalMat``
  per pair). Measured at the CPU batch (32 samples x 3 pairs, 128 hypotheses, a shared 2-core CPU): RANSAC
  alone 75 ms (kornia) vs 72 ms (OpenCV); the whole labelling 746 vs 954 view pairs/s
  (``python -m benchmark.bench_epipolar``). OpenCV is the faster on the CPU, so ``configs/cpu_epipolar_pose.yaml``
  uses it; ``configs/epipolar_pose.yaml`` (GPU) keeps kornia, which needs no host round trip in the step. The
  inlier threshold is ``ransac_threshold`` times the image width (px), so it follows the image size.
* **More than two cameras.** Each pair's triangulation lives in the frame of its first camera at its own scale;
  every pair's pose is normalised (root-centred, unit mean root distance) and rotated into camera 0's frame by
  chaining the pairs' relative rotations (R_{0->i} = R_{i-1->i} ... R_{0->1}); the vector median (Astola et al.)
  is taken per joint over the valid pairs; a failed pair breaks the chain for the views after it (their labels
  are dropped). With extrinsics the pairs are triangulated in the world frame and rotated by each camera's R.
* **Target frame and units.** V is root-centred at unit mean root distance (the scale is dropped, Sec. 3.1) and
  rotated into each view's camera frame; the prediction is the soft-argmax (x, y, z) in normalised volume
  coordinates times ``volume_half_size`` (pose units per half volume), root-centred. With the default 2.0 the
  image extent of a person in the crop matches its unit-scale pose (measured on SyntheticHumans crops: 1.9 pose
  units per normalised image unit, 5-95 % range 1.6-2.3), so the heatmaps stay image-aligned. The
  evaluation returns the prediction times the mean training-pose size in mm (``PoseEstimator``).
* **Bad input** (fewer than two views, degenerate/collinear correspondences, too few RANSAC inliers, cheirality
  failure, non-finite numbers) drops the affected views from the loss; ``train/dropped_samples`` and
  ``train/dropped_views`` count them per epoch (sums). A step with nothing valid has a zero loss.
* **Refinement unit** (Sec. 3.3, ``refine: true``): Martinez-style residual MLP (Linear 51 -> 1024, two residual
  blocks of Linear-BN-LeakyReLU-Dropout x 2, an output layer after each block, the intermediate loss on the
  first), trained alongside stage 2 on clean poses with synthetic noise, applied to the network's prediction at
  inference. Clean poses: the data module's ``train_poses_3d()`` (motion capture of the training subjects, as
  the paper trains its RU on Human3.6M motion capture) or a tensor file ``refine_poses`` (N, 17, 3) in mm, e.g.
  ``MocapPoses`` poses saved with ``torch.save``. Noise model (unit-scale poses): isotropic Gaussian per joint,
  std ``refine_noise[0]``; extra depth-only Gaussian per joint, std ``refine_noise[1]``; a global depth stretch
  exp(N(0, ``refine_noise[2]``)) (the network's depth is its least certain axis); then re-normalised.
* **Learning rate.** ``lr_schedule: step`` is the paper's (Adam, divided by 10 at ``lr_milestones`` epochs).
  A fit limited by wall time (the CPU size) never reaches those epochs, so ``configs/cpu_epipolar_pose.yaml`` uses
  ``cosine``: stage 1 decays to 0 over its ``lower_steps`` (the lower branch is frozen at a settled point) and
  stage 2 restarts at ``lr`` and decays to 0 over the rest of the budget (:func:`methods.optim.budget_fraction`),
  as the supervised reference of the common table does over its whole fit.
* **Pseudo-label diagnostics.** ``train/label_p_mpjpe`` is the P-MPJPE (mm) of the valid pseudo-labels against the
  ground truth of the batch; it is logged only, never used for training.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from metrics.functional import p_mpjpe

from .base import PoseEstimator
from .epipolar import BACKENDS, normalise_pose, pseudo_labels
from .geometry import root_centre
from .nn.backbones import check_image, make_backbone
from .nn.blocks import ResidualBlock, dense
from .nn.heads import VolumetricHead, normalized_to_pixels, pixels_to_normalized, soft_argmax_3d, volume_to_2d
from .optim import budget_fraction, cosine

SCHEDULES = ("step", "cosine")


class PoseNet(nn.Module):
    """ResNet + :class:`~methods.nn.heads.VolumetricHead` (Sec. 3.1): image (B, 3, H, W) in [0, 1] -> (B, J, D, h, w) logits."""

    def __init__(self, backbone: str, pretrained: str | None, frozen_bn: bool, channels_last: bool, num_joints: int,
                 depth_bins: int, deconv_layers: int, filters: int):  # fmt: skip
        super().__init__()
        self.backbone = make_backbone(backbone, pretrained, frozen_bn, channels_last, return_strides=(32,))
        self.head = VolumetricHead(self.backbone.out_channels, num_joints, depth_bins, deconv_layers, filters)
        if channels_last:
            self.head = self.head.to(memory_format=torch.channels_last)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(image)[32])


class RefinementUnit(nn.Module):
    """Sec. 3.3, Fig. 3: noisy unit-scale 3D pose (B, J, 3) -> refined poses after each of the 2 blocks (list)."""

    def __init__(self, num_joints: int, width: int = 1024, dropout: float = 0.5, slope: float = 0.2, blocks: int = 2):
        super().__init__()
        self.stem = dense(3 * num_joints, width, dropout, slope=slope)
        self.blocks = nn.ModuleList(ResidualBlock(width, dropout, slope=slope) for _ in range(blocks))
        self.outs = nn.ModuleList(nn.Linear(width, 3 * num_joints) for _ in range(blocks))

    def forward(self, pose: torch.Tensor) -> list[torch.Tensor]:
        h = self.stem(pose.flatten(1))
        outs = []
        for block, out in zip(self.blocks, self.outs):
            h = block(h)
            outs.append(pose + out(h).view_as(pose))  # a residual on the input pose
        return outs


def refine_noise(pose: torch.Tensor, sigma: float, sigma_depth: float, stretch: float, root: int = 0,
                 generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """The refinement unit's noise model (module docstring) on unit-scale (B, J, 3) poses."""
    g = dict(device=pose.device, dtype=pose.dtype, generator=generator)
    noisy = pose + sigma * torch.randn(pose.shape, **g)
    noisy[..., 2] = noisy[..., 2] + sigma_depth * torch.randn(pose.shape[:-1], **g)
    noisy[..., 2] = noisy[..., 2] * torch.exp(stretch * torch.randn(pose.shape[0], 1, **g))
    return normalise_pose(noisy, root)


class EpipolarPose(PoseEstimator):
    """EpipolarPose (see the module docstring).

    Args:
        backbone / pretrained / frozen_bn / channels_last: the ResNet (see ``methods.nn.backbones.make_backbone``).
        image_size: the data's image size (px, square), checked on every batch.
        depth_bins / deconv_layers / filters: the volumetric head (paper: 64, 3, 256).
        volume_half_size: unit-scale pose units spanned by half the volume (module docstring).
        lower_steps: stage-1 steps (2D training of the network that becomes the frozen lower branch).
        lower_checkpoint: a stage-1 network to load instead (``lower_2d.pt`` or an EpipolarPose ``.ckpt``).
        use_gt_2d: pseudo-labels from the batch's ``joints_2d`` (the paper's "GT 2D"); no lower branch.
        use_extrinsics: triangulate with the data's R, t (the paper's "with extrinsics" row); no RANSAC.
        ransac_iterations / ransac_threshold / min_inliers / min_spread / min_front / ransac_backend: the
            geometry (see :func:`methods.epipolar.pseudo_labels`); ``ransac_threshold`` is a fraction of the width.
        beta: the smooth-L1 transition (Eq. 2 has 1).
        refine: train and apply the refinement unit (Sec. 3.3). refine_poses: a (N, J, 3) mm tensor file of clean
            poses (None: the data module's training poses). refine_noise: (sigma, sigma_depth, stretch).
            refine_width / refine_dropout: its MLP.
        lr / weight_decay: Adam. lr_schedule: ``step`` (the paper's: ``lr_milestones`` in epochs divide the
            learning rate by 10) or ``cosine`` (per stage: to 0 over ``lower_steps`` in stage 1, then from ``lr``
            to 0 over the rest of the fit's budget in stage 2; see the module docstring).
        **kwargs: see :class:`methods.base.PoseEstimator`.
    """

    input_keys = ("image",)

    def __init__(self, backbone: str = "resnet50", pretrained: str | None = None, frozen_bn: bool = False,
                 channels_last: bool = False, image_size: int = 256, depth_bins: int = 64, deconv_layers: int = 3,
                 filters: int = 256, volume_half_size: float = 2.0, lower_steps: int = 0,
                 lower_checkpoint: str | None = None, use_gt_2d: bool = False, use_extrinsics: bool = False,
                 ransac_iterations: int = 128, ransac_threshold: float = 0.015, min_inliers: int = 10,
                 min_spread: float = 0.05, min_front: float = 0.9, ransac_backend: str = "kornia", beta: float = 1.0,
                 refine: bool = False, refine_poses: str | None = None,
                 refine_noise: tuple[float, float, float] = (0.05, 0.1, 0.1), refine_width: int = 1024,
                 refine_dropout: float = 0.5, lr: float = 1e-3, weight_decay: float = 0.0, lr_schedule: str = "step",
                 lr_milestones: tuple[int, ...] = (), **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if ransac_backend not in BACKENDS:
            raise ValueError(f"EpipolarPose: model.init_args.ransac_backend={ransac_backend!r}; choose from {BACKENDS}")
        if lr_schedule not in SCHEDULES:
            raise ValueError(f"EpipolarPose: model.init_args.lr_schedule={lr_schedule!r}; choose from {SCHEDULES}")
        if lower_steps < 0:
            raise ValueError(f"EpipolarPose: model.init_args.lower_steps must be >= 0, got {lower_steps}")
        if not use_gt_2d and lower_steps == 0 and lower_checkpoint is None:
            raise ValueError(
                "EpipolarPose needs 2D poses for its pseudo-labels: set model.init_args.lower_steps > 0 (train the "
                "lower branch on joints_2d first, in the same fit), model.init_args.lower_checkpoint (a stage-1 "
                "lower_2d.pt or .ckpt), or model.init_args.use_gt_2d true (ground-truth 2D)"
            )
        if len(refine_noise) != 3:
            raise ValueError(
                f"EpipolarPose: model.init_args.refine_noise is (sigma, sigma_depth, stretch), got {refine_noise}"
            )
        self.requires = ("image", "K", "joints_2d", "joints_3d") + (("R", "t") if use_extrinsics else ())
        J = self.skeleton.num_joints
        make = lambda: PoseNet(backbone, pretrained, frozen_bn, channels_last, J, depth_bins, deconv_layers, filters)  # noqa: E731
        self.net = make()  # the upper branch (and the stage-1 network before it is frozen)
        self.lower = None if use_gt_2d else make().requires_grad_(False)
        self.refiner = RefinementUnit(J, refine_width, refine_dropout) if refine else None
        self._lower_ready = use_gt_2d
        self._stage_2_from = 0.0  # the fit's budget fraction at the start of stage 2 (the cosine restarts there)
        self.dropped_total = 0
        if lower_checkpoint is not None and not use_gt_2d:
            self.load_lower(lower_checkpoint)

    # -- the two branches --------------------------------------------------------------------------------
    def load_lower(self, path: str) -> None:
        """A stage-1 network into both branches (the upper branch starts from it too, as in the paper)."""
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"EpipolarPose: model.init_args.lower_checkpoint {path} does not exist; give the "
                                    "lower_2d.pt a stage-1 fit wrote into its log folder, or an EpipolarPose .ckpt")  # fmt: skip
        state = torch.load(file, map_location="cpu", weights_only=False)
        if "state_dict" in state:  # a Lightning checkpoint: its frozen lower branch if it had one, else its net
            sd = state["state_dict"]
            prefix = (
                "lower." if state.get("epipolar_lower_ready") and any(k.startswith("lower.") for k in sd) else "net."
            )
            state = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
        try:
            self.lower.load_state_dict(state)
            self.net.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"EpipolarPose: lower_checkpoint {path} does not fit this network (backbone, "
                             f"depth_bins, deconv_layers, filters must match its stage-1 run): {err}") from err  # fmt: skip
        self._lower_ready = True

    def freeze_lower(self) -> None:
        """End of stage 1: copy the network into the frozen lower branch, save it, restart Adam for stage 2."""
        self.lower.load_state_dict(self.net.state_dict())
        self.lower.eval()
        self._lower_ready = True
        if self.trainer is not None and self.trainer.is_global_zero and self.trainer.log_dir:
            path = Path(self.trainer.log_dir) / "lower_2d.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(copy.deepcopy(self.lower).cpu().state_dict(), path)
        if self.trainer is not None:
            self._stage_2_from = budget_fraction(self.trainer)
            for opt in self.trainer.optimizers:
                opt.state.clear()

    @property
    def stage(self) -> int:
        return 2 if self._lower_ready else 1

    def on_train_batch_start(self, batch, batch_idx) -> None:
        if not self._lower_ready and self.global_step >= self.hparams.lower_steps:
            self.freeze_lower()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.lower is not None:
            self.lower.eval()  # frozen: its BatchNorm statistics too
        return self

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if self.stage == 2:  # stage 1 has no 3D estimate yet
            super().validation_step(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        if self.stage == 2:
            return super().on_validation_epoch_end()
        for metrics in self.evaluators.values():
            for metric in metrics.values():
                metric.reset()
        # stage 1 trains 2D only: an infinite score keeps the best checkpoint (and the test) in stage 2
        self.log("val/p_mpjpe", float("inf"), prog_bar=True, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["epipolar_lower_ready"] = self._lower_ready
        checkpoint["epipolar_stage_2_from"] = self._stage_2_from

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self._lower_ready = bool(checkpoint.get("epipolar_lower_ready", self._lower_ready))
        self._stage_2_from = float(checkpoint.get("epipolar_stage_2_from", 0.0))

    # -- poses from volumes --------------------------------------------------------------------------------
    def _check(self, image: torch.Tensor) -> None:
        check_image(image, (self.hparams.image_size, self.hparams.image_size), type(self).__name__)

    def pose_3d(self, volumes: torch.Tensor) -> torch.Tensor:
        """(B, J, D, h, w) logits -> (B, J, 3) root-centred camera-frame pose in unit-scale units."""
        return root_centre(soft_argmax_3d(volumes) * self.hparams.volume_half_size, self.skeleton.root)

    def pose_2d(self, volumes: torch.Tensor) -> torch.Tensor:
        """(B, J, D, h, w) logits -> (B, J, 2) normalised heatmap coordinates (x, y)."""
        return volume_to_2d(volumes)

    def _to_normalized(self, uv: torch.Tensor, volumes: torch.Tensor) -> torch.Tensor:
        size = self.hparams.image_size
        return pixels_to_normalized(uv, volumes.shape[-2:], (size, size))

    def _to_pixels(self, xy: torch.Tensor, volumes: torch.Tensor) -> torch.Tensor:
        size = self.hparams.image_size
        return normalized_to_pixels(xy, volumes.shape[-2:], (size, size))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, J, 3) unit-scale root-centred pose (refined when ``refine``)."""
        self._check(image)
        pose = self.pose_3d(self.net(image)).float()
        if self.refiner is not None:
            pose = normalise_pose(self.refiner(normalise_pose(pose, self.skeleton.root))[-1], self.skeleton.root)
        return pose

    def predict_pose(self, batch: dict) -> torch.Tensor:
        return self(batch["image"]) * self.pose_scale_mm

    @torch.no_grad()
    def lower_2d(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen lower branch's 2D poses (B, J, 2) in crop pixels."""
        volumes = self.lower(images)
        return self._to_pixels(self.pose_2d(volumes).float(), volumes)

    # -- training ------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.refiner is not None:
            dm = self.trainer.datamodule
            if self.hparams.refine_poses:
                path = Path(self.hparams.refine_poses)
                if not path.is_file():
                    raise FileNotFoundError(f"EpipolarPose: model.init_args.refine_poses {path} does not exist "
                                            "(a torch.save'd (N, 17, 3) tensor of poses in mm)")  # fmt: skip
                poses = torch.load(path, map_location="cpu").float()
            else:
                poses = dm.train_poses_3d().float()
            self.refine_bank = normalise_pose(poses, self.skeleton.root)

    def _flat(self, batch: dict, key: str) -> torch.Tensor:
        x = batch[key]
        return x.flatten(0, 1) if batch["image"].dim() == 5 else x

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images = self._flat(batch, "image")
        self._check(images)
        if self.stage == 1:
            volumes = self.net(images)
            target = self._to_normalized(self._flat(batch, "joints_2d").float(), volumes)
            loss = F.smooth_l1_loss(self.pose_2d(volumes), target, beta=self.hparams.beta)
            self.stop_if_not_finite({"train/loss_2d": loss})
            self.log("train/loss_2d", loss, prog_bar=True)
            return loss
        return self._stage_2(batch, images)

    def _stage_2(self, batch: dict, images: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        if batch["image"].dim() != 5:
            raise ValueError("EpipolarPose stage 2 trains on multi-view samples: set data.init_args.mode multiview")
        B, V = batch["image"].shape[:2]
        J = self.skeleton.num_joints
        if hp.use_gt_2d:
            joints_2d = batch["joints_2d"].float()
        else:
            joints_2d = self.lower_2d(images).float().view(B, V, J, 2)
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            labels = pseudo_labels(
                joints_2d, batch["K"], batch.get("R"), batch.get("t"), use_extrinsics=hp.use_extrinsics,
                root=self.skeleton.root, iterations=hp.ransac_iterations,
                threshold=hp.ransac_threshold * hp.image_size, min_inliers=hp.min_inliers, min_spread=hp.min_spread,
                min_front=hp.min_front, backend=hp.ransac_backend,
            )  # fmt: skip
        target = labels.poses.reshape(B * V, J, 3)
        keep = labels.view_valid.reshape(B * V).float()
        pred = self.pose_3d(self.net(images)).float()
        per_view = F.smooth_l1_loss(pred, target, beta=hp.beta, reduction="none").mean(dim=(-2, -1))
        loss = (per_view * keep).sum() / keep.sum().clamp(min=1.0)
        losses = {"train/loss_3d": loss}
        total = loss
        if self.refiner is not None:
            idx = torch.randint(len(self.refine_bank), (B * V,))
            clean = self.refine_bank[idx].to(self.device)
            outs = self.refiner(refine_noise(clean, *hp.refine_noise, root=self.skeleton.root))
            losses["train/loss_refine"] = sum(F.l1_loss(o, clean) for o in outs)  # final + intermediate loss
            total = total + losses["train/loss_refine"]
        self.stop_if_not_finite(losses)
        for name, value in losses.items():
            self.log(name, value, prog_bar=name == "train/loss_3d")
        dropped = (~labels.valid).sum().float()
        self.log("train/dropped_samples", dropped, on_step=False, on_epoch=True, reduce_fx="sum")
        self.log("train/dropped_views", (1 - keep).sum(), on_step=False, on_epoch=True, reduce_fx="sum")
        # diagnostics only: the pseudo-labels against the ground truth (never used for training)
        with torch.no_grad():
            err = p_mpjpe(target, self._flat(batch, "joints_3d").float())
            err = torch.where(keep > 0, torch.nan_to_num(err), torch.zeros_like(err))
            self.log("train/label_p_mpjpe", err.sum() / keep.sum().clamp(min=1.0))
            self.log("train/valid_views", keep.mean())
        return total

    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.lr_schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.LambdaLR(opt, self._cosine_factor)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        if not hp.lr_milestones:
            return opt
        return [opt], [torch.optim.lr_scheduler.MultiStepLR(opt, list(hp.lr_milestones), gamma=0.1)]

    def _cosine_factor(self, step: int) -> float:
        """The ``cosine`` schedule's factor: stage 1 by its steps, stage 2 by the rest of the fit's budget."""
        if not self._lower_ready:
            return cosine(step / max(self.hparams.lower_steps, 1))
        done = (budget_fraction(self._trainer) - self._stage_2_from) / max(1.0 - self._stage_2_from, 1e-9)
        return cosine(done)

    # -- the record: which 2D made the labels --------------------------------------------------------------
    def input_description(self, name: str, data_protocol: dict | None = None) -> str:
        text = super().input_description(name, data_protocol)
        if name != self.method_name:
            return text
        proto = getattr(self, "data_protocol", {}) if data_protocol is None else data_protocol
        source = f"2D {proto.get('input_2d', 'gt')}" if self.hparams.use_gt_2d else "2D net"
        extr = ", extrinsics" if self.hparams.use_extrinsics else ""
        return f"{text} (labels from {source}{extr})"
