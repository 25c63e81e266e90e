"""SVMAC (Deng et al.): unsupervised 2D-to-3D lifting with single-view-multi-angle consistency.

Paper: ``../shared/papers/deng_svmac.txt``. Equation numbers below refer to it.

A generator GEN lifts a normalised 2D pose to relative depths and a weak-perspective camera
(Eq. 3); the 3D pose is rotated about the vertical axis by random angles (Eq. 4-8), re-projected
with the estimated camera (Eq. 9) and lifted again by the same, weight-sharing GEN (Eq. 10).
Losses: L_3D (Eq. 11), L_cameq (Eq. 12), L_svmac over the mixed re-projections (Eq. 13-15), a
WGAN-GP critic on 2D poses (Eq. 16), L_weakcam (Eq. 17-19), L_sym (Eq. 21), L_angle (Eq. 22-23);
total Eq. 24.

Where the code departs from the printed equations, and why (issue 16; numbers measured with
``SVMAC.loss_balance``, tests/test_svmac_balance.py and docs/reproductions/svmac.md).
``paper_literal=True`` switches every kept departure off at once: K X without normalisation (Eq. 9, 13),
raw cameras in L_cameq (Eq. 12), raw L_3D (Eq. 11), the critic on the 1/c scale (Eq. 16), m_i = n
(Eq. 15), and the camera head starting at the weak perspective (1/c) [I | 0] of a pose at distance c.

* **Re-projections are normalised** (``renormalise``, kept): every K X is root-centred and rescaled to the
  input normalisation (mean root distance 1/c, Eq. 1-2), differentiably, before the critic, the re-lifting
  and L_svmac see it, and the cameras are divided by their scale s (Eq. 18) before they project and before
  L_cameq compares them. Literally K X keeps the camera's scale and translation, so the critic can tell real
  from fake by scale alone, and the losses on K are smallest at K = 0. Measured at 2000 steps (seed 0):
  P-MPJPE 95.9 mm literal against 75.8 default (docs/reproductions/svmac.md).
* **L_3D at equal scale** (part of ``renormalise``, fixed): X~ is lifted from the renormalised x_proj and so
  has its scale, while X_rot keeps X_pred's; the per-pose scale difference is a share of Eq. 11 no network
  can learn away (400-step checkpoint: mean root distance 1.085 +- 0.065 vs 1.076 +- 0.058, L_3D 0.090 raw,
  0.073 at unit scale). Both are root-centred and brought to unit mean root distance before Eq. 11.
* **Sets of Eq. 15** (``input_in_sets``, kept): for angle i the compared 2D poses are the pose GEN lifted at
  that angle (the input for i = 0, x_proj^{theta_i} otherwise) and the n re-projections P_a^{theta_i}, so
  m_i = n + 1; literally m_i = n. Neither carries a depth signal: X~^i is built from the 2D pose it was lifted
  from (X = x Z, Eq. 1-2), so with m_i = n the differences are (K^a - K^b) X~^i, a camera-agreement term that
  is exactly 0 for equal cameras whatever the depths; the input adds x^i - K X~^i, which for a camera without a
  depth column is only the perspective gap D / c and is 0 for flat poses. Measured ratio of L_svmac's
  gradient on the depth branch to the strongest other term: 7e-5 at initialisation, 5e-4 after 100 steps
  (default); 5e-6, then 0.34 literal, all of it from the cameras drifting apart (tests/test_svmac_balance.py).
* **n = 1** (fixed): no L_svmac, L_3D or L_cameq ("without the SVMAC loss", Sec. 4.4; Eq. 11-12 sum over
  i >= 1); formerly n = 1 kept a lambda_5 re-projection term. Eq. 16's sum over i >= 1 would be empty, but the
  paper's n = 1 row beats "w/o Disc", so one rotated re-projection is still drawn for the critic.
* **Eq. 16 sums over the angles** (fixed): the generator's adversarial term is the sum over the n - 1 angles
  of -E[D(x_proj^{theta_i})], and the critic trains on every angle, each against the real batch (formerly
  the mean, and one random angle per sample for the critic): n = 3 weighs the critic twice.
* **Critic input scale** (``critic_times_c``, kept): the critic reads 2D poses times c (mean root distance
  1); the paper's reads them at 1/c. The gradient penalty holds ||grad D|| near 1 on the critic's input, so
  times c the adversarial gradient on the generator is ~c times the paper's (depth branch at
  initialisation, width 256: 0.066 vs 0.0029) and it leads every term (last validation of the n = 2 runs:
  1.5-1.9 against L_3D's 0.06-0.09). Kept because the paper's scale trains worse at 2000 steps: 97.0 mm
  against 75.8 (seed 0, suite row ``svmac-t4-n2-critic1``).

Details the paper leaves open, and the choices made here:

* **Angles.** theta_i ~ U(-max_angle, max_angle), drawn per sample; the critic sees the rotated
  re-projections x_proj^{theta_i}, i >= 1.
* **Camera start.** The camera head starts at the orthographic camera [[1, 0, 0], [0, 1, 0]] (its scale is
  divided out), literally at (1/c) [I | 0].
* **Loss balance.** At every validation (``log_balance``) each term's value (``val_balance/loss_<term>``) and
  the gradient norms of its weighted term over the depth and camera branches (``val_balance/grad_depth_<term>``,
  ``val_balance/grad_camera_<term>``) are logged (CSV, W&B), on 256 poses of the first validation batch, in
  eval mode, angles from a fixed seed (the training's random state is restored).
* **Critic** has no batch normalisation (WGAN-GP), gradient-penalty weight 10 (Gulrajani).
* **Critic/generator alternation.** Every training step updates the critic once; every
  ``critic_steps``-th step also updates the generator (manual optimisation).
* **L_angle sign.** With x right, y down, z forward, true poses have sin(beta) <= 0 for
  v = nose - neck, w = left shoulder - right shoulder (checked on ground truth in the tests), so
  the penalty is relu(sin beta), as Eq. 23 is printed. The 17-joint skeleton's "Neck/Nose" is the
  nose and "Thorax" the neck.
* **Dropout** is not given; 0.1 is used (larger values slowed learning in short runs).
* **3D supervision** (Table 4, "5% 3D Sup"): a fixed subset of frames (chosen by a hash of sequence
  and frame ids) adds the squared error between the root-centred, unit-scale prediction and ground truth.
* **Evaluation scale.** The lifted pose is root-centred, scaled to unit mean root distance and
  multiplied by the mean training-pose size in mm (see ``methods.base.PoseEstimator``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import PoseEstimator
from .geometry import mean_root_distance, normalise_2d, root_centre, rotation_y
from .nn.blocks import ResidualBlock, dense


class SVMACGenerator(nn.Module):
    """GEN (Sec. 3.1, Fig. 2): FC + shared residual block, then a pose branch (2 residual blocks -> N
    relative depths) and a camera branch (2 residual blocks -> 6 values, a 2x3 weak-perspective K)."""

    def __init__(self, num_joints: int, width: int = 1024, dropout: float = 0.1, camera_init: float = 1.0):
        super().__init__()
        self.stem = nn.Sequential(dense(2 * num_joints, width, dropout), ResidualBlock(width, dropout))
        self.pose = nn.Sequential(
            ResidualBlock(width, dropout), ResidualBlock(width, dropout), nn.Linear(width, num_joints)
        )
        self.camera = nn.Sequential(ResidualBlock(width, dropout), ResidualBlock(width, dropout), nn.Linear(width, 6))
        with torch.no_grad():  # start at the orthographic camera (see the module docstring)
            self.camera[-1].weight.mul_(0.01)
            self.camera[-1].bias.copy_(camera_init * torch.tensor([1.0, 0, 0, 0, 1.0, 0]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, J, 2) normalised 2D -> relative depths D (B, J), camera K (B, 2, 3)."""
        h = self.stem(x.flatten(1))
        return self.pose(h), self.camera(h).view(-1, 2, 3)


