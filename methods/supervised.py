"""The supervised reference: an image backbone and a 3D head trained on ground-truth 3D joints.

Not a paper of the suite but the ceiling every self-supervised image method is read against (the
mean training pose is the floor): the same backbone, the same images and the same metrics, with
the 3D labels the self-supervised methods do without.

Choices:

* **Target.** The root-relative camera-frame pose (``joints_3d`` minus the pelvis) in metres, so the
  regression targets are O(1). Predictions are returned in mm, root-relative.
* **Head.** The deepest backbone features (stride 32) reduced to 64 channels by a 1x1 convolution and
  flattened, so the head keeps where in the image each feature is (global pooling throws that away,
  and at 64 px the map is only 2 x 2), then an FC head (one hidden layer, ``head_width``, no batch
  norm); the direct-regression baseline of the integral-regression literature.
* **Loss.** Mean absolute error over joints and coordinates (L1, as Sun et al. 2018 found better than
  L2 for pose regression).
* **Optimiser.** Adam. ``lr_schedule``: ``cosine`` (default) decays the learning rate to 0 over the fit's
  budget (steps, epochs or ``max_time``, whichever binds: ``methods.optim``), which also lets the batch
  norm statistics settle before the end; ``step`` divides it by 10 at each of ``lr_milestones`` (epochs);
  ``constant``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import PoseEstimator
from .geometry import root_centre
from .nn.backbones import check_image, make_backbone
from .nn.blocks import dense
from .optim import cosine_schedule

SCHEDULES = ("cosine", "step", "constant")


class Supervised(PoseEstimator):
    """ResNet + FC head regressing root-relative 3D joints from one image (see the module docstring).

    Args:
        backbone: ``resnet18``, ``resnet34`` or ``resnet50``.
        pretrained: path to torchvision ImageNet weights of that backbone (nothing downloads), or None.
        frozen_bn: freeze the backbone's BatchNorm statistics and affine parameters.
        channels_last: NHWC weights and activations (faster on GPUs, with bf16-mixed precision).
        image_size: the data's image size (px, square, a multiple of 32); checked on every batch so a
            mismatch fails with the options to change.
        head_width: hidden width of the FC head.
        dropout: dropout in the head.
        lr / weight_decay: Adam settings.
        lr_schedule: ``cosine``, ``step`` or ``constant`` (see the module docstring).
        lr_milestones: epochs at which the ``step`` schedule divides the learning rate by 10.
        **kwargs: see :class:`methods.base.PoseEstimator`.
    """

    requires = ("image", "joints_3d")
    input_keys = ("image",)
    role = "ceiling"

    def __init__(self, backbone: str = "resnet18", pretrained: str | None = None, frozen_bn: bool = False,
                 channels_last: bool = False, image_size: int = 128, head_width: int = 1024, dropout: float = 0.0,
                 lr: float = 1e-3, weight_decay: float = 0.0, lr_schedule: str = "cosine",
                 lr_milestones: tuple[int, ...] = (), **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        if image_size < 32 or image_size % 32:
            raise ValueError(f"Supervised image_size must be a positive multiple of 32 (the backbone's stride), "
                             f"got {image_size}: set model.init_args.image_size and data.init_args.image_size")  # fmt: skip
        if lr_schedule not in SCHEDULES:
            raise ValueError(f"Supervised lr_schedule {lr_schedule!r} is unknown; choose from {SCHEDULES}")
        self.save_hyperparameters()
        self.backbone = make_backbone(backbone, pretrained, frozen_bn, channels_last, return_strides=(32,))
        joints, side = self.skeleton.num_joints, image_size // 32
        self.reduce = torch.nn.Sequential(
            torch.nn.Conv2d(self.backbone.out_channels, 64, 1, bias=False), torch.nn.BatchNorm2d(64), torch.nn.ReLU()
        )
        self.head = torch.nn.Sequential(
            dense(64 * side * side, head_width, dropout, batch_norm=False), torch.nn.Linear(head_width, 3 * joints)
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, J, 3) root-relative camera-frame pose in metres."""
        check_image(image, (self.hparams.image_size, self.hparams.image_size), type(self).__name__)
        features = self.reduce(self.backbone(image)[32]).flatten(1)
        pose = self.head(features.float()).view(image.shape[0], -1, 3)
        return root_centre(pose, self.skeleton.root)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        target = root_centre(batch["joints_3d"].float(), self.skeleton.root) / 1000.0
        loss = F.l1_loss(self(batch["image"]).float(), target)
        self.stop_if_not_finite({"train/loss": loss})
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def predict_pose(self, batch: dict) -> torch.Tensor:
        return self(batch["image"]).float() * 1000.0

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.lr_schedule == "cosine":
            return {"optimizer": opt, "lr_scheduler": cosine_schedule(opt, self)}
        if hp.lr_schedule == "step" and hp.lr_milestones:
            return [opt], [torch.optim.lr_scheduler.MultiStepLR(opt, list(hp.lr_milestones), gamma=0.1)]
        return opt
