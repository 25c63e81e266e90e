"""Part-guided novel image synthesis (Kundu et al. 2020): 3D pose from frame pairs, a 2D puppet and unpaired 3D poses.

Paper: ``../shared/papers/kundu2020_part_guided_synthesis.txt`` (Sec. 3-4, Algorithm 1, Table 3). The puppet
(canonical part maps, their warps and the depth-aware composition of Sec. 3.1) is :mod:`methods.puppet`.

Pipeline (Fig. 2-3)
-------------------
* **Encoder E** (Sec. 3.2a): a ResNet (``make_backbone``); the *pose branch* pools the stride-32 features
  into an FC trunk that forks into two FC heads, the local limb vectors v3D (J x 3) and the camera c;
  the *appearance branch* turns the stride-16 features into a = (Ch, H/16, W/16) by two convolutions and, with
  ``appearance_pool`` (the default), averages that grid into one Ch vector, the same at every pixel (below).
* **T = T_s o T_c o T_fk** (Sec. 3.2a): T_fk is :func:`methods.kinematics.limbs_to_pose` with a constant
  array of bone lengths (the mean of the unpaired 3D poses; H36M-like defaults without them); the limb
  head predicts an offset from the mean local limb vectors of those poses. c = 3 angles (yaw about the
  body's up axis, free; pitch and roll bounded by ``max_pitch_deg`` / ``max_roll_deg`` through tanh)
  and 3 *restricted* translations: depth ``z0 * exp(depth_range * tanh(.))`` and the root's image offset
  ``max_shift * tanh(.)`` of the half image, so the skeleton stays in view. The ranges (``max_shift`` 0.5,
  ``depth_range`` 0.5) cover the pair crops (root offsets up to 0.49 half-images at the 95th percentile; depth
  below). With the median background the crops held the person over the whole 5-frame window (smaller, more
  off-centre) and ``depth_range`` was 1.0. ``z0`` makes the canonical
  T-pose's height fill 1 / ``crop_margin`` of the image. T_c is a fixed pinhole camera with focal
  ``focal * W`` px and the principal point at the image centre. T_s is the puppet.
* **Decoder D** (Sec. 3.2b): the kit's :class:`~methods.nn.encdec.EncoderDecoder` on the concatenation of the
  depth-aware part maps p = phi_d (L channels) and a (bilinearly resized to the image), giving the
  foreground image I-hat (sigmoid, 3 channels) and the part segmentation y-hat (L + 1 logits, background
  last). f-hat = 1 - softmax(y-hat)_background is the decoder's foreground.

Self-supervision on frame pairs (Sec. 3.3; the equations of L_I^u, L_I^c, L_seg are lost from the text)
---------------------------------------------------------------------------------------------------------
A sample is (I_s, I_t) of one video and static camera (``SyntheticHumanPairs``, ``pair`` mode) with the
video's background estimate B (temporal median of its frames). a_s = E_a(I_s); p_t = T(E_p(I_t)).
The images rendered are I-hat_t = D(a_s, p_t) and, for a pose p_z^3D drawn from the unpaired set, I-hat_z =
D(a_s, T(p_z^3D, c_t)) (the target's camera, detached: the prior poses are shown as the video films).

* **L_I^u** (consistency of y-hat and I-hat, on the predicted pose q_t): the decoder's frame, its foreground
  composited over the video's background estimate, is I_t: ``mean |f-hat_t I-hat_t + (1 - f-hat_t) B - I_t|``
  (L1 over pixels and channels). B is the background estimate from which [45], the paper's source of m_sal
  on Human3.6M, takes its saliency mask; composited, it plays m_sal's part softly: where the person stands
  f-hat must be 1 and I-hat the person, elsewhere f-hat must be 0 (or I-hat = B). Choice, after a first
  reading ``mean |f-hat I-hat - m_sal I_t|`` with ``m_sal = closing(|I_t - B| > 0.08)`` failed (25-min CPU run,
  checkpoint probed on a training batch): the thresholded m_sal kept half the person (IoU 0.48 with the true
  mask), the decoder fell to an almost empty foreground (mean f-hat 0.035, L_I^u 0.024, worse than
  painting nothing, 0.019), and L_I^u did not depend on the puppet at all (0.0238 with the predicted pose,
  0.0239 with the true pose of I_t, 0.0243 with no puppet), so the pose heads got no signal from it.
* **L_I^c** (consistency of p via w_fg and I-hat, on the true pose q_z): outside the posed puppet the frame
  is the background: ``mean (1 - w_fg^z) |frame_z - B| = mean (1 - w_fg^z) f-hat_z |I-hat_z - B|``.
* **L_sil** (``silhouette``, off by default; a reading of L_I^c, a departure from the text as it survives): the
  paper says L_I^c "enforces consistency between p (via w_fg) and I-hat" and, on Human3.6M, takes m_sal from the
  background estimate [45]; the equations are lost. Here the *predicted* pose's puppet is held to the frame's
  soft saliency, ``m_sal = min(1, max_channels |I_t - B| / saliency_scale)``, by the normalised L1 ``sum |w_fg^t
  - m_sal| / sum (w_fg^t + m_sal)`` per sample (1 - Dice on binary maps, 0 iff equal), averaged over
  ``silhouette_levels`` pyramid levels (2x average pooling each, so that a limb off the person still meets it
  at a coarse level). It reaches the encoder only (the puppet has no parameters), through its own optimiser at
  every step, and needs no decoder: the way out of the chicken-and-egg of the constant pose (below), where
  L_I^u can only teach the limbs once the decoder reads the puppet and the decoder only learns the puppet once
  the pose follows the image. With the plate, m_sal is the silhouette plus the contact shadow (``saliency_scale``
  0.25: IoU of m_sal > 0.5 with the true mask 0.71 on 48 training frames; 0.65 at 0.1). Measured
  (docs/reproductions/part_guided.md): it places and sizes the puppet but does not articulate it. Its per-sample
  optimum is not the true pose (fitting limbs and camera of 48 frames to it from the mean pose: 2D error 10.1 ->
  7.0 px, P-MPJPE 129.5 -> 162 mm, with the true mask as target too: w_fg carries no depth and the thin puppet
  fits the silhouette better with limbs spread), a fresh encoder trained on it alone for 1,500 steps predicts
  the same root-centred 2D pose for every validation frame (7.39 px own vs 7.37 batch-mean), and the full model
  with it (6-min CPU run, 215 iterations) tests at 143.3 mm P-MPJPE with one pose for every frame (own 134.2 vs
  batch-mean 133.6 mm on 64 validation frames; spread 29 mm against 206 true), so the configs leave it off.
* **w/o m_sal** (Table 3): no background estimate: the frame is I-hat itself (the decoder must paint the
  background too, the degenerate case of the paper's Fig. 5B) and L_I^c uses B = 0.
* **L_seg** (consistency of p via y^{p_z} and y-hat): cross-entropy of y-hat_z against y^{p_z} weighted by
  ``1 - w_unc^z``, plus Shannon's entropy of softmax(y-hat_z) weighted by w_unc^z (the surviving text:
  "Shannon's entropy for the regions associated with shape uncertainty"), pixel means. y^{p_z} takes its
  limb depths from p-hat_z^3D = E_p(I-hat_z) under the same camera, as the text says (Fig. 3C).
* **Energies** (Sec. 3.3c): ``L_pz = mean |p_z^3D - p-hat_z^3D|`` (canonical frame, metres) and ``L_as =
  mean |a_s - a-hat_s|`` with a_s detached (the target of the cycle), (p-hat_z^3D, a-hat_s) = E(frame_z).
  Choice: the secondary encoder reads the composite frame_z = f-hat_z I-hat_z + (1 - f-hat_z) B, not the
  bare I-hat_z, since "the frozen encoder expects I-hat to match its input distribution of real images
  (i.e. I_s)" and real frames have a background (I-hat alone without one).
* Without the prior (Table 3 "w/o q_z ~ D_z"): no energy steps, and L_I^c and L_seg use the predicted
  pose p_t (the depth of y^{p_t} its own).

Measured with the composite (20-min CPU run, 859 iterations; best checkpoint probed on a training batch):
every loss falls and test P-MPJPE is 131.2 mm (mean pose 178.9), but the pose still does not follow the
image: on 32 validation frames the own prediction scores 82.8 mm, the batch's mean prediction 82.3 and
another frame's prediction 82.7 (joint spread 28 mm against 151 mm true), so the gain is a better constant
pose. The decoder still ignores the puppet on the t path: L_I^u is 0.0252 with the true pose of I_t,
0.0256 with another sample's, 0.0251 with no puppet, all above painting nothing (|B - I_t| = 0.013). The
spatial appearance code a_s (H/16 x W/16) of a nearby frame in the same crop already places the person, so
the decoder learns that route while the pose is still constant, and the pose gets no gradient worth the
name.

Choice, ``appearance_pool`` (default true; false restores the paper's H x W x Ch code): a_s is the global
average of the appearance grid, broadcast over the image, so it says what the person looks like but not
where they stand; only p_t's puppet can place them, and L_I^u's gradient has to go through the pose. It is
the smallest change that removes the leak outright. The alternatives only weaken it: flips of I_s leave the
distance from the vertical mid-line, shifts within the crop leave a shifted copy of the layout (and with the
person over the whole background window the shift must be large to mean anything), and a larger frame gap
(``pair_max_gap`` is already 25 frames) still leaves the person near where they were. The paper's a is
spatial, but it applies pose augmentations (mirror flip, in-plane rotation) to I_s, "conceding their
invariance effect on ... a_s" (Implementation details), i.e. it too wants a_s free of the pose and layout;
our pairs share the crop and are not augmented, which makes a spatial a_s a map of I_t's silhouette.
Measured with it (5.5-min CPU run, 299 iterations, last checkpoint, the probe above): L_I^u now depends on
the puppet (0.0450 with the predicted pose, 0.0495 with none, 0.0517 with another sample's true pose, 0.0537
with I_t's true pose: the young decoder reads its own pose's puppets, not yet the true ones), but the pose
does not yet follow the image (own prediction 253.7 mm, batch-mean prediction 247.1; joint spread 55 mm
against 151 true), and validation P-MPJPE jumped from 100.2 (step 240) to 259.6 (step 299). Too short to judge.

Background B: the empty room (``SyntheticHumanPairs`` ``background_source: plate``; privileged, see below).
Diagnosis (the 20-min run above, best checkpoint, 32 training pairs at 64 px): the temporal median of 5
frames over +-25 frames still shows the person. The synthetic videos are 50 frames and mostly in place
(the median video's pelvis does not move at all), so B kept ~60 % of them: |B - I_t| is 0.099 on the
person's pixels (0.263 against the empty room), and painting nothing (the composite = B) scored L_I^u
0.0123 while the decoder's best, with its own predicted puppet, scored 0.0245 and with I_t's true pose
0.0302. L_I^u was lowest with no person at all; along the straight path from the true to the predicted
pose it fell (0.0302 at the truth, 0.0239 near the prediction; the truth won for 34 % of samples), so the
pose's gradient pointed away from the truth and the decoder learned to paint almost nothing (mean f-hat
0.13; y-hat all background on test images, segmentation F1 0.000 by step 750). The cycle's frames, drawn
over that B, held the real person of I_t under the puppet of p_z, and the encoder never read p_z from
them: L_pz 0.0418 against 0.0423 for predicting the prior's mean pose. With the plate (a 5-min run, 180
iterations) the same probe gives L_I^u 0.0512 at the true pose, 0.0606 at the prediction, falling
monotonically toward the truth, the truth better for 97 % of samples. The plate is what a long video of
a person who walks about yields (Human3.6M's subjects cross the room; [45]'s median spans a whole
sequence); here it is the renderer's empty room, so ``|I - B|`` is the silhouette up to the contact
shadow: a privileged input the paper does not have, recorded as such. ``background_source: median``
restores the video's estimate.

Measured with the plate (commit 8e02b5e: BatchNorm decoder, ``depth_range`` 1.0; the suite's four rows at 9 min
each, ~400 iterations, docs/reproductions/part_guided.md): test P-MPJPE full 131.6, w/o T_fk o T_c 155.8,
w/o q_z 255.2, w/o m_sal 145.4 (mean pose 178.9). The full model's pose is still constant (joint spread 8 mm
over 64 validation frames against 206 mm true; its own prediction 124.0, the batch's mean 124.2), its camera
ran to the near depth bound, and the cycle never beat the constant (L_pz 0.0432 vs 0.0423 for the prior's
mean): the encoder does not yet read p_z from the decoded frames, which is the paper's route to a pose that
follows the image. Two fixes came out of that probe (below); measured together in a 9.6-min run of the full
model: 130.9 mm, MPJPE 301 -> 266, predicted-pose puppet F1 0.30 / 0.04 -> 0.47 / 0.15, the pose still constant.

Decoder normalisation: ``decoder_norm: group`` (configs/part_guided.yaml) turns the kit decoder's BatchNorm layers into GroupNorm
(8 groups). With BatchNorm the decoder ran on three kinds of batch (the t path's near-identical puppets, the
prior's z path, the cycle) and evaluated single images with running statistics that matched none of them:
at the 9-min run's last checkpoint L_I^u on 32 training pairs was 0.044 in training mode and 0.19 in
evaluation mode (f-hat 0.93 everywhere), and on test images y-hat scattered parts over the whole frame.
GroupNorm has no batch statistics, so training and evaluation are the same function.

Camera depth: ``depth_range`` 0.5 (was 1.0). On the pair crops with the plate background (no 5-frame union
any more), log(z / z0) of the true root spans -0.33 .. 0.15 (5th-95th percentile, training) and -0.56 ..
-0.05 (validation); with 1.0 the full model's depth ran to the near bound (t_z 1.40 m, the puppet's joints
69 px tall against 45 px true) within 400 iterations, where L_I^u's depth gradient no longer pointed back
(it agreed with the height error on 44 % of samples).

Why the pose stayed constant (diagnosis, ``runs/probe/oracle.py``; CPU size, plate background, 16 pairs a step,
64 validation frames; "own" is P-MPJPE of each frame's prediction, "batch-mean" that of the mean prediction)
---------------------------------------------------------------------------------------------------------------
1. **The decoder starts painting everything.** y-hat has L + 1 = 11 classes, so at initialisation f-hat =
   10/11 (measured 0.875): the composite is I-hat over the whole frame. Trained on the *true* pose's puppet
   with L_I^u alone (privileged oracle), Adagrad at 2e-3 took more than 300 steps to beat painting nothing
   (L_I^u 0.052 with the true pose, 0.061 with another sample's, 0.027 for the bare plate; f-hat 0.63). With
   ``background_bias`` 3 (f-hat starts at 10 / (10 + e^3) = 0.33; measured 0.23) and the decoder at 1e-2 it
   beat it within 150 steps (0.021 vs 0.027; another sample's pose 0.036) and by 300 steps read the puppet
   (0.018 true, 0.032 another's). Either fix alone reached 0.027 / 0.023 at 150 steps.
2. **L_I^u does not teach the articulation.** With that oracle decoder frozen, a fresh encoder trained with L_I^u
   alone (300 steps) lowered L_I^u to 0.021 but its pose does not follow the image: own 131.9 mm vs batch-mean
   127.8; 2D joints (root-centred) 6.36 px vs 6.42 (Adagrad 1e-2: 273.1 vs 244.4, the pose wanders). At the
   mean pose the gradient of L_I^u places and scales the puppet (-grad of the root shift points at the true
   root, cosine 0.50, 75 % of samples; the depth's sign agrees with the height error for 88 %), but the limbs'
   gradient moves the root-centred 2D joints *away* from the truth (cosine -0.12; toward it for 31 %).
3. **The cycle alone does not transfer.** With the oracle decoder, a fresh encoder trained only with L_pz on
   decoded prior poses (composited over the plate, 300 steps) reads them better than the constant (L_pz 0.044
   -> 0.034) but not real frames: own 125.1 vs batch-mean 125.1 mm, spread 5 mm.
4. **The encoder learns slowly from any signal.** The same fresh encoder supervised directly on the true 2D
   joints (L1, 300 Adagrad steps at 2e-3) reached 5.06 px vs 5.82 for its batch mean, but root-centred only
   5.61 vs 5.92 (3D: 152.1 vs 153.8): in ~450 iterations of Algorithm 1 (the CPU budget) even direct
   supervision would barely articulate the pose of a from-scratch ResNet-18 at 64 px.

5. **Adam does not change 3-4** (a departure, ``optimizer: adam``, lr 1e-3, 300 steps each): the cycle alone
   127.3 vs 125.0 mm on real frames; direct 2D supervision root-centred 5.74 vs 6.02 px.

So the constant pose has two causes: a decoder that at 2e-3 takes most of the budget to start reading the
puppet (``background_bias``, ``decoder_lr``: choices where the paper is silent, measured above), and an encoder
that no loss of the method articulates within a few hundred steps: L_I^u's limb gradient points the wrong way
(toward folding the limbs onto the torso, the puppet the full runs end with) and the cycle's decoded frames do
not transfer to real ones at this size. The paper starts from an ImageNet ResNet-50, which this machine lacks.
With both choices in the full model (11-min CPU run, 451 iterations, docs/reproductions/part_guided.md) the
decoder still ends painting almost nothing on the t path (f-hat 0.012; L_I^u 0.0343 with the predicted pose,
0.0336 with the true one, 0.0331 for the bare plate) and the pose is still one for every frame: the decoder
cannot tell a predicted puppet (t path: where it is wrong, L_I^u says paint nothing) from a prior one (z path:
L_seg says paint it), and without a pose that follows the image the two disagree.

Pose branch input: ``pose_grid`` k pools the stride-32 features to a k x k grid and flattens it (1, the default: the
global mean, as before; the paper gives only "FC layers"). With k = 2 the FC trunk knows where in the crop each
feature lies; it did not make the silhouette term articulate the pose (above), so the configs keep 1.

Algorithm 1 in manual optimisation. Every loss has its own optimiser (``optimizer``: Adagrad as the paper,
or Adam, a departure), with the encoder's parameters at ``lr`` and the decoder's at ``decoder_lr``. Odd steps update
theta_E with L_pz and L_as (the cycle encoder reads I-hat_z detached, so no gradient reaches the decoder);
even steps update theta_D with them (the encoder is frozen: its parameters are left out). Every step also
updates (theta_E, theta_D) with L_I^u, L_I^c and L_seg. Choice: all of one step's gradients come from one
forward pass (computed per loss with ``torch.autograd.grad`` before any parameter moves), then each
optimiser steps; the paper's sequential order would need two forward passes per step.

Table 3 switches: ``kinematic: false`` (w/o T_fk o T_c: the pose head gives root-relative camera-frame
joints directly, the camera head only the restricted translations, plus a bone-length loss ``mean
||X_j - X_parent| - L_j|`` with its own optimiser, after Chen et al. 2019; prior poses are shown at a
random yaw), ``use_prior: false``, ``use_saliency: false``.

Limb depths: d^(l) = 1 + (z^(l) - z_root) / ``depth_unit`` (0.5 m), i.e. depth from a plane half a metre in
front of the pelvis. The paper divides the part maps by the depth itself; at 4-5 m a limb 20 cm in front of the
torso changes that by 5 %, less than a thin limb's blurred map is weaker than the torso's, so the torso would
win; measured from the plane, the limb's depth is 0.6 against the torso's 1.0.

Batch normalisation: the cycle's encoder pass on the decoded frames runs with the encoder's BatchNorm
in eval mode (running statistics, not updated; :func:`frozen_batchnorm`), as the "frozen energy network" the
text describes. Updating them with decoded images made the running statistics of real images wrong: at
test time the appearance code was off its training distribution and the decoder rendered nothing (first
CPU run).

Other choices: no colour jitter or flips/rotations (the paper's augmentations); learning rate ``lr`` for
every Adagrad (not given in the paper); the puppet's temperature ``tau`` (see :mod:`methods.puppet`).

Evaluation: the camera-frame pose ``R p^3D`` (mm, root-relative, scale of the constant bone lengths).
Part segmentation: y-hat of a single test image (a and p from that image) against the renderer's ``parts``
mapped to the puppet (:func:`methods.puppet.data_to_puppet_table`): F1 of foreground vs background, and
the mean F1 over the 10 parts (Table 5's measures), summed over the whole split, as ``seg_f1_fg`` and
``seg_f1_parts`` in the result record (``puppet_f1_*`` for the shape-unaware y^p). A figure per
validation (``<log dir>/val_synthesis.png`` and a copy per step under ``synthesis/``).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from kornia.geometry.conversions import axis_angle_to_rotation_matrix
from torch import nn

from datamodules.poses import PoseDataModule

from .base import PoseEstimator
from .kinematics import canonical_rotation, limbs_to_pose, pose_to_limbs
from .nn.backbones import check_image, make_backbone
from .nn.blocks import dense
from .nn.encdec import EncoderDecoder
from .puppet import PUPPET_PARTS, Puppet, colour_labels, colour_maps, data_to_puppet_table

#: H36M-like bone lengths (mm) used when no unpaired pose set gives them (bone ending at each joint).
DEFAULT_BONES_MM = (0.0, 133, 454, 450, 133, 454, 450, 233, 257, 121, 115, 151, 278, 252, 151, 278, 252)
#: canonical frame C (face +X, left +Y, up +Z) -> camera frame (x right, y down, z forward) of a body facing it
R0 = torch.tensor([[0.0, 1, 0], [0, 0, -1], [-1, 0, 0]])


def segmentation_counts(pred: torch.Tensor, target: torch.Tensor, classes: int) -> torch.Tensor:
    """(3, classes) true positives, false positives and false negatives of label maps ``pred`` vs ``target``."""
    c = torch.arange(classes, device=target.device).view(1, -1, *([1] * (target.dim() - 1)))
    p, t = pred.unsqueeze(1) == c, target.unsqueeze(1) == c
    dims = [0, *range(2, p.dim())]
    return torch.stack([(p & t).sum(dims), (p & ~t).sum(dims), (~p & t).sum(dims)]).float()


def segmentation_f1(counts: torch.Tensor) -> dict[str, float]:
    """Table 5's measures from :func:`segmentation_counts` (the last class is the background): ``f1_fg``, the F1
    of foreground (any part) vs background, and ``f1_parts``, the mean over the parts of each part's F1."""
    tp, fp, fn = counts.double()
    f1 = 2 * tp / (2 * tp + fp + fn).clamp(min=1)
    # foreground misses are background predictions on true parts (the background's fp), false alarms the
    # reverse; a part confused with another part stays a foreground hit
    fg_fn, fg_fp = fp[-1], fn[-1]
    fg_tp = (tp[:-1] + fn[:-1]).sum() - fg_fn
    return {"f1_fg": float(2 * fg_tp / (2 * fg_tp + fg_fp + fg_fn).clamp(min=1)), "f1_parts": float(f1[:-1].mean())}


