"""Self-supervised learning of motion capture (Tung et al. 2017): synthetic pretraining, then adaptation by
differentiable re-projection of a body mesh's keypoints, silhouette and motion.

A convolutional regressor reads a person crop and predicts a body model's parameters (``theta``: per-joint
axis-angle rotations, ``beta``: shape) and a camera (Euler angles, translation ``T_x, T_y``, focal length
``f``). The body (:mod:`methods.body_model`: the built-in licence-free body, or SMPL through ``smplx``) gives
the mesh vertices and, by the linear regressor of Eq. 2, the 17 joints.

Stages (``stage``):

* ``pretrain``: supervised on the source domain (``SyntheticHumans``): L1 on the root-relative camera-frame
  joints ``R X_kpt`` (m) plus ``pretrain_kpt_weight`` times Eq. 4. ``SyntheticHumans`` has joints but no
  body parameters, so ``theta``/``beta`` are learnt through the joints (the paper regresses SURREAL's SMPL
  ``theta``/``beta``). At the end of the fit the network is saved to ``export_path``.
* ``adapt``: start from ``pretrained_checkpoint`` and fine-tune on unlabelled target videos (clip mode,
  consecutive frame pairs) with the self-supervised losses only (``losses``, a subset of ``kpt, seg,
  motion``: the rows of Fig. 3). The test then reports three rows on the same frames: the adapted network
  (the method), ``<name>-pretrained`` (the pretrained network, not adapted) and ``<name>-direct-<losses>`` (direct
  optimisation of the parameters per test frame pair with the same losses).

Losses (Sec. 3.1; every pixel quantity is divided by the image size, so losses are O(1) at any resolution):

* **Keypoints** (Eq. 3-4): ``x = P (R X_kpt + T)`` with ``P = diag(f, f, 1)`` perspective; mean squared
  distance to the 2D joints (``joints_2d``: ground truth, as the paper uses, or noisy with ``noise_2d_px``).
* **Segmentation** (Eq. 5): brute-force Chamfer between the visible projected vertices and the mask's
  foreground pixels at half resolution, both directions (over- and under-coverage), each a mean of squared
  distances. The nearest neighbours are found without gradients in chunks (memory bounded by
  ``seg_chunk``); the squared distances to them are then differentiable, which is the gradient of the
  min (Eq. 6-7's thresholded maps are the same distances clamped at half a pixel: left out).
* **Motion** (the unnumbered equation after Eq. 4): predicted vertex flow ``x_2 - x_1`` against the optical
  flow sampled bilinearly at ``x_1`` (``grid_sample``, differentiable in ``x_1``), L1, averaged over the
  vertices visible in frame 1 (visibility by ray casting, not differentiable). The flow is OpenCV's DIS
  optical flow on the frame pair (``flow_source: dis``, the paper uses FlowNet2 on RGB) or the renderer's
  ground-truth flow (``flow_source: render``); the choice is recorded in the leaderboard's input column of the
  adapted and direct rows (e.g. ``image rgb64x64 (adapted: kpt+seg+motion, flow dis)``). With ``motion_on_mask``
  (default) the flow is read from the person's pixels only and only vertices that land on the mask count (a
  departure from the paper, which samples the flow wherever a vertex lands). Why: at 64 px the limbs are 3-4 px
  wide and the pretrained network's 2D joints are ~5 px off, so only 45% of its visible vertices fall on the
  silhouette; the others read the background's near-zero flow (0.75 px mean at the vertices against 1.84 px of
  predicted motion, target validation clips). Adaptation then minimised the motion loss by predicting no motion
  and hiding vertices (visible vertices 208 -> 125, predicted motion 1.84 -> 0.72 px) and the 3D error grew
  (179 -> 206 mm on the validation clips); the mask is the one the segmentation loss reads already.

Loss weights (``loss_weights``; default kpt 1, seg 1, motion 0.05). The paper gives none (its public code weighs
the silhouette term 1e-19, i.e. off). With every term in units of the image size (Eq. 4 and 5 squared, the motion
term L1), equal weights let the motion term swamp the others: at the pretrained checkpoint, on 96 frame pairs of
the target's validation clips (CMU 131_*, never the test split), the gradient norms on the regressor's outputs are
kpt 0.0013, seg 0.0010, motion 0.029 (22 times kpt's), and the motion gradient is orthogonal to the direction
that lowers the 3D error (cosine +0.02 with the gradient of the true MPJPE, against +0.42 for kpt and +0.20
for seg; renderer flow alike). Weights that equalise the gradient norms are seg 1 and motion 0.05 (one figure).
Short adaptations (150 Adam steps, lr 3e-4, the same batches) scored on the validation pairs (MPJPE, pretrained
193.5 mm): kpt 158.0; kpt + seg 163.0; kpt + seg + motion with motion 0.015 / 0.05 / 0.15 / 1: 160.0 / 158.6 /
171.5 / 187.4. So 0.05 is kept, and equal weights reproduce the cancellation.

Choices where the paper is silent:

* **Camera.** ``X_cam = R X + (T_x, T_y, depth_mm)`` with ``R = R_x(alpha) R_y(beta) R_z(gamma) R_0``;
  ``R_0`` turns the body to face the camera; ``f = f_0 exp(s)``, ``f_0 = image_size * depth_mm / 2000`` (a
  2 m person fills the crop at ``s = 0``); the principal point is the crop's centre. No depth is predicted
  (the paper: "the predicted focal length accounts for scaling"). Each angle is predicted as (cos, sin) and
  read with ``atan2`` (continuous over the full circle of camera azimuths). The root's ``theta`` is zero: the
  camera rotation is the global orientation (SMPL's global orientation would duplicate it).
* **Regressor** (Sec. 4): 5 blocks of conv 5x5 stride 2 and conv 3x3 stride 1, each with batch norm and
  LeakyReLU(0.2), ``base_channels`` doubling per block, then 3 FC layers (``fc_width``, ``fc_width / 2``,
  outputs). The last layer starts at zero weights, so the first prediction is the rest pose facing the camera.
* **Adaptation data.** The target's training videos (other subjects than its test split), unlabelled:
  the network adapts to the domain and is tested on held-out videos (the paper adapts on the test videos).
* **Direct optimisation** (Sec. 4, the "Optimization" rows of Tables 1-2). The paper optimises theta, beta, R, T
  and f with "standard gradient descent" from a "random initialization" (its other rows start from the true
  rotation, translation or theta); it gives neither the number of steps nor the step size. Here: plain gradient
  descent (``direct_optimizer: sgd``) for ``direct_steps`` steps from :meth:`MotionCapture.direct_start`
  (``direct_init: random``: a yaw on the circle, joint rotations N(0, 0.3 rad); ``rest``: the rest pose facing
  the camera, a stronger start than the paper's), on the network's output parametrisation, all test samples at
  once (one loss summed over samples: each sample's gradient is its own). ``direct_lr`` is chosen on the target's
  validation clips by the final self-supervised loss (not the 3D error); ``adam`` is an option.
* **Metrics.** The shared ones (``mpjpe`` is the paper's per-joint error, root-aligned), plus ``t_mpjpe``
  (reconstruction error up to a translation: centroid-aligned) and ``surface`` (mean vertex distance of the
  built-in body placed on the predicted and the true joints, root-aligned; the batch carries no body surface,
  so this is the body model's surface, not the renderer's).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metrics.classes import TMPJPE, _GroupedPoseMetric

from .base import PoseEstimator
from .body_model import BodyOutput, BuiltinBody, make_body
from .nn.backbones import RESNETS, check_image, make_backbone

STAGES = ("pretrain", "adapt")
LOSSES = ("kpt", "seg", "motion")
FLOW_SOURCES = ("dis", "render")
DIRECT_INITS = ("random", "rest")
#: default loss weights (module docstring, "Loss weights": measured on the target's validation clips)
LOSS_WEIGHTS = {"kpt": 1.0, "seg": 1.0, "motion": 0.05}
#: std (rad) of the joint rotations of direct optimisation's random start
DIRECT_THETA_STD = 0.3
#: keys that carry a time axis in SyntheticHumans' clip mode (B, T, ...)
PER_FRAME = ("image", "mask", "parts", "depth", "flow", "joints_3d", "joints_3d_world", "joints_2d", "joints_2d_gt",
             "visible", "K", "R", "t", "frame")  # fmt: skip
#: body frame (+X forward, +Y left, +Z up) -> camera frame (x right, y down, z forward) of a person facing the camera
R0 = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])


# -- the regressor (Sec. 4) ------------------------------------------------------------------------------------
class ConvRegressor(nn.Module):
    """5 conv blocks (5x5 s2 + 3x3 s1, BN, LeakyReLU; channels doubling) + 3 FC layers -> ``out_dim`` raw outputs.

    ``backbone="conv5"`` is the paper's; a torchvision ResNet name replaces the conv blocks by that ResNet's
    stride-32 features (same FC layers), for comparison with the suite's other image methods.
    """

    def __init__(self, image_size: int, out_dim: int, base_channels: int = 64, fc_width: int = 1024,
                 backbone: str = "conv5", blocks: int = 5):  # fmt: skip
        super().__init__()
        side = image_size // 2**blocks
        if backbone == "conv5":
            layers, cin = [], 3
            for k in range(blocks):
                cout = base_channels * 2**k
                layers += [nn.Conv2d(cin, cout, 5, 2, 2, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2),
                           nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]  # fmt: skip
                cin = cout
            self.features = nn.Sequential(*layers)
        else:
            resnet = make_backbone(backbone, None, False, False, return_strides=(32,))
            self.features = nn.Sequential(_Stride32(resnet), nn.Conv2d(resnet.out_channels, 64, 1))
            cin = 64
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(cin * side * side, fc_width), nn.LeakyReLU(0.2),
                                  nn.Linear(fc_width, fc_width // 2), nn.LeakyReLU(0.2),
                                  nn.Linear(fc_width // 2, out_dim))  # fmt: skip
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image * 2 - 1 if self.conv5 else image).float())

    @property
    def conv5(self) -> bool:
        return not isinstance(self.features[0], _Stride32)


class _Stride32(nn.Module):
    """A ResNet backbone's stride-32 feature map (it normalises [0, 1] RGB itself)."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.resnet = resnet

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.resnet(image)[32]