class SVMACCritic(nn.Module):
    """The 2D-pose discriminator (Sec. 3.3): FC, two residual blocks, FC; LeakyReLU, no normalisation."""

    def __init__(self, num_joints: int, width: int = 1024):
        super().__init__()
        self.net = nn.Sequential(
            dense(2 * num_joints, width, batch_norm=False),
            ResidualBlock(width, batch_norm=False),
            ResidualBlock(width, batch_norm=False),
            nn.Linear(width, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(-1)


def camera_scale(K: torch.Tensor) -> torch.Tensor:
    """s = sqrt(trace(K K^T) / 2) (Eq. 18): (..., 2, 3) -> (..., 1, 1)."""
    return (K.square().sum(dim=(-1, -2), keepdim=True) / 2).clamp(min=1e-8).sqrt()


def weakcam_loss(K: torch.Tensor) -> torch.Tensor:
    """|| 2 K K^T / trace(K K^T) - I_2 ||_F (Eq. 19), per camera: (..., 2, 3) -> (...)."""
    KKt = K @ K.transpose(-1, -2)
    trace = KKt.diagonal(dim1=-2, dim2=-1).sum(-1).clamp(min=1e-8)
    eye = torch.eye(2, device=K.device, dtype=K.dtype)
    return (2 * KKt / trace[..., None, None] - eye).flatten(-2).norm(dim=-1)


def cameq_loss(K: torch.Tensor) -> torch.Tensor:
    """Mean over pairs i < j of ||K_i - K_j||_1 / 6 (Eq. 12): (n, B, 2, 3) -> (B,)."""
    n = K.shape[0]
    diff = (K.unsqueeze(0) - K.unsqueeze(1)).abs().flatten(-2).sum(-1) / 6  # (n, n, B)
    return diff.sum(dim=(0, 1)) / max(n * (n - 1), 1)


def pairwise_consistency(P: torch.Tensor) -> torch.Tensor:
    """Eq. 15 for one angle: sum over pairs a < b of ||P_a - P_b||^2 / (N m): (m, ..., N, 2) -> (...)."""
    m, n_joints = P.shape[0], P.shape[-2]
    sq = (P.unsqueeze(0) - P.unsqueeze(1)).square().sum(dim=(-1, -2))  # (m, m, B)
    return sq.sum(dim=(0, 1)) / 2 / (n_joints * m)


def symmetry_loss(X: torch.Tensor, bones: tuple, pairs: tuple) -> torch.Tensor:
    """Mean over symmetric bone pairs of (|B_i| - |B'_i|)^2 (Eq. 21): (B, J, 3) -> (B,)."""
    parents, children = zip(*bones)
    lengths = (X[:, list(children)] - X[:, list(parents)]).norm(dim=-1)
    left, right = zip(*pairs)
    return (lengths[:, list(left)] - lengths[:, list(right)]).square().mean(-1)


def angle_loss(X: torch.Tensor, nose: int, neck: int, lsho: int, rsho: int) -> torch.Tensor:
    """relu(sin beta) with sin beta = (v_z w_x - v_x w_z) / (|v||w|) (Eq. 22-23): (B, J, 3) -> (B,)."""
    v = X[:, nose] - X[:, neck]
    w = X[:, lsho] - X[:, rsho]
    sin_beta = (v[:, 2] * w[:, 0] - v[:, 0] * w[:, 2]) / (v.norm(dim=-1) * w.norm(dim=-1)).clamp(min=1e-8)
    return torch.relu(sin_beta)


class SVMAC(PoseEstimator):
    """SVMAC as a LightningModule (manual optimisation of generator and critic).

    Args:
        width: hidden width of generator and critic (paper: 1024).
        dropout: generator dropout.
        num_angles: n of Eq. 4 (1: no L_svmac, L_3D, L_cameq; Table 4).
        max_angle_deg: range of the random rotations about the vertical axis.
        use_critic: train with the adversarial loss (False = Table 4 "w/o Disc").
        supervised_fraction: fraction of frames with 3D supervision (Table 4 "5% 3D Sup" = 0.05).
        c: camera distance of the normalisation (Eq. 1-2).
        lr / critic_lr / betas: Adam settings (paper: 5.5e-5 for both, betas (0.7, 0.9)).
        critic_steps: critic updates per generator update.
        gp_weight: WGAN-GP gradient-penalty weight.
        lambdas: lambda_1..5 of Eq. 24 (angle, cam, sym, 3D, svmac).
        supervised_weight: weight of the 3D supervision term.
        paper_literal: the paper's printed equations for everything below (overrides the three switches).
        renormalise: root-centre and rescale re-projections to 1/c, divide cameras by their scale, compare
            L_3D's poses at unit scale (module docstring).
        critic_times_c: feed the critic 2D poses times c (mean root distance 1) instead of the paper's 1/c.
        input_in_sets: the sets of Eq. 15 hold the 2D pose lifted at angle i besides the n re-projections.
        log_balance: at every validation, log each loss term's value and gradient norms on the depth and camera
            heads (one batch, :meth:`loss_balance`).
    """

    requires = ("joints_2d",)

    def __init__(self, width: int = 1024, dropout: float = 0.1, num_angles: int = 2, max_angle_deg: float = 180.0,
                 use_critic: bool = True, supervised_fraction: float = 0.0, c: float = 10.0, lr: float = 5.5e-5,
                 critic_lr: float = 5.5e-5, betas: tuple[float, float] = (0.7, 0.9), critic_steps: int = 1,
                 gp_weight: float = 10.0, lambdas: tuple[float, float, float, float, float] = (1.0, 1.0, 0.01, 0.1, 10.0),
                 supervised_weight: float = 1.0, paper_literal: bool = False, renormalise: bool = True,
                 critic_times_c: bool = True, input_in_sets: bool = True, log_balance: bool = True, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        if num_angles < 1:
            raise ValueError(f"SVMAC num_angles must be >= 1, got {num_angles}")
        if not 0.0 <= supervised_fraction <= 1.0:
            raise ValueError(f"SVMAC supervised_fraction must lie in [0, 1], got {supervised_fraction}")
        if len(lambdas) != 5:
            raise ValueError(f"SVMAC lambdas must have 5 values (Eq. 24), got {list(lambdas)}")
        if critic_steps < 1:
            raise ValueError(f"SVMAC critic_steps must be >= 1, got {critic_steps}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.renormalise = renormalise and not paper_literal
        self.critic_scale = c if critic_times_c and not paper_literal else 1.0
        self.input_in_sets = input_in_sets and not paper_literal
        joints = self.skeleton.num_joints
        # literal: the camera starts at the weak perspective of a pose at distance c, (1/c) [I | 0] (f = 1)
        self.generator = SVMACGenerator(joints, width, dropout, camera_init=1.0 / c if paper_literal else 1.0)
        self.critic = SVMACCritic(joints, width) if use_critic else None
        if supervised_fraction > 0:
            self.requires = ("joints_2d", "joints_3d", "sequence", "frame")
        names = self.skeleton.joints
        self._angle_joints = tuple(names.index(j) for j in ("Neck/Nose", "Thorax", "LShoulder", "RShoulder"))

    # -- geometry -----------------------------------------------------------------------------------
    def normalise(self, x2d: torch.Tensor) -> torch.Tensor:
        """Root-centre and scale 2D poses to mean root distance 1/c (Eq. 1-2)."""
        return normalise_2d(x2d, 1.0 / self.hparams.c, self.skeleton.root)

    def lift(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 3 with Z = D + c and X = x Z, Y = y Z (Eq. 1-2, f = 1): (B, J, 2) -> X (B, J, 3), K (B, 2, 3)."""
        depth, K = self.generator(x)
        Z = depth - depth[:, self.skeleton.root : self.skeleton.root + 1] + self.hparams.c
        return torch.cat([x * Z.unsqueeze(-1), Z.unsqueeze(-1)], dim=-1), K

    def project(self, X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """Eq. 9 / 13, K X: (..., J, 3) -> (..., J, 2); with ``renormalise`` the camera is divided by its scale and the
        result brought to the input normalisation."""
        if not self.renormalise:
            return X @ K.transpose(-1, -2)
        return self.normalise(X @ (K / camera_scale(K)).transpose(-1, -2))

    def unit_pose(self, X: torch.Tensor) -> torch.Tensor:
        """Root-centred, mean root distance 1: (..., J, 3) -> (..., J, 3)."""
        X = root_centre(X, self.skeleton.root)
        return X / mean_root_distance(X, self.skeleton.root)

    def rotate(self, X: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Eq. 8: (X - [0, 0, c]) R^theta + [0, 0, c] for X (B, J, 3), theta (A, B) -> (A, B, J, 3)."""
        offset = X.new_tensor([0.0, 0.0, self.hparams.c])
        return (X - offset).unsqueeze(0) @ rotation_y(theta) + offset

    def sample_angles(self, batch_size: int, device) -> torch.Tensor:
        """theta_i, i = 1..max(n-1, 1), per sample (Eq. 4): (A, B) radians."""
        count = max(self.hparams.num_angles - 1, 1)
        limit = math.radians(self.hparams.max_angle_deg)
        return (2 * torch.rand(count, batch_size, device=device) - 1) * limit

    def lift_rotate_reproject(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Eq. 3-9 for normalised 2D poses x (B, J, 2): X_pred (B, J, 3), K (B, 2, 3), the poses rotated by random
        angles X_rot (A, B, J, 3) and their re-projections x_proj (A, B, J, 2)."""
        X0, K0 = self.lift(x)
        X_rot = self.rotate(X0, self.sample_angles(x.shape[0], x.device))
        return X0, K0, X_rot, self.project(X_rot, K0.unsqueeze(0))

    # -- losses -------------------------------------------------------------------------------------
    def generator_losses(self, x: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """All terms of Eq. 24 (unweighted) for a batch of normalised 2D poses (B, J, 2)."""
        hp = self.hparams
        X0, K0, X_rot, x_proj = self.lift_rotate_reproject(x)
        zero = x.new_zeros(())
        losses = {
            "angle": angle_loss(X0, *self._angle_joints).mean(),
            "sym": symmetry_loss(X0, self.skeleton.bones, self.skeleton.symmetric_bones).mean(),
            "cam": weakcam_loss(K0).mean(),  # n = 1: Eq. 19 for the one camera, no L_cameq
            "3d": zero,  # n = 1: no rotated re-lifting (Eq. 11 sums over i >= 1)
            "svmac": zero,  # n = 1: "without the SVMAC loss" (Sec. 4.4)
        }
        if hp.num_angles > 1:
            X_tilde, K_rot = self.lift(x_proj.flatten(0, 1))  # Eq. 10, weight sharing
            X_tilde = X_tilde.view_as(X_rot)
            K_all = torch.cat([K0.unsqueeze(0), K_rot.view(-1, *K0.shape)])  # (n, B, 2, 3)
            pair = (self.unit_pose(X_tilde), self.unit_pose(X_rot)) if self.renormalise else (X_tilde, X_rot)
            losses["3d"] = (pair[0] - pair[1]).square().sum(-1).mean()  # Eq. 11
            K_eq = K_all / camera_scale(K_all) if self.renormalise else K_all
            losses["cam"] = weakcam_loss(K_all).sum(0).mean() + cameq_loss(K_eq).mean()  # Eq. 19 + 12 = Eq. 20
            poses_3d = torch.cat([X0.unsqueeze(0), X_tilde])  # Eq. 14
            sets = self.project(poses_3d.unsqueeze(1), K_all.unsqueeze(0))  # sets[i, a] = K^a X~^i (Eq. 13)
            if self.input_in_sets:  # the 2D pose lifted at angle i: the input for i = 0, x_proj^{theta_i} otherwise
                sets = torch.cat([torch.cat([x.unsqueeze(0), x_proj]).unsqueeze(1), sets], dim=1)
            losses["svmac"] = pairwise_consistency(sets.transpose(0, 1)).mean()  # Eq. 15: (1/n) sum_i = mean
        if self.critic is not None:  # Eq. 16 sums over the n - 1 angles
            losses["adv"] = -self.critic(self.critic_scale * x_proj.flatten(0, 1)).mean() * x_proj.shape[0]
        else:
            losses["adv"] = zero
        if hp.supervised_fraction > 0:
            losses["sup"] = self.supervised_loss(X0, batch)
        return losses

    def supervised_loss(self, X0: torch.Tensor, batch: dict) -> torch.Tensor:
        """Squared error to unit-scale ground truth on a fixed subset of frames (Table 4, '% 3D Sup')."""
        key = (batch["sequence"].long() * 7919 + batch["frame"].long()) % 10007
        chosen = key < self.hparams.supervised_fraction * 10007
        if not chosen.any():
            return X0.new_zeros(())
        pred = root_centre(X0[chosen], self.skeleton.root)
        gt = root_centre(batch["joints_3d"][chosen].float(), self.skeleton.root)
        gt = gt / mean_root_distance(gt, self.skeleton.root)
        return (pred - gt).square().sum(-1).mean()

    def weighted_terms(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The summands of Eq. 24 (plus the 3D supervision of Table 4), by loss name."""
        l1, l2, l3, l4, l5 = self.hparams.lambdas
        weights = {"adv": 1.0, "angle": l1, "cam": l2, "sym": l3, "3d": l4, "svmac": l5}
        weights["sup"] = self.hparams.supervised_weight
        return {k: weights[k] * v for k, v in losses.items()}

    def total_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Eq. 24."""
        return sum(self.weighted_terms(losses).values())

    def critic_loss(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """WGAN-GP (Eq. 16) for one angle: E[D(fake)] - E[D(real)] + gp (||grad D(x_hat)|| - 1)^2, on (B, J, 2) pairs;
        returns (loss, W-distance)."""
        real, fake = real.flatten(1), fake.flatten(1)
        alpha = torch.rand(real.shape[0], 1, device=real.device)
        x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.critic(x_hat).sum(), x_hat, create_graph=True)
        penalty = (grad.norm(dim=-1) - 1).square().mean()
        wasserstein = self.critic(real).mean() - self.critic(fake).mean()
        return -wasserstein + self.hparams.gp_weight * penalty, wasserstein

    # -- the balance of the terms -------------------------------------------------------------------
    def loss_balance(self, batch: dict, max_poses: int = 256, seed: int = 0) -> dict[str, torch.Tensor]:
        """Each term of Eq. 24 on one batch: ``loss_<term>`` (unweighted value) and ``grad_depth_<term>`` /
        ``grad_camera_<term>``, the norm of the weighted term's gradient over the parameters of the generator's
        depth (pose) and camera branches. The gradients of all terms come from one batched backward pass
        (``is_grads_batched``); the angles are drawn from ``seed`` with the global random state restored, so
        training is unaffected and successive validations are comparable."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            batch = {k: v[:max_poses].clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            losses = self.generator_losses(self.normalise(batch["joints_2d"].float()), batch)
            weighted = self.weighted_terms(losses)
            terms = torch.stack(list(weighted.values()))
            heads = {
                "depth": list(self.generator.pose.parameters()),
                "camera": list(self.generator.camera.parameters()),
            }
            params = heads["depth"] + heads["camera"]
            grads = torch.autograd.grad(terms, params, torch.eye(len(terms), device=terms.device),
                                        is_grads_batched=True, allow_unused=True, materialize_grads=True)  # fmt: skip
        split = len(heads["depth"])
        out = {f"loss_{k}": v.detach() for k, v in losses.items()}
        for head, part in (("depth", grads[:split]), ("camera", grads[split:])):
            norms = torch.cat([g.flatten(1) for g in part], dim=1).norm(dim=1)  # (terms,)
            out.update({f"grad_{head}_{k}": n for k, n in zip(weighted, norms)})
        return out

    # -- Lightning ----------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> None:
        hp = self.hparams
        x = self.normalise(batch["joints_2d"].float())
        opt_g, opt_d = self.optimizers() if self.critic is not None else (self.optimizers(), None)
        if opt_d is not None:
            with torch.no_grad():
                fake = self.lift_rotate_reproject(x)[3]  # (A, B, J, 2): every angle, each against the real batch
            real = x.expand(fake.shape[0], *x.shape)
            d_loss, wasserstein = self.critic_loss(
                self.critic_scale * real.flatten(0, 1), self.critic_scale * fake.flatten(0, 1)
            )
            d_loss = d_loss * fake.shape[0]  # Eq. 16 sums over the n - 1 angles
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            opt_d.step()
            self.log("train/critic_loss", d_loss)
            self.log("train/wasserstein", wasserstein, prog_bar=True)
        if batch_idx % hp.critic_steps == 0 or opt_d is None:
            losses = self.generator_losses(x, batch)
            total = self.total_loss(losses)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(total)
            opt_g.step()
            self.log("train/loss", total, prog_bar=True)
            self.log_dict({f"train/{k}": v for k, v in losses.items()})

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        if batch_idx == 0 and self.hparams.log_balance:
            self.log_dict({f"val_balance/{k}": v for k, v in self.loss_balance(batch).items()}, sync_dist=True)

    def configure_optimizers(self):
        hp = self.hparams
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=hp.lr, betas=tuple(hp.betas))
        if self.critic is None:
            return opt_g
        return opt_g, torch.optim.Adam(self.critic.parameters(), lr=hp.critic_lr, betas=tuple(hp.betas))

    def predict_pose(self, batch: dict) -> torch.Tensor:
        X0, _ = self.lift(self.normalise(batch["joints_2d"].float()))
        X = root_centre(X0, self.skeleton.root)
        return X / mean_root_distance(X, self.skeleton.root) * self.pose_scale_mm