def saliency(image: torch.Tensor, background: torch.Tensor, scale: float) -> torch.Tensor:
    """Soft saliency m_sal (B, 1, H, W) = min(1, max_channels |I - B| / ``scale``): 0 where the frame is the
    background estimate, 1 where any channel differs from it by ``scale`` or more."""
    return ((image - background).abs().amax(dim=1, keepdim=True) / scale).clamp(max=1.0)


def silhouette_loss(w_fg: torch.Tensor, m_sal: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """Normalised L1 ``sum |w - m| / sum (w + m)`` per sample (1 - Dice on binary maps; 0 iff w = m), averaged
    over the batch and over ``levels`` pyramid levels (2x average pooling each), so that a limb off the person
    still overlaps it at a coarse level and gets a gradient."""
    total = w_fg.new_zeros(())
    for level in range(levels):
        if level:
            w_fg, m_sal = F.avg_pool2d(w_fg, 2), F.avg_pool2d(m_sal, 2)
        num = (w_fg - m_sal).abs().flatten(1).sum(1)
        total = total + (num / (w_fg + m_sal).flatten(1).sum(1).clamp(min=1e-6)).mean()
    return total / levels


@contextmanager
def frozen_batchnorm(module: nn.Module):
    """Run ``module``'s BatchNorm layers in eval mode (running statistics, not updated) inside the block."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    for m in norms:
        m.eval()
    try:
        yield
    finally:
        for m in norms:
            m.train()


def group_norms(module: nn.Module, groups: int = 8) -> nn.Module:
    """Replace every BatchNorm2d under ``module`` by a GroupNorm (``gcd(groups, C)`` groups) in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.GroupNorm(math.gcd(groups, child.num_features), child.num_features))
        else:
            group_norms(child, groups)
    return module