def euler_rotation(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) angles (alpha, beta, gamma) -> (B, 3, 3) ``R_x(alpha) R_y(beta) R_z(gamma)``."""
    c, s = angles.cos(), angles.sin()
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])
    rx = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], -1).view(-1, 3, 3)
    ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], -1).view(-1, 3, 3)
    rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], -1).view(-1, 3, 3)
    return rx @ ry @ rz


def project(points: torch.Tensor, R: torch.Tensor, T: torch.Tensor, f: torch.Tensor, width: int,
            height: int) -> torch.Tensor:  # fmt: skip
    """Eq. 3: body-frame points (B, n, 3) mm -> pixels (B, n, 2) of ``P (R X + T)``, principal point at the centre."""
    cam = torch.einsum("bij,bnj->bni", R, points) + T.unsqueeze(1)
    z = cam[..., 2:].clamp(min=1.0)
    centre = torch.tensor([width / 2, height / 2], device=points.device, dtype=cam.dtype)
    return f.view(-1, 1, 1) * cam[..., :2] / z + centre


# -- self-supervised losses (Sec. 3.1) -----------------------------------------------------------------------
def keypoint_loss(pred: torch.Tensor, target: torch.Tensor, size: float, weight: torch.Tensor | None = None):
    """Eq. 4: mean squared distance (B, J, 2) px between projected and given 2D joints, in units of the image size.
    ``weight`` (B, J) (e.g. joints inside the image) weighs the joints. Returns (B,)."""
    err = ((pred - target) / size).pow(2).sum(-1)
    if weight is None:
        return err.mean(-1)
    w = weight.float()
    return (err * w).sum(-1) / w.sum(-1).clamp(min=1)


def _nearest(query: torch.Tensor, keys: torch.Tensor, key_valid: torch.Tensor, chunk: int) -> torch.Tensor:
    """Index (B, q) of the nearest valid key (B, k, 2) for every query (B, q, 2), in chunks of ``chunk`` queries.

    ``argmin_k |q - k|^2 = argmin_k (|k|^2 - 2 q . k)``: one batched matrix product per chunk, invalid keys at +inf.
    """
    out = []
    with torch.no_grad():
        keys = keys.float()
        bias = ((keys * keys).sum(-1) + torch.where(key_valid, 0.0, float("inf"))).unsqueeze(1)  # (B, 1, k)
        for start in range(0, query.shape[1], chunk):
            q = query[:, start : start + chunk].float()
            out.append(torch.baddbmm(bias, q, keys.transpose(1, 2), alpha=-2.0).argmin(-1))
    return torch.cat(out, 1) if out else query.new_zeros(query.shape[:2], dtype=torch.long)


def chamfer_loss(points: torch.Tensor, visible: torch.Tensor, mask: torch.Tensor, size: float,
                 chunk: int = 256) -> torch.Tensor:  # fmt: skip
    """Eq. 5, brute force: visible projected vertices (B, n, 2) px vs the foreground pixels of ``mask`` (B, h, w).

    The mask's pixel (i, j) has its centre at ``((j + 0.5) s, (i + 0.5) s)`` in the points' pixels, with ``s =
    size / w`` (the mask may be at a lower resolution than the image). Returns (B,): mean squared distance of
    each visible vertex to its nearest foreground pixel (over-coverage) plus mean squared distance of each
    foreground pixel to its nearest visible vertex (under-coverage), in units of the image size; 0 for a
    sample without foreground or without a visible vertex.
    """
    B, h, w = mask.shape
    s = size / w
    ys, xs = torch.meshgrid(torch.arange(h, device=points.device), torch.arange(w, device=points.device),
                            indexing="ij")  # fmt: skip
    pixels = (torch.stack([xs, ys], -1).reshape(1, h * w, 2).float() + 0.5) * s
    pixels = pixels.expand(B, -1, -1)
    fg = mask.reshape(B, h * w).bool()
    near_px = _nearest(points, pixels, fg, chunk)  # (B, n)
    near_pt = _nearest(pixels, points, visible, chunk)  # (B, h*w)
    rows = torch.arange(B, device=points.device).unsqueeze(-1)
    over = ((points - pixels[rows, near_px]) / size).pow(2).sum(-1)
    under = ((pixels - points[rows, near_pt]) / size).pow(2).sum(-1)
    v, m = visible.float(), fg.float()
    ok = (v.sum(-1) > 0) & (m.sum(-1) > 0)
    over = (over * v).sum(-1) / v.sum(-1).clamp(min=1)
    under = (under * m).sum(-1) / m.sum(-1).clamp(min=1)
    return torch.where(ok, over + under, torch.zeros_like(over))


def sample_flow(flow: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear map (B, C, H, W) (a flow in px, a mask) at sub-pixel points (B, n, 2) px (pixel centres at j + 0.5)
    -> (B, n, C)."""
    H, W = flow.shape[-2:]
    scale = torch.tensor([2.0 / W, 2.0 / H], device=points.device, dtype=points.dtype)
    grid = (points * scale - 1).unsqueeze(1)  # (B, 1, n, 2)
    out = F.grid_sample(flow.float(), grid.float(), mode="bilinear", padding_mode="border", align_corners=False)
    return out.squeeze(2).transpose(1, 2)