class PartGuidedEncoder(nn.Module):
    """E (Sec. 3.2a): backbone, pose branch (FC trunk -> limb head, camera head), appearance branch."""

    def __init__(self, backbone: str, pretrained: str | None, frozen_bn: bool, channels_last: bool, joints: int,
                 camera_outputs: int, appearance_channels: int, hidden: int, appearance_pool: bool = True,
                 pose_grid: int = 1):  # fmt: skip
        super().__init__()
        self.appearance_pool, self.pose_grid = appearance_pool, pose_grid
        self.backbone = make_backbone(backbone, pretrained, frozen_bn, channels_last, return_strides=(16, 32))
        c16, c32 = self.backbone.stage_channels[16], self.backbone.stage_channels[32]
        self.trunk = dense(c32 * pose_grid**2, hidden)
        self.limbs = nn.Sequential(dense(hidden, hidden), nn.Linear(hidden, 3 * joints))
        self.camera = nn.Sequential(dense(hidden, hidden // 4), nn.Linear(hidden // 4, camera_outputs))
        self.appearance = nn.Sequential(
            nn.Conv2d(c16, appearance_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(appearance_channels),
            nn.LeakyReLU(0.2),
            nn.Conv2d(appearance_channels, appearance_channels, 1),
        )
        for head in (self.limbs[-1], self.camera[-1]):  # start at the mean pose, frontal camera
            nn.init.normal_(head.weight, std=1e-3)
            nn.init.zeros_(head.bias)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> limb offsets (B, 3J), raw camera (B, C), appearance (B, Ch, H/16, W/16), or (B, Ch, 1, 1)
        with ``appearance_pool`` (the grid's mean: no layout left; the decoder's resize broadcasts it). The pose
        branch reads the stride-32 features pooled to ``pose_grid`` x ``pose_grid`` cells, flattened."""
        feats = self.backbone(image)
        h = self.trunk(F.adaptive_avg_pool2d(feats[32], self.pose_grid).flatten(1).float())
        a = self.appearance(feats[16]).float()
        return self.limbs(h), self.camera(h), a.mean(dim=(-2, -1), keepdim=True) if self.appearance_pool else a


class PartGuided(PoseEstimator):
    """Kundu et al. 2020 as a LightningModule (module docstring: every choice the paper leaves open).

    Args:
        prior: the unpaired 3D poses (any ``PoseDataModule``; its ``train`` split), e.g. ``MocapPoses`` on
            Bandai or ``SyntheticPoses`` with other subjects; they also give the constant bone lengths.
            None: H36M-like bone lengths and no prior (then ``use_prior`` must be false).
        prior_max_poses: at most this many prior poses are kept (evenly strided).
        backbone / pretrained / frozen_bn / channels_last: the encoder's ResNet (``methods.nn.backbones``).
        image_size: the data's image size (px, square).
        appearance_channels: Ch of a.
        appearance_pool: a is the global average of the appearance branch's grid, the same at every pixel (no
            layout: only the puppet can place the person); false: the paper's spatial a (H/16 x W/16).
        pose_hidden: width of the pose branch's FC layers.
        pose_grid: the pose branch reads the stride-32 features average-pooled to pose_grid x pose_grid cells and
            flattened (1: the global mean, no layout; 2: where in the image each feature lies; module docstring).
        decoder_base / decoder_depth: ``EncoderDecoder`` width and number of stages.
        template_size / tau: the puppet's canvas (px) and depth-softmax temperature.
        depth_unit: the limb depths d^(l) given to the puppet are ``1 + (z - z_root) / depth_unit`` (m): depth
            measured from a plane ``depth_unit`` in front of the pelvis, in units of that distance.
        focal: fixed focal length of T_c as a fraction of the image width.
        crop_margin: the data's crop margin (sets the default camera distance).
        max_pitch_deg / max_roll_deg / max_shift / depth_range: the restrictions of the camera c.
        kinematic / use_prior / use_saliency: Table 3 switches.
        background_bias: added to the initial bias of y-hat's background logit, so that the decoder's
            foreground f-hat starts near L / (L + e^bias) instead of L / (L + 1) (module docstring).
        decoder_norm: ``group`` (the decoder's BatchNorm layers become GroupNorm: the same in training and
            evaluation; the configs' choice) or ``batch`` (the kit's BatchNorm; the default, so that checkpoints
            from before the option load).
        lr: learning rate of every loss's optimiser on the encoder's parameters.
        decoder_lr: the same on the decoder's parameters (None: ``lr``; module docstring).
        optimizer: ``adagrad`` (Algorithm 1) or ``adam`` (a departure, module docstring), one per loss either way.
        silhouette: add the t path's silhouette term L_sil (w_fg of the predicted pose's puppet against the soft
            saliency of I_t; a reading of L_I^c, module docstring), with its own optimiser, every step.
        saliency_scale: m_sal = min(1, max_channels |I_t - B| / saliency_scale).
        silhouette_levels: pyramid levels of L_sil (each halves the maps by average pooling).
        **kwargs: see :class:`methods.base.PoseEstimator`.
    """

    requires = ("image", "background")
    input_keys = ("image",)

    def __init__(self, prior: PoseDataModule | None = None, prior_max_poses: int = 20000, backbone: str = "resnet18",
                 pretrained: str | None = None, frozen_bn: bool = False, channels_last: bool = False,
                 image_size: int = 128, appearance_channels: int = 64, appearance_pool: bool = True,
                 pose_hidden: int = 1024, pose_grid: int = 1,
                 decoder_base: int = 32, decoder_depth: int = 4, template_size: int = 96, tau: float = 0.1,
                 depth_unit: float = 0.5, focal: float = 2.0, crop_margin: float = 1.2, max_pitch_deg: float = 30.0,
                 max_roll_deg: float = 15.0, max_shift: float = 0.5, depth_range: float = 0.5,
                 kinematic: bool = True, use_prior: bool = True, use_saliency: bool = True,
                 decoder_norm: str = "batch", background_bias: float = 0.0, lr: float = 2e-3,
                 decoder_lr: float | None = None, optimizer: str = "adagrad", silhouette: bool = False,
                 saliency_scale: float = 0.25, silhouette_levels: int = 4, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        if optimizer not in ("adagrad", "adam"):
            raise ValueError(f"PartGuided: optimizer must be 'adagrad' or 'adam', got {optimizer!r}")
        if decoder_norm not in ("batch", "group"):
            raise ValueError(f"PartGuided: decoder_norm must be 'batch' or 'group', got {decoder_norm!r}")
        if silhouette and not use_saliency:
            raise ValueError("PartGuided: silhouette needs the background estimate; set use_saliency: true or "
                             "silhouette: false")  # fmt: skip
        if saliency_scale <= 0 or silhouette_levels < 1 or pose_grid < 1:
            raise ValueError(f"PartGuided: saliency_scale must be > 0, silhouette_levels and pose_grid >= 1, got "
                             f"{saliency_scale}, {silhouette_levels} and {pose_grid}")  # fmt: skip
        if use_prior and prior is None:
            raise ValueError("PartGuided: use_prior is true but no prior is given; set model.init_args.prior to a "
                             "pose data module (e.g. class_path: datamodules.MocapPoses) or use_prior: false")  # fmt: skip
        if image_size % 2**decoder_depth:
            raise ValueError(f"PartGuided: image_size {image_size} must be divisible by 2**decoder_depth "
                             f"({2**decoder_depth}); change model.init_args.decoder_depth or image_size")  # fmt: skip
        self.save_hyperparameters(ignore=["prior"])
        self.automatic_optimization = False
        self.prior = prior
        J = self.skeleton.num_joints
        self.L = len(PUPPET_PARTS)
        self.encoder = PartGuidedEncoder(backbone, pretrained, frozen_bn, channels_last, J, 6 if kinematic else 3,
                                         appearance_channels, pose_hidden, appearance_pool, pose_grid)  # fmt: skip
        self.decoder = EncoderDecoder(self.L + appearance_channels, 3 + self.L + 1, decoder_base, decoder_depth)
        if decoder_norm == "group":
            group_norms(self.decoder)
        with torch.no_grad():  # y-hat's background logit starts at this bias: f-hat = L / (L + e^bias) (docstring)
            self.decoder.out.bias[3 + self.L] += background_bias
        self.register_buffer("bone_lengths", torch.tensor(DEFAULT_BONES_MM) / 1000.0)  # metres, saved
        self.register_buffer("mean_limbs", self._rest_limbs())
        self.register_buffer("prior_limbs", torch.zeros(0, J, 3), persistent=False)
        self.register_buffer("data_to_puppet", data_to_puppet_table(), persistent=False)
        self.register_buffer("seg_counts", torch.zeros(2, 3, self.L + 1), persistent=False)  # (ŷ, y^p) x (tp, fp, fn)
        self.puppet = Puppet(self.bone_lengths * 1000.0, template_size, tau=tau)
        self._infer_cache: tuple[torch.Tensor, dict] | None = None
        self._figure_batch: dict | None = None

    # -- setup: the unpaired poses and the constant bone lengths ------------------------------------------------
    def _rest_limbs(self) -> torch.Tensor:
        from .kinematics import H36M_REST_DIRECTIONS

        rest = torch.zeros(self.skeleton.num_joints, 3)
        for j, p in enumerate(self.skeleton.parents):  # an A-pose: arms 60 degrees down from the T-pose
            if p >= 0:
                rest[j] = rest[p] + torch.tensor(DEFAULT_BONES_MM[j]) * H36M_REST_DIRECTIONS[j]
        for side, sign in (("L", 1.0), ("R", -1.0)):
            for name in ("Elbow", "Wrist"):
                j, p = self.skeleton.index(side + name), self.skeleton.parents[self.skeleton.index(side + name)]
                rest[j] = rest[p] + DEFAULT_BONES_MM[j] * torch.tensor([0.0, sign * 0.5, -math.sqrt(3) / 2])
        return pose_to_limbs(rest)[0]

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.prior is None:
            return
        joints = self.prior.load_clips("train").joints_world.float()
        if len(joints) == 0:
            raise ValueError(f"PartGuided: the prior {type(self.prior).__name__} has no train poses")
        stride = max(1, math.ceil(len(joints) / self.hparams.prior_max_poses))
        limbs, lengths, _ = pose_to_limbs(joints[::stride])
        self.prior_limbs = limbs.to(self.device)
        self.bone_lengths = (lengths.mean(0) / 1000.0).to(self.device)
        self.mean_limbs = F.normalize(limbs.mean(0), dim=-1).to(self.device)
        self.puppet = Puppet(lengths.mean(0), self.hparams.template_size, tau=self.hparams.tau).to(self.device)

    def input_description(self, name: str, data_protocol: dict | None = None) -> str:
        """The test image; the method's row also says what training read beyond its frame pairs: the background
        (``plate``, the empty room, is privileged), and the unpaired 3D prior."""
        text = super().input_description(name, data_protocol)
        if name != self.method_name:
            return text
        extra = [f"background {self.background_source or 'unknown'}"] if self.hparams.use_saliency else []
        extra += ["3D prior"] if self.hparams.use_prior else []
        return f"{text} (trained on pairs{''.join(', ' + e for e in extra)})"

    # -- T_fk, T_c --------------------------------------------------------------------------------------------
    @property
    def focal_px(self) -> float:
        return self.hparams.focal * self.hparams.image_size

    @property
    def z0(self) -> float:
        """Camera distance (m) at which the canonical T-pose's height fills 1 / crop_margin of the image."""
        height = float(self.puppet.template_joints[:, 1].amax() - self.puppet.template_joints[:, 1].amin())
        height_m = height / self.puppet.px_per_mm / 1000.0 * 1.08  # joints to the skull top and the soles
        return self.hparams.focal * self.hparams.crop_margin * height_m

    def fk(self, limbs: torch.Tensor) -> torch.Tensor:
        """T_fk: local limb vectors (B, J, 3) -> canonical pose (B, J, 3) m with the constant bone lengths.

        The rows of the hips, the neck and the spine are free directions in C; the pose they make is turned
        into C (``canonical_rotation``: face vector on +X, the neck above the pelvis on +Z). The turn does not
        change the parent-relative limbs (their frames turn with the pose)."""
        pose = limbs_to_pose(limbs, self.bone_lengths)
        return pose @ canonical_rotation(pose).transpose(-1, -2)

    def camera(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw camera outputs (B, 6 | 3) -> rotation (B, 3, 3) canonical -> camera frame and translation (B, 3) m."""
        hp = self.hparams
        B = raw.shape[0]
        shift, depth = raw[:, -3:-1], raw[:, -1]
        z = self.z0 * torch.exp(hp.depth_range * torch.tanh(depth))
        xy = hp.max_shift * torch.tanh(shift) * (hp.image_size / 2) / self.focal_px * z.unsqueeze(-1)
        t = torch.cat([xy, z.unsqueeze(-1)], dim=-1)
        R0_ = R0.to(raw)
        if raw.shape[-1] == 3:  # no camera rotation (kinematic: false)
            return R0_.expand(B, 3, 3), t
        zeros = torch.zeros_like(raw[:, 0])
        yaw = axis_angle_to_rotation_matrix(torch.stack([zeros, zeros, raw[:, 0]], -1))
        pitch = math.radians(hp.max_pitch_deg) * torch.tanh(raw[:, 1])
        roll = math.radians(hp.max_roll_deg) * torch.tanh(raw[:, 2])
        tilt = axis_angle_to_rotation_matrix(torch.stack([pitch, zeros, zeros], -1))
        spin = axis_angle_to_rotation_matrix(torch.stack([zeros, zeros, roll], -1))
        return spin @ tilt @ R0_ @ yaw, t

    def pose(self, limb_raw: torch.Tensor, cam_raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder pose outputs -> p3d (B, J, 3) (canonical, or root-relative camera frame without T_fk), R, t and
        the camera-frame joints X (B, J, 3), all in metres."""
        B, J = limb_raw.shape[0], self.skeleton.num_joints
        R, t = self.camera(cam_raw.float())
        if self.hparams.kinematic:
            p3d = self.fk(self.mean_limbs + limb_raw.view(B, J, 3).float())
            rel = p3d @ R.transpose(-1, -2)
        else:  # direct camera-frame joints around the mean pose (root-relative)
            rest = self.fk(self.mean_limbs.unsqueeze(0))[0] @ R0.to(limb_raw).t()
            rel = rest + limb_raw.view(B, J, 3).float()
            rel = rel - rel[:, self.skeleton.root : self.skeleton.root + 1]
            p3d = rel
        return {"p3d": p3d, "R": R, "t": t, "X": rel + t.unsqueeze(1)}

    def relative_depth(self, z: torch.Tensor) -> torch.Tensor:
        """(B, J) camera depths (m) -> the puppet's depths: 1 + (z - z_root) / depth_unit (at least 0.1)."""
        root = z[:, self.skeleton.root : self.skeleton.root + 1]
        return (1.0 + (z - root) / self.hparams.depth_unit).clamp(min=0.1)

    def project(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """T_c: camera-frame joints (B, J, 3) m -> q (B, J, 2) px, depth relative to the root (B, J), and the
        puppet's across scale per part (B, L) (image px per canonical px at each limb's depth)."""
        z = X[..., 2].clamp(min=0.05)
        c = self.hparams.image_size / 2
        q = self.focal_px * X[..., :2] / z.unsqueeze(-1) + c
        rel = self.relative_depth(z)
        part_z_mm = self.puppet.part_depths(z) * 1000.0
        across = self.focal_px / part_z_mm / self.puppet.px_per_mm
        return q, rel, across

    def render(self, X: torch.Tensor, appearance: torch.Tensor, depth_from: torch.Tensor | None = None):
        """T_s and D: camera-frame joints -> puppet outputs and the decoder's image / segmentation.

        ``depth_from`` (B, J, 3): other camera-frame joints whose depths order the parts (L_seg's y^{p_z})."""
        size = (self.hparams.image_size, self.hparams.image_size)
        q, rel, across = self.project(X)
        if depth_from is not None:
            rel = self.relative_depth(depth_from[..., 2])
        out = self.puppet(q, rel, across, size)
        out["q"] = q
        app = F.interpolate(appearance, size=size, mode="bilinear", align_corners=False)
        dec = self.decoder(torch.cat([out["phi_d"].to(app.dtype), app], dim=1)).float()
        out["image"] = torch.sigmoid(dec[:, :3])
        out["seg"] = dec[:, 3:]
        out["fg"] = 1.0 - torch.softmax(out["seg"], dim=1)[:, self.L : self.L + 1]
        return out

    # -- losses -----------------------------------------------------------------------------------------------
    @staticmethod
    def composite(fg: torch.Tensor, image: torch.Tensor, background: torch.Tensor | None) -> torch.Tensor:
        """The decoder's frame: f-hat I-hat + (1 - f-hat) B over the background estimate B (Î itself without one)."""
        return image if background is None else fg * image + (1 - fg) * background

    def loss_u(self, out: dict, target: torch.Tensor, background: torch.Tensor | None) -> torch.Tensor:
        """L_I^u: mean L1 between the composite of D(a_s, p_t) and I_t (module docstring)."""
        return (self.composite(out["fg"], out["image"], background) - target).abs().mean()

    def loss_c(self, out: dict, background: torch.Tensor | None) -> torch.Tensor:
        """L_I^c: mean (1 - w_fg) |composite - B| = (1 - w_fg) f-hat |I-hat - B|: nothing painted off the puppet."""
        bg = torch.zeros_like(out["image"]) if background is None else background
        return ((1 - out["w_fg"].detach()) * out["fg"] * (out["image"] - bg).abs()).mean()

    def seg_loss(self, seg: torch.Tensor, target: torch.Tensor, w_unc: torch.Tensor) -> torch.Tensor:
        """L_seg: (1 - w_unc) cross-entropy to y^p plus w_unc Shannon entropy of the prediction."""
        logp = torch.log_softmax(seg, dim=1)
        ce = F.nll_loss(logp, target, reduction="none")
        entropy = -(logp.exp() * logp).sum(1)
        w = w_unc[:, 0]
        return ((1 - w) * ce + w * entropy).mean()

    def sample_prior(self, n: int) -> torch.Tensor:
        """(n, J, 3) canonical prior poses p_z^3D in metres, with the model's bone lengths."""
        idx = torch.randint(len(self.prior_limbs), (n,), device=self.prior_limbs.device)
        return self.fk(self.prior_limbs[idx])

    def losses(self, batch: dict, encoder_step: bool) -> dict[str, torch.Tensor]:
        """Every loss of one training step (module docstring), from one forward pass."""
        hp = self.hparams
        images = batch["image"]
        if images.dim() != 5 or images.shape[1] != 2:
            raise ValueError(f"PartGuided trains on frame pairs (B, 2, 3, H, W); got image {tuple(images.shape)}: set "
                             "data.init_args.mode: pair (class_path datamodules.SyntheticHumanPairs)")  # fmt: skip
        B = images.shape[0]
        I_s, I_t = images[:, 0], images[:, 1]
        check_image(I_t, (hp.image_size, hp.image_size), type(self).__name__)
        limb_raw, cam_raw, app = self.encoder(torch.cat([I_s, I_t]))
        a_s = app[:B]
        pose_t = self.pose(limb_raw[B:], cam_raw[B:])
        out_t = self.render(pose_t["X"], a_s)
        background = batch["background"].float() if hp.use_saliency else None
        losses = {"u": self.loss_u(out_t, I_t, background)}
        if hp.silhouette:  # the t path's puppet against the frame's saliency (module docstring)
            m_sal = saliency(I_t, background, hp.saliency_scale)
            losses["sil"] = silhouette_loss(out_t["w_fg"], m_sal, hp.silhouette_levels)
        if not hp.kinematic:
            X = pose_t["p3d"]
            parents = torch.tensor([max(p, 0) for p in self.skeleton.parents], device=X.device)
            lengths = (X - X[:, parents]).norm(dim=-1)[:, 1:]
            losses["bone"] = (lengths - self.bone_lengths[1:]).abs().mean()
        if hp.use_prior:
            p_z = self.sample_prior(B)
            if hp.kinematic:
                R, t = pose_t["R"].detach(), pose_t["t"].detach()
            else:  # no camera rotation is estimated: show the prior at a random yaw
                yaw = (torch.rand(B, device=p_z.device) * 2 - 1) * math.pi
                zeros = torch.zeros_like(yaw)
                R = R0.to(p_z) @ axis_angle_to_rotation_matrix(torch.stack([zeros, zeros, yaw], -1))
                t = pose_t["t"].detach()
            rel_z = p_z @ R.transpose(-1, -2)
            X_z = rel_z + t.unsqueeze(1)
            out_z = self.render(X_z, a_s)
            # the cycle: E(I-hat_z); the encoder step reads it detached, the decoder step through D
            with frozen_batchnorm(self.encoder):  # synthetic images must not shift the statistics of real ones
                frame_z = self.composite(out_z["fg"], out_z["image"], background)  # a frame like I_s: over B
                cyc_limb, cyc_cam, cyc_app = self.encoder(frame_z.detach() if encoder_step else frame_z)
            cyc = self.pose(cyc_limb, cyc_cam)
            target = p_z if hp.kinematic else rel_z
            losses["pz"] = (cyc["p3d"] - target).abs().mean()
            losses["as"] = (cyc_app - a_s.detach()).abs().mean()
            depth_from = (cyc["p3d"].detach() @ R.transpose(-1, -2) + t.unsqueeze(1)) if hp.kinematic else None
            with torch.no_grad():
                q_z, rel, across_z = self.project(X_z)
                if depth_from is not None:
                    rel = self.relative_depth(depth_from[..., 2])
                y_z = self.puppet.forward(q_z, rel, across_z, out_z["phi_d"].shape[-2:])["y_p"]
            seg_out, seg_target = out_z, y_z
        else:
            seg_out, seg_target = out_t, out_t["y_p"].detach()
        losses["c"] = self.loss_c(seg_out, background)
        losses["seg"] = self.seg_loss(seg_out["seg"], seg_target, seg_out["w_unc"].detach())
        return losses

    # -- Algorithm 1 --------------------------------------------------------------------------------------------
    def _groups(self) -> list[tuple[str, str]]:
        """(loss, parameter set) of every optimiser, in the order of ``configure_optimizers``."""
        groups = [("u", "all"), ("c", "all"), ("seg", "all")]
        if self.hparams.silhouette:  # reaches the encoder only (the decoder's gradients are None)
            groups.append(("sil", "all"))
        if not self.hparams.kinematic:
            groups.append(("bone", "all"))
        if self.hparams.use_prior:
            groups += [("pz", "encoder"), ("as", "encoder"), ("pz", "decoder"), ("as", "decoder")]
        return groups

    def _params(self, which: str) -> list[nn.Parameter]:
        if which == "encoder":
            mods = [self.encoder]
        elif which == "decoder":
            mods = [self.decoder]
        else:
            mods = [self.encoder, self.decoder]
        return [p for m in mods for p in m.parameters() if p.requires_grad]

    def configure_optimizers(self):
        hp = self.hparams
        lrs = {"encoder": hp.lr, "decoder": hp.lr if hp.decoder_lr is None else hp.decoder_lr}
        make = torch.optim.Adam if hp.optimizer == "adam" else torch.optim.Adagrad
        out = []
        for _, which in self._groups():  # one optimiser per loss; a parameter group per network
            nets = ("encoder", "decoder") if which == "all" else (which,)
            out.append(make([{"params": self._params(n), "lr": lrs[n]} for n in nets]))
        return out

    def update(self, losses: dict[str, torch.Tensor], optimizers: list, indices: list[int]) -> None:
        """Step optimisers ``indices`` (into :meth:`_groups`), each with the gradient of its own loss on its own
        parameter set; every gradient is taken before any parameter moves."""
        groups = self._groups()
        grads = []
        for i, k in enumerate(indices):
            name, which = groups[k]
            params = self._params(which)
            g = torch.autograd.grad(losses[name], params, retain_graph=i < len(indices) - 1, allow_unused=True)
            grads.append((k, params, g))
        for n, (k, params, g) in enumerate(grads):
            for p, gi in zip(params, g):
                p.grad = gi
            # only the first step goes through Lightning, so that global_step counts iterations of Algorithm 1
            (optimizers[k] if n == 0 else getattr(optimizers[k], "optimizer", optimizers[k])).step()
            for p in params:
                p.grad = None

    def training_step(self, batch: dict, batch_idx: int) -> None:
        encoder_step = self.global_step % 2 == 1
        losses = self.losses(batch, encoder_step)
        self.stop_if_not_finite({f"train/loss_{k}": v for k, v in losses.items()})
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        energy_set = "encoder" if encoder_step else "decoder"
        self.update(losses, opts, [k for k, (_, which) in enumerate(self._groups()) if which in ("all", energy_set)])
        for name, value in losses.items():
            self.log(f"train/loss_{name}", value.detach(), prog_bar=name in ("u", "pz"))

    # -- inference and evaluation -----------------------------------------------------------------------------
    def infer(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """One image (B, 3, H, W): pose (camera frame, root-relative, m), puppet outputs, I-hat and y-hat from its
        own appearance."""
        check_image(image, (self.hparams.image_size, self.hparams.image_size), type(self).__name__)
        limb_raw, cam_raw, app = self.encoder(image)
        pose = self.pose(limb_raw, cam_raw)
        out = self.render(pose["X"], app)
        out["rel"] = pose["X"] - pose["t"].unsqueeze(1)
        return out

    def predict_pose(self, batch: dict) -> torch.Tensor:
        cache = self._infer_cache
        out = cache[1] if cache is not None and cache[0] is batch["image"] else self.infer(batch["image"])
        return out["rel"] * 1000.0

    def _seg_step(self, batch: dict, stage: str, batch_idx: int) -> None:
        out = self.infer(batch["image"])
        self._infer_cache = (batch["image"], out)
        self._evaluate_and_keep(stage, batch, batch_idx)
        self._infer_cache = None
        target = self.data_to_puppet[batch["parts"].long()]
        for row, labels in enumerate((out["seg"].argmax(1), out["y_p"])):
            self.seg_counts[row] += segmentation_counts(labels, target, self.L + 1)
        if batch_idx == 0:
            self._figure_batch = {k: v[:4].detach() for k, v in out.items() if torch.is_tensor(v)}
            self._figure_batch.update(input=batch["image"][:4], parts=target[:4])

    def seg_f1(self) -> dict[str, float]:
        """Table 5's F1 measures for y-hat (``seg_``) and y^p (``puppet_``) over the epoch; resets the counts."""
        out = {}
        for row, prefix in enumerate(("seg", "puppet")):
            out.update({f"{prefix}_{k}": v for k, v in segmentation_f1(self.seg_counts[row]).items()})
        self.seg_counts.zero_()
        return out

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._seg_step(batch, "val", batch_idx)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._seg_step(batch, "test", batch_idx)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self.seg_counts.zero_()

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.seg_counts.zero_()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        f1 = self.seg_f1()
        for key, value in f1.items():
            self.log(f"val/{key}", value)
        if self.val_history and not self.trainer.sanity_checking:
            self.val_history[-1].update(f1)
        if not self.trainer.sanity_checking and self.trainer.is_global_zero:
            self.plot_synthesis(Path(self.trainer.log_dir or "."), step=int(self.global_step))
            self.plot_predictions("val", step=int(self.global_step))

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        f1 = self.seg_f1()
        result = self.test_results.get(self.method_name)
        if result is not None:
            result["metrics"].update(f1)
            for key in f1:
                result["metric_protocol"][key] = {"parts": f"puppet-{self.L}", "measure": "F1", "scale": "n/a"}
        for key, value in f1.items():
            self.log(f"test/{key}", value)

    def plot_synthesis(self, log_dir: Path, step: int) -> Path | None:
        """``<log dir>/val_synthesis.png`` (and ``synthesis/step_<N>.png``): per sample, the input with the predicted
        2D pose, the reconstruction f-hat I-hat, the puppet's part maps phi_d, y^p, y-hat and the true parts."""
        fb = self._figure_batch
        if fb is None:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = fb["input"].shape[0]
        titles = ("input + predicted pose", "reconstruction", "puppet maps phi_d", "y^p", "y-hat", "true parts")
        fig, axes = plt.subplots(n, len(titles), figsize=(2.2 * len(titles), 2.3 * n), squeeze=False)
        for i in range(n):
            fg = fb["phi_p"][i].amax(0, keepdim=True).clamp(0, 1)
            panels = (fb["input"][i].permute(1, 2, 0), (fb["fg"][i] * fb["image"][i]).permute(1, 2, 0),
                      colour_maps(fb["phi_d"][i] * fg), colour_labels(fb["y_p"][i]),
                      colour_labels(fb["seg"][i].argmax(0)), colour_labels(fb["parts"][i]))  # fmt: skip
            for j, (ax, img) in enumerate(zip(axes[i], panels)):
                ax.imshow(img.detach().float().cpu().clamp(0, 1).numpy())
                ax.axis("off")
                if i == 0:
                    ax.set_title(titles[j], fontsize=8)
            q = fb["q"][i].detach().float().cpu() - 0.5
            for parent, child in self.skeleton.bones:
                name = self.skeleton.joints[child]
                colour = "red" if name.startswith("R") else "blue" if name.startswith("L") else "yellow"
                axes[i, 0].plot(q[[parent, child], 0], q[[parent, child], 1], color=colour, lw=1)
        fig.suptitle(f"PartGuided, validation at step {step}", fontsize=9)
        fig.tight_layout()
        path = log_dir / "val_synthesis.png"
        log_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90)
        (log_dir / "synthesis").mkdir(exist_ok=True)
        fig.savefig(log_dir / "synthesis" / f"step_{step:06d}.png", dpi=90)
        plt.close(fig)
        for logger in self.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="val/synthesis", images=[str(path)], step=step)
        return path