def motion_loss(points_1: torch.Tensor, points_2: torch.Tensor, visible_1: torch.Tensor, flow: torch.Tensor,
                size: float, mask: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """The motion re-projection error: L1 between the vertices' image motion ``x_2 - x_1`` (B, n, 2) px and the
    optical flow (B, 2, H, W) sampled at ``x_1``, averaged over the vertices visible in frame 1 (B, n); (B,).

    With the person's ``mask`` (B, H, W) of frame 1, the flow is sampled from the person's pixels only
    (bilinear weights renormalised over the foreground) and only vertices whose bilinear footprint is mostly
    person (sampled mask > 0.5) count: a vertex off the silhouette reads the background's flow otherwise.
    """
    if mask is None:
        sampled, weight = sample_flow(flow, points_1), visible_1.float()
    else:
        m = mask.float().unsqueeze(1)
        cover = sample_flow(m, points_1)  # (B, n, 1): the foreground share of each vertex's bilinear footprint
        sampled = sample_flow(flow * m, points_1) / cover.clamp(min=1e-6)
        weight = visible_1.float() * (cover[..., 0] > 0.5).float()
    err = ((points_2 - points_1) - sampled).abs().sum(-1) / size
    return (err * weight).sum(-1) / weight.sum(-1).clamp(min=1)


def dis_flow(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """OpenCV DIS optical flow (medium preset) from RGB frames (B, 3, H, W) in [0, 1] to the next ones -> (B, 2, H, W)
    px. OpenCV computes one image pair per call."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gray = lambda x: (x.detach().float().mean(1) * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()  # noqa: E731
    a, b = gray(first), gray(second)
    flows = np.stack([dis.calc(a[i], b[i], None) for i in range(len(a))])  # (B, H, W, 2)
    return torch.from_numpy(flows).permute(0, 3, 1, 2).to(first.device)


# -- extra metrics ---------------------------------------------------------------------------------------------
class SurfaceError(_GroupedPoseMetric):
    """Mean vertex distance (mm) of the built-in body (template shape) placed on the predicted and the true joints,
    after root-centring (the paper's surface error on the body model's surface; see the module docstring)."""

    name = "surface"

    def __init__(self, num_groups: int = 1, **kwargs):
        super().__init__(num_groups=num_groups, **kwargs)
        self.body = BuiltinBody(points_per_part=24)

    @property
    def protocol(self) -> dict[str, str]:
        return {"alignment": "root", "surface": "builtin body on the joints", **super().protocol}

    def _values(self, pred, target):
        both = torch.cat([pred, target]).float()
        both = both - both[:, :1]
        verts = self.body.surface(both, both.new_zeros(both.shape[0], 4)).vertices
        return (verts[: len(pred)] - verts[len(pred) :]).norm(dim=-1).mean(-1)


class MotionCapture(PoseEstimator):
    """Tung et al. 2017 (see the module docstring).

    Args:
        stage: ``pretrain`` (supervised, source domain) or ``adapt`` (self-supervised, target domain).
        pretrained_checkpoint: ``adapt``: a pretraining run's ``.ckpt`` or the ``.pt`` it exported.
        export_path: ``pretrain``: where the network is saved at the end of the fit (None: not saved).
        losses: the self-supervised losses of ``adapt`` and of direct optimisation (subset of kpt, seg, motion).
        loss_weights: weight of each loss (keys kpt, seg, motion).
        flow_source: ``dis`` (OpenCV DIS on the frames) or ``render`` (the data module's ``flow``).
        body: ``builtin`` or ``smpl``; smpl_model_path: SMPL's .pkl for ``smpl``.
        points_per_part: vertices of each ellipsoid of the built-in body.
        body_jitter: the built-in body's ``radius_jitter`` (a shape unlike the renderer's; 0: the same).
        image_size: the data's crop size (px, a multiple of 32).
        backbone: ``conv5`` (the paper's regressor) or ``resnet18``/``34``/``50``; base_channels / fc_width: widths.
        channels_last: NHWC activations (GPUs).
        depth_mm: the fixed depth of the body's root in front of the camera.
        pretrain_kpt_weight: weight of Eq. 4 in pretraining (teaches f and T).
        seg_chunk: queries per chunk of the Chamfer nearest-neighbour search.
        lr / optimizer: ``adam`` or ``sgd`` (the paper: gradient descent, lr 1e-4).
        eval_pretrained: ``adapt``: also test the pretrained network (row ``<name>-pretrained``).
        direct_steps / direct_lr / direct_optimizer: the direct-optimisation row (0 steps: off).
        direct_init: its start, ``random`` (the paper's baseline) or ``rest`` (rest pose facing the camera).
        motion_on_mask: the motion loss reads the flow on the person's mask only (see :func:`motion_loss`).
        **kwargs: see :class:`methods.base.PoseEstimator`.
    """

    input_keys = ("image",)

    def __init__(self, stage: str = "pretrain", pretrained_checkpoint: str | None = None,
                 export_path: str | None = None, losses: tuple[str, ...] = LOSSES,
                 loss_weights: dict[str, float] | None = None, flow_source: str = "dis", body: str = "builtin",
                 smpl_model_path: str | None = None, points_per_part: int = 48, body_jitter: float = 0.0,
                 image_size: int = 128,
                 backbone: str = "conv5", base_channels: int = 64, fc_width: int = 1024, channels_last: bool = False,
                 depth_mm: float = 5000.0, pretrain_kpt_weight: float = 1.0, seg_chunk: int = 256, lr: float = 1e-4,
                 optimizer: str = "adam", eval_pretrained: bool = True, direct_steps: int = 100,
                 direct_lr: float = 10.0, direct_optimizer: str = "sgd", direct_init: str = "random",
                 motion_on_mask: bool = True, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        name = type(self).__name__
        for option, value, choices in (("stage", stage, STAGES), ("flow_source", flow_source, FLOW_SOURCES),
                                       ("optimizer", optimizer, ("adam", "sgd")),
                                       ("backbone", backbone, ("conv5", *RESNETS)),
                                       ("direct_optimizer", direct_optimizer, ("adam", "sgd")),
                                       ("direct_init", direct_init, DIRECT_INITS)):  # fmt: skip
            if value not in choices:
                raise ValueError(f"{name} option {option}={value!r} is unknown; choose from {choices}")
        bad = sorted(set(losses) - set(LOSSES))
        if bad or not losses:
            raise ValueError(f"{name} option losses={list(losses)}: choose a non-empty subset of {LOSSES}")
        if image_size < 32 or image_size % 32:
            raise ValueError(f"{name} image_size must be a positive multiple of 32 (5 stride-2 blocks), got "
                             f"{image_size}: set model.init_args.image_size and data.init_args.image_size")  # fmt: skip
        if stage == "adapt" and not pretrained_checkpoint:
            raise ValueError(f"{name} stage 'adapt' needs model.init_args.pretrained_checkpoint (a pretraining run's "
                             ".ckpt or the .pt of its export_path)")  # fmt: skip
        self.save_hyperparameters()
        self.losses = tuple(losses)
        self.weights = {**LOSS_WEIGHTS, **(loss_weights or {})}
        self.body = make_body(body, smpl_model_path, points_per_part, body_jitter)
        self.pose_joints, self.num_betas = self.body.pose_joints, self.body.num_betas
        out_dim = self.pose_joints * 3 + self.num_betas + 6 + 2 + 1
        self.net = ConvRegressor(image_size, out_dim, base_channels, fc_width, backbone)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.register_buffer("R0", R0.clone(), persistent=False)
        self.focal0 = image_size * depth_mm / 2000.0
        # the pretrained network, tested beside the adapted one; its weights are read at setup("fit")
        self.pretrained: ConvRegressor | None = None
        if stage == "adapt" and eval_pretrained:
            self.pretrained = copy.deepcopy(self.net).eval().requires_grad_(False)
        if stage == "pretrain":
            self.requires = ("image", "joints_3d", "joints_2d")
        else:
            masked = "seg" in losses or ("motion" in losses and motion_on_mask)
            extra = (("mask",) if masked else ()) + (("flow",) if flow_source == "render" else ())
            self.requires = ("image", "joints_2d", *extra)
        self._testing = False
        #: the pretraining's budget (time, steps, epochs) adaptation started from, for the records; read at setup
        self.pretraining: dict | None = None
        self._clip: dict | None = None

    # -- names of the extra rows ----------------------------------------------------------------------------
    @property
    def pretrained_name(self) -> str:
        return f"{self.method_name}-pretrained"

    @property
    def direct_name(self) -> str:
        """``<name>-direct-<losses>``: direct optimisation with different losses gives different rows."""
        return f"{self.method_name}-direct-{'-'.join(self.losses)}"

    # -- parameters -> body, camera, pixels --------------------------------------------------------------------
    def decode(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, D) raw outputs -> theta (B, Jp, 3) (root zero), beta, R (B, 3, 3), T (B, 3) mm, f (B,) px."""
        B, Jp, nb = raw.shape[0], self.pose_joints, self.num_betas
        theta = raw[:, : Jp * 3].view(B, Jp, 3)
        theta = torch.cat([torch.zeros_like(theta[:, :1]), theta[:, 1:]], 1)
        k = Jp * 3
        beta = raw[:, k : k + nb] * 0.1
        cs = raw[:, k + nb : k + nb + 6].view(B, 3, 2)
        angles = torch.atan2(cs[..., 1], cs[..., 0] + 1.0)  # zero output -> zero angle
        txy = raw[:, k + nb + 6 : k + nb + 8] * 200.0
        f = self.focal0 * raw[:, k + nb + 8].clamp(-3, 3).exp()
        T = torch.cat([txy, torch.full_like(txy[:, :1], self.hparams.depth_mm)], -1)
        return {"theta": theta, "beta": beta, "R": euler_rotation(angles) @ self.R0, "T": T, "f": f}

    def pose(self, raw: torch.Tensor, with_visibility: bool = False) -> dict:
        """Decode, pose the body and project it: adds ``out`` (BodyOutput), ``joints_cam`` (B, 17, 3) root-relative
        camera-frame mm, ``joints_px`` (B, 17, 2), ``verts_px`` (B, n, 2) and optionally ``visible`` (B, n)."""
        # geometry in float32 under mixed precision: bf16 would round a 5 m depth to tens of millimetres
        with torch.autocast(raw.device.type, enabled=False):
            p = self.decode(raw.float())
            out: BodyOutput = self.body(p["theta"], p["beta"])
            size = self.hparams.image_size
            p["out"] = out
            p["joints_cam"] = torch.einsum("bij,bnj->bni", p["R"], out.joints)
            p["joints_px"] = project(out.joints, p["R"], p["T"], p["f"], size, size)
            p["verts_px"] = project(out.vertices, p["R"], p["T"], p["f"], size, size)
            if with_visibility:
                p["visible"] = self.body.visibility(out, p["R"], p["T"], p["verts_px"], size, size)
        return p

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, D) raw parameters."""
        size = self.hparams.image_size
        check_image(image, (size, size), type(self).__name__)
        if self.hparams.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.net(image)

    def predict_pose(self, batch: dict) -> torch.Tensor:
        return self.pose(self(batch["image"]))["joints_cam"].float()

    # -- losses --------------------------------------------------------------------------------------------------
    def flow(self, clip: dict) -> torch.Tensor:
        """(B, 2, H, W) optical flow from each clip's frame 0 to frame 1 (see ``flow_source``)."""
        if self.hparams.flow_source == "render":
            return clip["flow"][:, 0].float()
        return dis_flow(clip["image"][:, 0], clip["image"][:, 1])

    def self_supervised(self, raw: torch.Tensor, clip: dict, flow: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Per-sample losses (B,) of ``self.losses`` for raw parameters (B * T, D) of clips (B, T, ...)."""
        B, T = clip["image"].shape[:2]
        size = float(self.hparams.image_size)
        need_vis = "seg" in self.losses or "motion" in self.losses
        p = self.pose(raw, with_visibility=need_vis)
        out = {}
        if "kpt" in self.losses:
            target = clip["joints_2d"].flatten(0, 1).float()
            vis = clip.get("visible")
            loss = keypoint_loss(p["joints_px"], target, size, None if vis is None else vis.flatten(0, 1))
            out["kpt"] = loss.view(B, T).mean(1)
        if "seg" in self.losses:
            mask = clip["mask"].flatten(0, 1).float()
            half = F.avg_pool2d(mask, 2).squeeze(1) > 0.5  # Sec. 3.1: half resolution
            loss = chamfer_loss(p["verts_px"], p["visible"], half, size, self.hparams.seg_chunk)
            out["seg"] = loss.view(B, T).mean(1)
        if "motion" in self.losses:
            if T < 2 or flow is None:
                raise ValueError(f"{type(self).__name__}: the motion loss needs frame pairs: set data.init_args.mode "
                                 "clip and data.init_args.clip_length 2 (or drop 'motion' from model.init_args.losses)")  # fmt: skip
            px = p["verts_px"].view(B, T, *p["verts_px"].shape[1:])
            vis = p["visible"].view(B, T, -1)
            mask = clip["mask"][:, 0, 0] if self.hparams.motion_on_mask else None
            out["motion"] = motion_loss(px[:, 0], px[:, 1], vis[:, 0], flow, size, mask)
        return out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.hparams.stage == "pretrain":
            return self.pretrain_step(batch)
        clip = batch if batch["image"].dim() == 5 else {k: v.unsqueeze(1) if k in PER_FRAME else v
                                                          for k, v in batch.items()}  # fmt: skip
        flow = self.flow(clip) if "motion" in self.losses and clip["image"].shape[1] > 1 else None
        losses = self.self_supervised(self(clip["image"].flatten(0, 1)), clip, flow)
        losses = {f"train/{k}": v.mean() for k, v in losses.items()}
        total = sum(self.weights[k.split("/")[1]] * v for k, v in losses.items())
        self.stop_if_not_finite({**losses, "train/loss": total})
        self.log_dict({**losses, "train/loss": total}, prog_bar=True)
        return total

    def pretrain_step(self, batch: dict) -> torch.Tensor:
        flat = {k: v.flatten(0, 1) if k in PER_FRAME and batch["image"].dim() == 5 else v for k, v in batch.items()}
        p = self.pose(self(flat["image"]))
        target = flat["joints_3d"].float()
        target = target - target[:, :1]
        loss_3d = F.l1_loss(p["joints_cam"] / 1000.0, target / 1000.0)
        kpt = keypoint_loss(p["joints_px"], flat["joints_2d"].float(), float(self.hparams.image_size),
                            flat.get("visible")).mean()  # fmt: skip
        total = loss_3d + self.hparams.pretrain_kpt_weight * kpt
        losses = {"train/joints_3d": loss_3d, "train/kpt": kpt, "train/loss": total}
        self.stop_if_not_finite(losses)
        self.log_dict(losses, prog_bar=True)
        return total

    # -- direct optimisation (the paper's baseline) -----------------------------------------------------------
    def direct_optimisation(self, clip: dict) -> torch.Tensor:
        """Frame 0's root-relative camera-frame joints (B, 17, 3) mm after :meth:`direct_fit` of clips (B, T, ...)."""
        B, T = clip["image"].shape[:2]
        raw = self.direct_fit(clip)
        with torch.no_grad():
            return self.pose(raw)["joints_cam"].view(B, T, -1, 3)[:, 0].float()

    def direct_fit(self, clip: dict) -> torch.Tensor:
        """Optimise the raw parameters (B * T, D) of every frame of clips (B, T, ...) with the self-supervised losses
        from :meth:`direct_start`, ``direct_steps`` steps of ``direct_optimizer``; returns them (detached)."""
        hp = self.hparams
        with torch.inference_mode(False), torch.enable_grad():
            clip = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in clip.items()}
            B, T = clip["image"].shape[:2]
            flow = self.flow(clip) if "motion" in self.losses and T > 1 else None
            raw = self.direct_start(B * T, clip["image"].device).requires_grad_(True)
            opt = (torch.optim.Adam if hp.direct_optimizer == "adam" else torch.optim.SGD)([raw], lr=hp.direct_lr)
            for _ in range(hp.direct_steps):
                opt.zero_grad()
                losses = self.self_supervised(raw, clip, flow)
                sum(self.weights[k] * v.sum() for k, v in losses.items()).backward()
                opt.step()
            return raw.detach()

    def direct_start(self, n: int, device: torch.device) -> torch.Tensor:
        """(n, D) raw parameters where direct optimisation starts. ``rest``: zeros (rest pose facing the camera).
        ``random`` (the paper's "random initialization"): the camera's yaw uniform on the circle, joint rotations
        N(0, DIRECT_THETA_STD) per axis-angle component; shape, translation and focal length neutral. Draws from a
        fixed seed, so every run starts from the same parameters."""
        dim = self.net.head[-1].out_features
        raw = torch.zeros(n, dim)
        if self.hparams.direct_init == "random":
            g = torch.Generator().manual_seed(0)
            k = self.pose_joints * 3
            raw[:, :k] = DIRECT_THETA_STD * torch.randn(n, k, generator=g)
            yaw = (torch.rand(n, generator=g) * 2 - 1) * math.pi
            cs = k + self.num_betas  # (cos - 1, sin) of the second Euler angle (see decode)
            raw[:, cs + 2], raw[:, cs + 3] = yaw.cos() - 1, yaw.sin()
        return raw.to(device)

    # -- evaluation: frame 0 of clips; the pretrained and direct rows at adapt ----------------------------------------
    def prepare_evaluation(self, dm) -> None:
        super().prepare_evaluation(dm)
        extra = []
        if self.pretrained is not None:
            extra.append(self.pretrained_name)
        if self.hparams.stage == "adapt" and self.hparams.direct_steps > 0 and self._testing:
            extra.append(self.direct_name)
        groups = max(1, len(self.action_names))
        for name in extra:
            self.evaluators[name] = self.make_metrics(groups).to(self.device)

    def setup(self, stage: str) -> None:
        """Adaptation starts from ``pretrained_checkpoint`` (a resumed fit then restores its own weights over it)."""
        self._testing = stage == "test"
        if stage == "fit" and self.hparams.stage == "adapt":  # one read of the file gives weights and budget
            state, self.pretraining = load_pretrained(self.hparams.pretrained_checkpoint)
            self.net.load_state_dict(state)
            if self.pretrained is not None:
                self.pretrained.load_state_dict(state)
        elif self.hparams.stage == "adapt":
            self.pretraining = pretraining_budget(self.hparams.pretrained_checkpoint)
        super().setup(stage)

    def input_description(self, name: str, data_protocol: dict | None = None) -> str:
        """The image, and what the row's network or fit read besides: 3D labels (pretraining, on the source domain
        when adapting), the target's 2D keypoints, masks and flow (adaptation, direct optimisation)."""
        text = super().input_description(name, data_protocol)
        proto = getattr(self, "data_protocol", {}) if data_protocol is None else data_protocol
        reads = {
            "kpt": f"2D {proto.get('input_2d', 'gt')}",
            "seg": "mask gt",
            "motion": f"flow {self.hparams.flow_source}",
        }
        target = " + ".join(reads[k] for k in self.losses)
        if name == self.method_name and self.hparams.stage == "pretrain":
            return f"{text} (3D labels)"
        if name == self.method_name:
            return f"{text} (source 3D labels, then adapted on {target})"
        if name == self.pretrained_name:
            return f"{text} (source 3D labels)"
        if name == self.direct_name:
            return f"{text} + {target}"
        return text

    def make_metrics(self, groups: int) -> nn.ModuleDict:
        metrics = super().make_metrics(groups)
        metrics["t_mpjpe"] = TMPJPE(num_groups=groups)
        metrics["surface"] = SurfaceError(num_groups=groups)
        return metrics

    def estimates(self, batch: dict) -> dict[str, torch.Tensor]:
        out = super().estimates(batch)
        if self.pretrained_name in self.evaluators:
            out[self.pretrained_name] = self.pose(self.pretrained(batch["image"]))["joints_cam"].float()
        if self.direct_name in self.evaluators:
            clip = self._clip if self._clip is not None else {k: v.unsqueeze(1) if k in PER_FRAME else v
                                                               for k, v in batch.items()}  # fmt: skip
            out[self.direct_name] = self.direct_optimisation(clip)
        return out

    def _first_frames(self, batch: dict) -> dict:
        """Clip batches (B, T, ...) are evaluated on their first frame (the clip is kept for direct optimisation)."""
        if batch["image"].dim() != 5:
            self._clip = None
            return batch
        self._clip = batch
        return {k: v[:, 0] if k in PER_FRAME else v for k, v in batch.items()}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        super().validation_step(self._first_frames(batch), batch_idx)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        frames = self._first_frames(batch)
        super().test_step(frames, batch_idx)
        if batch_idx == 0:  # the fitted meshes of a few test frames, drawn at the end of the test
            nets = {self.method_name: self.net, self.pretrained_name: self.pretrained}
            self._fits = {"image": frames["image"][:6].detach().float().cpu()}
            for name, net in nets.items():
                if net is not None:
                    p = self.pose(net(frames["image"][:6]), with_visibility=True)
                    self._fits[name] = (p["verts_px"].detach().cpu(), p["visible"].detach().cpu())

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        # the records' training budget: the pretrained row's is the pretraining's, the adapted row's names it too
        if self.pretraining:
            if self.pretrained_name in self.test_results:
                self.test_results[self.pretrained_name]["budget"] = dict(self.pretraining)
            self.test_results[self.method_name]["budget"] = {"pretraining": dict(self.pretraining)}
        if getattr(self, "_fits", None) and self.trainer is not None and self.trainer.is_global_zero:
            plot_fits(self._fits, Path(self.trainer.log_dir or ".") / "test_fits.png")

    def on_fit_end(self) -> None:
        path = self.hparams.export_path
        if self.hparams.stage == "pretrain" and path and self.trainer.is_global_zero:
            # the training time is kept by the results callback (benchmark.results.ResultsWriter), if there is one
            timers = [cb.train_time_s for cb in self.trainer.callbacks if hasattr(cb, "train_time_s")]
            self.export(path, {"train_time_s": timers[0] if timers else None, "steps": self.trainer.global_step,
                               "epochs": self.trainer.current_epoch})  # fmt: skip

    def export(self, path: str | Path, budget: dict | None = None) -> Path:
        """Write the network as adaptation's ``pretrained_checkpoint`` reads it (:func:`load_pretrained`), with the
        pretraining's budget (time, steps, epochs) for the adaptation's records (:func:`pretraining_budget`)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"net": self.net.state_dict(), "hparams": dict(self.hparams), "budget": budget}, path)
        return Path(path)

    def configure_optimizers(self):
        params = list(self.net.parameters())
        if self.hparams.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.hparams.lr)
        return torch.optim.Adam(params, lr=self.hparams.lr)


def plot_fits(fits: dict, path: Path) -> Path:
    """``fits["image"]`` (N, 3, H, W) with each estimator's visible projected vertices over it, one row each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = fits["image"]
    rows = [k for k in fits if k != "image"]
    fig, axes = plt.subplots(len(rows), len(images), figsize=(2 * len(images), 2.1 * len(rows)), squeeze=False)
    for r, name in enumerate(rows):
        px, seen = fits[name]
        for i, image in enumerate(images):
            ax = axes[r, i]
            ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
            ax.scatter(px[i, seen[i], 0] - 0.5, px[i, seen[i], 1] - 0.5, s=1, c="lime", alpha=0.6)
            ax.set_xlim(-0.5, image.shape[-1] - 0.5)
            ax.set_ylim(image.shape[-2] - 0.5, -0.5)
            ax.axis("off")
        axes[r, 0].set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def pretraining_budget(path: str) -> dict | None:
    """The pretraining's time, steps and epochs from its export or its Lightning ``.ckpt`` (None where unknown)."""
    file = Path(path)
    if not file.is_file():
        return None
    return stored_budget(torch.load(file, map_location="cpu", weights_only=False))


def stored_budget(state: dict) -> dict | None:
    """The budget an export keeps (None in exports older than budgets), or a Lightning checkpoint's steps and
    epochs and the training time its results callback kept."""
    if "net" in state:
        return state.get("budget")
    timers = [v["train_time_s"] for k, v in state.get("callbacks", {}).items() if "ResultsWriter" in k]
    return {"train_time_s": timers[0] if timers else None, "steps": state.get("global_step"),
            "epochs": state.get("epoch")}  # fmt: skip


def load_pretrained(path: str) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The regressor's state dict and the pretraining's budget (:func:`pretraining_budget`) from a pretraining
    run's Lightning ``.ckpt`` or its exported ``.pt``."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"pretrained_checkpoint {file} does not exist: run the pretraining stage first "
                                "(configs/motion_capture.yaml writes its export_path) or point to its .ckpt")  # fmt: skip
    state = torch.load(file, map_location="cpu", weights_only=False)
    if "net" in state:
        return state["net"], stored_budget(state)
    if "state_dict" in state:
        net = {k[len("net.") :]: v for k, v in state["state_dict"].items() if k.startswith("net.")}
        if net:
            return net, stored_budget(state)
    raise ValueError(f"pretrained_checkpoint {file}: neither an exported network ('net') nor a MotionCapture "
                     "checkpoint (state_dict keys 'net.*')")  # fmt: skip
