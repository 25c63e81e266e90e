"""Neural rendering of a Gaussian shape template (Schmidtke et al.): 3D pose from static-background video.

Paper: ``../shared/papers/schmidtke2022_neural_rendering_static_video.txt``; equation numbers refer to it.

An encoder phi (ResNet, Sec. 3.2) reads a frame x_t and predicts, for each of the K parts of a 3D shape
template T (Sec. 3.1), an axis-angle rotation r_k and a per-axis scale s_k, plus one global translation t.
The parts are transformed (Rodrigues via kornia) and re-attached along a kinematic chain by anchor
translations (Sec. 3.3), rendered by differentiable emission-absorption ray marching of the summed, clipped
occupancy and colour fields (Eq. 1-4, 6; :mod:`methods.nn.gaussian_render`), and a generator psi (an
encoder-decoder with strided downsampling, bilinear upsampling and SPADE conditioned on the render)
reconstructs x_t from the render and another frame x_dt of the same static-camera video
(``SyntheticHumans`` mode ``pair``). Losses (Eq. 7-8): pixel L2, the boundary loss on the projected anchors
and the decaying rotation regulariser.

Details the paper leaves open, and the choices made here:

* **Template.** K = 16 parts, one Gaussian ellipsoid per bone of the 17-joint evaluation skeleton (hips,
  thighs, shins, abdomen, chest, neck, head, clavicles, upper arms, forearms), hand-made human proportions
  in metres (:data:`TEMPLATE_JOINTS`, 1.75 m tall), standing upright facing the camera with the arms hanging
  down, every bone along a template axis so a per-axis scale is a scale along or across the bone. Each
  Gaussian sits at its bone's midpoint, axis-aligned, standard deviations :data:`TEMPLATE_SIGMA`. Colour c_k
  (sigmoid of a logit; initial hues: left side warm, right side cool, centre line neutral) and peak
  occupancy f_k (sigmoid, initial 0.88) are learned; the shape (log standard deviations) is fixed by default
  and learned with ``learn_shape=True``. The anchors are the skeleton's joints: a child part's anchor and
  its parent's are the joint they share (Fig. 2, "area of overlap").
* **Rotations are per part and absolute** (Sec. 3.2: each part is transformed by its own matrix
  H_k = R(r_k) diag(s_k) about the template origin); only the anchor translations chain (Sec. 3.3):
  the core (the abdomen, Hip->Spine) goes to ``t``; every other part, in topological order, gets
  ``tau_k = H_parent a + tau_parent - H_k a`` for its anchor a (t = a~^n - a~^m of Fig. 2). So a part
  turns about its anchor, and r_k = 0 keeps it at the template's orientation (what the regulariser pulls to).
* **Scale** s_k = exp(ln(max_scale) tanh(.)) in [1/max_scale, max_scale] (max_scale 1.5).
* **Translation.** The camera-frame root t is predicted as an image position (crop-normalised offsets from
  the centre) and a log-depth around z_ref = f_y * 1.75 m / (0.83 H) (the crop's intrinsics K put a person
  of template height over 1/1.2 of the crop), back-projected with K: t = z K^-1 (u, v, 1).
* **Rendering.** Camera from the batch's crop intrinsics K; rays through pixel centres of a
  ``render_size`` grid over the same field of view; ``num_samples`` samples between near/far = the root
  depth -/+ the template's radius (detached) plus 0.3 m; black background; the render is 3 colour channels
  plus the opacity, upsampled bilinearly to the image size for the generator. The colour field at a point
  is the occupancy-weighted mean of the parts' colours (``colour_mode: normalised``): the literal "sum of the
  colour fields, clipped" darkens every opaque part to ~0.3 of its colour at its rim, where the rays stop
  (``colour_mode: sum`` keeps the literal reading; see ``methods.nn.gaussian_render``). The fields are
  evaluated exactly at the samples (``field: analytic``) or, as the paper does through PyTorch3D, rasterised
  on a ``grid_size``^3 grid and read with trilinear ``grid_sample`` (``field: grid``).
* **Generator psi.** :class:`methods.nn.encdec.EncoderDecoder` (strided convs, bilinear upsampling,
  SPADE residual blocks conditioned on the render, bilinear label resizing, U-Net skips; ``gen_skips: false`` drops
  them: "a typical convolutional encoder-decoder", Sec. 3, and the 2D predecessor's translator has none); input =
  render concatenated with x_dt; sigmoid output. What the render is (``condition``): ``rgb``, the paper's colour
  image (3 channels + opacity), or ``parts``, one channel per part + opacity (each part's colour c_k the k-th unit
  vector, so Eq. 2 composites per-part maps that partition the opacity), the representation of the 2D
  predecessor (Schmidtke et al. 2021, code ``lschmidtke/shape_templates``: its translator reads x_dt concatenated
  with the K transformed part images). The configs use ``parts`` (measured below); the class default stays the
  paper's ``rgb``.
* **Losses.** L_recon = the squared l2 norm of the pixel error, summed over pixels and channels, averaged over
  the batch (``recon_reduction: sum``; "the pixel-wise l2-norm between the decoder output and the original
  image", Sec. 3.4). Its scale matters because Eq. 8 adds L_b and alpha sum_k ||r_k|| unweighted: with a *mean*
  over the 3 x 64 x 64 values (``recon_reduction: mean``) the regulariser's gradient on the rotations was ~450x
  the reconstruction's at initialisation and held every r_k at exactly 0 for the 500 decay steps (the gradient
  of ||r|| is a unit vector, an L1-like pull), by which time the generator had learnt to ignore the template.
  L_b (Eq. 7) over the 17 anchors
  (joints), in (-1, 1) crop coordinates, summed over anchors and axes, averaged over the batch. The
  regulariser is alpha * sum_k ||r_k||_2 with alpha = max(0, 1 - step / reg_decay_steps): the text says
  "decay linearly to 0 after 500 iterations" while the printed alpha = min(1 - 0.02 iter) would reach 0
  after 50; we follow the text (``reg_decay_steps: 500``) and keep the weight 1 of Eq. 8.
* **Measured: the reconstruction loss does not pull the limbs to the person (CPU sizes, 64 px).** Probes (one
  thread; generators of the CPU size trained 150 steps on templates posed to the ground truth, then the
  reconstruction error descended on the 16 rotations of 16 held-out frames, 40 Adam steps; error = mean angle
  between projected template bones and the true 2D bones):

  ======================  ==========================  ===============================  ===========================
  generator               MSE: true pose / rest pose  from truth + 0.3 rad noise       from the rest pose
  ======================  ==========================  ===============================  ===========================
  rgb, skips (was used)   0.0039 / 0.0061             MSE 0.0053->0.0038, 18.6->24.0   0.0061->0.0042, 44.6->45.8
  rgb, no skips           0.0061 / 0.0087             0.0077->0.0060, 18.6->24.5       0.0087->0.0064, 44.6->47.2
  parts, skips (chosen)   0.0036 / 0.0060             0.0050->0.0034, 18.6->20.4       0.0060->0.0037, 44.6->46.4
  parts, no skips         0.0059 / 0.0085             0.0074->0.0057, 18.6->21.6       0.0085->0.0062, 44.6->45.2
  ======================  ==========================  ===============================  ===========================

  A true-pose template is informative for every generator (its MSE 30-41% below the rest pose's), per-part maps
  the most (0.0036 vs 0.0039), and dropping the skips costs ~60% more error without making the descent geometric.
  But in every variant the descent lowers the error to the true pose's level or below while the bones turn *away*
  from the truth, from near it and from the rest pose alike: a generator with many free inputs per image is
  satisfied by non-geometric templates (the render acts as a code). Per-part maps turn the bones away the least
  (3.6 degrees over both starts vs 6.6 for the colour render), hence ``condition: parts`` in the configs. With the
  previous run's trained generator (colour render, 1.7k steps) the template posed to the truth reconstructs
  *worse* than the encoder's own template (MSE 0.0053 vs 0.0044; inside the person's mask 0.0257 vs 0.0268).
  Not tried: the 2D predecessor's perceptual loss (L1 on VGG-19 features) needs ImageNet weights this offline
  machine does not have.

  The 19-minute CPU run with ``condition: parts`` (1,398 steps; ``docs/reproductions/neural_rendering.md``) confirms
  it: reconstruction MSE 0.0086 -> 0.0037 (first/last logged batch), template on the silhouette, limbs in one pose
  for every image (``val_templates.png``) while the reconstruction shows the person's raised arms that the template
  does not (``train_reconstructions.png``); test P-MPJPE 146.0 mm (anchors) and 148.6 (linear probe), left/right
  confusion 50.2%, limbs' depth sign wrong 54.6% (the colour-render run: 133.5, 146.0, 51.5%, 49.1%).
* **Departures (options, measured): the layered composite and the global appearance.** ``composite: layered``
  makes the generator's output a foreground layer F laid by the render's opacity A over a background layer B, an
  encoder-decoder of x_dt alone (template-blind): recon = A F + (1 - A) B, so no limb can be painted where the
  template has none (the failure of the runs above); ``composite: x_dt`` takes B = x_dt. The paper's conclusion names
  separate fore- and background (its ref. 33) as the way forward. With x_dt concatenated (``appearance: image``),
  F copies the background wherever the template over-covers, and 400 steps of the CPU run grew the template over
  the whole crop (arms swept up over the head, val P-MPJPE 177.9 mm at step 400, run stopped;
  ``docs/neural_rendering_layered_image_train_step400.png``). ``appearance: global`` gives F x_dt only as a pooled
  vector (``appearance_dim`` numbers), so covering background costs error as missing the person does. In the
  probes of the table above (40 descent steps, 2D bone-angle error in degrees, "limbs" = the 8 limb bones) neither
  makes the descent geometric: from truth + noise the limbs go 14.8 -> 16.8 (layered) / 17.6 (global) with Adam
  (base 15.1) and 14.8 -> 20.5 (global) with fixed-step gradient descent (base 19.8); from the rest pose 38.3 ->
  36.8 / 37.4 with Adam (base 38.7), 38.3 -> 45.5 (global) by gradient descent (base 47.1). The MSE along the
  straight path from the truth to either start rises monotonically (base 0.00355, 0.00382, 0.00430, 0.00470,
  0.00500 to the noisy start): the truth is a minimum along the geometric path, but the gradient is dominated by
  non-geometric directions of the fixed generator. The 19-minute CPU run with ``composite: layered`` and
  ``appearance: global`` (the configs; 1,307 steps, best checkpoint step 800): reconstruction MSE 0.0098 -> 0.0054
  (first/last logged batch), test P-MPJPE 137.7 mm [132.1, 143.7] (anchors) and 147.5 [143.1, 151.8] (linear
  probe), left/right confusion 49.4%, limb depth sign wrong 47.7%; the template still takes one pose for every
  image (predicted poses 43 mm from their mean over 128 test frames, true poses 220 mm; the background layer learns
  to copy x_dt, person included, and the reconstruction leans on it).
* **Departure (option, measured): the video's background under the template.** ``composite: background`` lays F
  by the render's opacity over the batch's ``background``, the video's background estimate of
  ``datamodules.SyntheticHumanPairs``: recon = A F + (1 - A) B_video, so outside the template the reconstruction
  *is* the background and only a template on the person's silhouette can explain the person (the separate
  fore-/background of the paper's conclusion, its ref. 33). ``background_source: plate`` (the empty room) is
  privileged; the record's input column says which background training read, e.g. ``image rgb64x64 (trained on
  pairs, background plate)``; ``median`` (the temporal median of 5 frames) is not, but these 50-frame videos are
  mostly in place and it keeps ~half of the person. A data module without ``background`` fails at setup (the batch
  contract) and in :meth:`NeuralRendering.reconstruct` naming the option. ``recon_scales`` (n > 1) adds the errors
  of 2x2 ... 2^(n-1) average-pooled images, weighted by their area, to widen the basin of thin limbs (measured
  below, not in the configs). Measured (CPU size, plate, ``appearance: global``, per-part maps): descent probe as
  above (generator trained 150 steps on true-pose templates over the plate, then 40 descent steps on the 16 part
  rotations of 16 held-out frames from many videos; limbs in degrees): the true pose reconstructs 28% better than
  the rest pose (MSE 0.00501 / 0.00697), but descending the error still turns the limbs away, from truth + noise
  15.7 -> 19.4 (Adam) / 19.3 (fixed-step descent), from the rest pose 31.5 -> 33.0 / 33.3 (on 16 frames of a few
  videos only, from truth + noise they came closer, 15.7 -> 11.4 / 13.4, and from a rest pose already 9.8 degrees
  off they left, to 13.4 / 16.0). Training: two 7-minute runs with the regulariser decayed over 200 steps
  (383 and 448 steps; pixel loss / ``recon_scales: 3``) and one 19-minute run with the configs' schedule (1,351
  steps; best validation checkpoint step 200, val P-MPJPE 129.3 at step 200 rising to 150.0 at step 1350 as the
  rotations leave the rest pose after the regulariser is gone; reconstruction MSE 0.0077 -> 0.0056, first/last
  logged batch; test P-MPJPE 131.7 mm [125.4, 138.4] (anchors, the step-200 checkpoint) and 148.7 [144.9, 152.7]
  (linear probe), MPJPE 273.5 / 201.4, left/right confusion 50.7% / 27.0%, limb depth sign wrong 48.6% / 33.5%).
  **The template still does not follow the limbs:** over 128 evenly spaced validation frames the predicted poses
  lie 65.7 mm from their mean (last checkpoint; step 200: 11.6; true poses 214.3), each frame's own prediction
  scores worse than the frames' mean prediction (P-MPJPE 152.3 vs 145.5 mm; step 200: 125.3 vs 125.2) and the
  projected limbs are 40.5 degrees off the truth vs 38.1 for their mean direction. The template sits on the silhouette
  as a translucent blob (F, which sees x_dt only as a pooled vector, paints a dark smooth figure) with the legs in
  one pose, and the anchors' better P-MPJPE than the layered run (137.7) is the rest pose of an earlier checkpoint.
* **Perceptual loss (option).** ``perceptual_weights`` replaces the pixel l2 by the 2D predecessor's L1 on VGG-19
  features (:mod:`methods.nn.perceptual`): a local torchvision state-dict file (a missing file raises an error
  naming the option; ImageNet weights cannot be downloaded offline), or ``random`` (frozen random features, a
  partial substitute). Probed with random features (100 generator steps, 30 Adam descent steps): the true pose
  scores only 11% below the rest pose (pixel l2: 41%), and the descent turns the limbs away (14.8 -> 15.9
  degrees from near the truth, 38.3 -> 38.8 from the rest pose); not used in the configs.
* **Pair order.** Frame 0 of a pair is x_t (encoded and reconstructed), frame 1 is x_dt.
* **Evaluation (protocol 1, by construction).** The template's 17 anchors *are* the joints: joint j is the
  transformed end point of the part of the bone ending at j, the pelvis the core's anchor t. The pose is
  root-centred, scaled to unit mean root distance and multiplied by the mean training-pose size (scale-free
  method, like SVMAC).
* **Evaluation (protocol 2, linear probe; Jakab et al. 2020).** A ridge regression (``probe_ridge`` times
  the mean feature variance) from the 33 template points (17 anchors + 16 part centres, root-centred, m)
  to the root-relative ground-truth joints (mm), fitted on ``probe_samples`` training frames (single views,
  fixed evenly spaced indices) with their 3D labels, refitted before every validation and test; recorded as
  the separate row ``neuralrendering-linear`` (it uses 3D labels: not self-supervised).
* **Failure modes** (Sec. 5): ``lr_confusion`` and ``limb_depth_sign`` of :mod:`metrics.failure_modes`
  are added to every estimator's metrics.
* **Figures.** At every validation ``val_templates.png`` (inputs; the rendered template over them; the
  render alone) and ``train_reconstructions.png`` (x_t, template over x_t, x_dt, reconstruction of a recent
  training batch) are written to the log dir (and logged to image loggers).
"""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from kornia.geometry.conversions import axis_angle_to_rotation_matrix
from torch import nn

from datamodules.cameras import project
from datamodules.skeleton import H36M_17
from metrics.failure_modes import LeftRightConfusion, LimbDepthSign

from .base import PoseEstimator
from .geometry import mean_root_distance, root_centre
from .nn.backbones import check_image, make_backbone
from .nn.encdec import EncoderDecoder
from .nn.gaussian_render import render_gaussians, whitening
from .nn.perceptual import PerceptualLoss

#: (17, 3) template joints in metres, H36M_17 order, camera-like axes (x right = the person's left, y down,
#: z away from the camera): standing, facing the camera, arms hanging down; every bone along an axis.
TEMPLATE_JOINTS = torch.tensor([
    [0.0, 0.0, 0.0],                                                   # Hip
    [-0.12, 0.0, 0.0], [-0.12, 0.44, 0.0], [-0.12, 0.88, 0.0],         # RHip, RKnee, RFoot
    [0.12, 0.0, 0.0], [0.12, 0.44, 0.0], [0.12, 0.88, 0.0],            # LHip, LKnee, LFoot
    [0.0, -0.23, 0.0], [0.0, -0.48, 0.0], [0.0, -0.60, 0.0],           # Spine, Thorax, Neck/Nose
    [0.0, -0.74, 0.0],                                                 # Head
    [0.19, -0.48, 0.0], [0.19, -0.20, 0.0], [0.19, 0.05, 0.0],         # LShoulder, LElbow, LWrist
    [-0.19, -0.48, 0.0], [-0.19, -0.20, 0.0], [-0.19, 0.05, 0.0],      # RShoulder, RElbow, RWrist
])  # fmt: skip
#: height of the template (top of the head to the ankles plus the head's and feet's extent), m
TEMPLATE_HEIGHT = 1.75
#: (17, 3) standard deviations (m, template axes) of the Gaussian of the bone *ending* at each joint (row 0 unused).
TEMPLATE_SIGMA = torch.tensor([
    [0.0, 0.0, 0.0],
    [0.06, 0.07, 0.08], [0.065, 0.13, 0.065], [0.05, 0.13, 0.05],      # right hip, thigh, shin
    [0.06, 0.07, 0.08], [0.065, 0.13, 0.065], [0.05, 0.13, 0.05],      # left hip, thigh, shin
    [0.12, 0.08, 0.09], [0.13, 0.09, 0.09], [0.045, 0.045, 0.045],     # abdomen, chest, neck
    [0.085, 0.095, 0.09],                                              # head
    [0.07, 0.05, 0.06], [0.045, 0.1, 0.045], [0.04, 0.09, 0.04],       # left clavicle, upper arm, forearm
    [0.07, 0.05, 0.06], [0.045, 0.1, 0.045], [0.04, 0.09, 0.04],       # right clavicle, upper arm, forearm
])  # fmt: skip
#: what the generator's output is laid over by the render's opacity (null: nothing, the paper; module docstring)
COMPOSITES = ("layered", "x_dt", "background")
#: the core part (the bone ending at Spine: the abdomen), transformed first
CORE = H36M_17.index("Spine")


def part_tree(skeleton=H36M_17) -> tuple[list[int], list[int], list[int]]:
    """Parts (one per non-root joint j: the bone ending at j) in chain order, the parent *joint* whose part is
    each part's parent (-1 for the core) and each part's anchor joint (the joint shared with its parent).

    The core is the abdomen; the other bones leaving the root (the hips) hang off the core at the root joint.
    """
    root = skeleton.root
    order = [CORE] + [j for j in range(skeleton.num_joints) if j not in (root, CORE)]
    parent_part, anchor = [], []
    for j in order:
        p = skeleton.parents[j]
        parent_part.append(-1 if j == CORE else (CORE if p == root else p))
        anchor.append(p)
    return order, parent_part, anchor


class GaussianTemplate(nn.Module):
    """The shape template T (Sec. 3.1) and its kinematic chain (Sec. 3.3).

    Parameters: ``colour_logit`` (K, 3), ``occupancy_logit`` (K,), and ``log_sigma`` (K, 3) (a parameter
    with ``learn_shape``, a buffer otherwise). Parts are indexed by joint - 1 (the bone ending at joint j).
    """

    def __init__(self, learn_shape: bool = False, occupancy: float = 0.88):
        super().__init__()
        sk = H36M_17
        self.num_parts = sk.num_joints - 1
        self.register_buffer("joints", TEMPLATE_JOINTS.clone(), persistent=False)
        parents = torch.tensor(sk.parents[1:])
        self.register_buffer("centres", (TEMPLATE_JOINTS[1:] + TEMPLATE_JOINTS[parents]) / 2, persistent=False)
        log_sigma = TEMPLATE_SIGMA[1:].log()
        if learn_shape:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)
        hues = []
        for name in sk.joints[1:]:  # left warm, right cool, centre neutral-ish
            hues.append((0.02, 0.9) if name.startswith("L") else (0.6, 0.9) if name.startswith("R") else (0.15, 0.3))
        colours = torch.tensor([colorsys.hsv_to_rgb(h, s, 0.9) for h, s in hues], dtype=torch.float32)
        colours = colours * 0.8 + 0.1 + 0.05 * torch.linspace(-1, 1, self.num_parts).unsqueeze(-1)
        self.colour_logit = nn.Parameter(torch.logit(colours.clamp(0.02, 0.98)))
        self.occupancy_logit = nn.Parameter(torch.full((self.num_parts,), math.log(occupancy / (1 - occupancy))))
        self.order, self.parent_part, self.anchor = part_tree(sk)

    @property
    def colours(self) -> torch.Tensor:
        return torch.sigmoid(self.colour_logit)

    @property
    def occupancy(self) -> torch.Tensor:
        return torch.sigmoid(self.occupancy_logit)

    def pose(self, rotvec: torch.Tensor, scale: torch.Tensor, translation: torch.Tensor) -> dict[str, torch.Tensor]:
        """Transform the template: (B, K, 3) axis-angle, (B, K, 3) per-axis scales, (B, 3) root (camera frame, m).

        Returns ``R`` (B, K, 3, 3), ``H`` = R diag(s), ``tau`` (B, K, 3) (part k maps x -> H_k x + tau_k),
        ``joints`` (B, 17, 3) (the anchors: joint j = part j-1's end point, the root = ``translation``),
        ``centres`` (B, K, 3) (the Gaussians' means) and ``whiten`` (B, K, 3, 3).
        """
        B, n = rotvec.shape[:2]
        R = axis_angle_to_rotation_matrix(rotvec.reshape(-1, 3)).reshape(B, n, 3, 3)
        H = R * scale.unsqueeze(-2)  # R diag(s): column i scaled by s_i
        X = self.joints.to(H.dtype)
        tau: list[torch.Tensor | None] = [None] * n
        for j, pj, aj in zip(self.order, self.parent_part, self.anchor):
            k = j - 1
            a = X[aj]
            if pj < 0:  # the core: its anchor (the root, at the template origin) goes to t
                tau[k] = translation - H[:, k] @ a
            else:  # Fig. 2: re-attach at the shared anchor, t = a~(parent) - a~(child)
                tau[k] = H[:, pj - 1] @ a + tau[pj - 1] - H[:, k] @ a
        tau_t = torch.stack(tau, dim=1)  # (B, K, 3)
        joints = torch.einsum("bkij,kj->bki", H, X[1:]) + tau_t
        joints = torch.cat([translation.unsqueeze(1), joints], dim=1)
        centres = torch.einsum("bkij,kj->bki", H, self.centres.to(H.dtype)) + tau_t
        whiten = whitening(R, scale, self.log_sigma.exp())
        return {"R": R, "H": H, "tau": tau_t, "joints": joints, "centres": centres, "whiten": whiten}


class NeuralRendering(PoseEstimator):
    """Schmidtke et al.'s self-supervised 3D pose by neural rendering (see the module docstring).

    Args:
        backbone / pretrained / frozen_bn / channels_last: the encoder phi (``make_backbone``; paper: resnet34).
        image_size: the data's image size (px, square).
        head_width: hidden width of the encoder's linear layers.
        max_scale: per-axis part scales lie in [1/max_scale, max_scale].
        learn_shape: learn the template's Gaussian sizes too (colours and occupancies are always learned).
        render_size: resolution of the template render (px, square; default ``image_size``).
        num_samples: samples per ray.
        chunk_rays: rays per ray-marching chunk (memory bound).
        gen_base / gen_depth / gen_max_channels: the generator psi's width, number of down/up stages and cap.
        gen_skips: U-Net skip connections in the generator (False: a plain bottlenecked encoder-decoder; see the
            module docstring).
        condition: what the generator is conditioned on: ``rgb`` (the colour render, the paper) or ``parts`` (one
            channel per part, as the 2D predecessor's per-part template images; module docstring).
        spade_hidden: hidden channels of the generator's SPADE layers.
        composite: null (the paper: the generator's output is the reconstruction), ``layered`` (its output is a
            foreground laid by the render's opacity over a background layer generated from x_dt alone), ``x_dt``
            (over x_dt itself) or ``background`` (over the batch's ``background``, the video's background estimate
            of ``datamodules.SyntheticHumanPairs``); a departure, see the module docstring.
        appearance: how the generator sees x_dt: ``image`` (concatenated, the paper) or ``global`` (a vector pooled
            from x_dt by three strided convs, ``appearance_dim`` numbers, broadcast over the image; a departure, see
            the module docstring).
        perceptual_weights: L_recon as the 2D predecessor's L1 on VGG-19 features (``methods.nn.perceptual``): a
            torchvision VGG-19 state dict file, or ``random`` (random frozen features, a partial substitute);
            null: the paper's pixel l2.
        perceptual_layers: how many modules of VGG-19's ``features`` (14: up to relu3_2, as the predecessor).
        render_recompute: recompute each ray chunk in the backward pass (bounded memory; None: whenever
            gradients flow); False stores the intermediates (faster, memory grows with the image).
        colour_mode: how the parts' colour fields combine (``methods.nn.gaussian_render``): ``normalised``
            (occupancy-weighted mean colour, default) or ``sum`` (the literal sum clipped at 1 of Eq. 6).
        depth_range: bound the root depth to z_ref * exp(+-depth_range) (None: unbounded, as the paper). The CPU
            run collapsed by sending the template far away, where it renders as a dot the generator can ignore;
            a bound (e.g. 0.7) removes that exit (not yet measured).
        field / grid_size: ``analytic`` (exact Gaussians at the samples) or ``grid`` (rasterised on a grid_size^3 grid,
            read with trilinear grid_sample as the paper does through PyTorch3D; ``methods.nn.gaussian_render``).
        parts_per_ray: evaluate only the parts each ray passes closest to (None: all 16, exact; a speed knob,
            see ``methods.nn.gaussian_render.render_gaussians``).
        recon_reduction: ``sum`` (per image, over pixels and channels; batch mean) or ``mean`` (over everything) of
            the squared pixel error (see the module docstring: the balance against Eq. 7-8's other terms).
        recon_scales: 1 (the paper): the pixel error alone; n > 1 adds the errors of the 2x2, ..., 2^(n-1) average-pooled
            images (each weighted by its pooling area), so a limb a few pixels off still meets its image (a departure, see
            the module docstring).
        boundary_weight: weight of L_b (Eq. 7-8: 1).
        reg_weight / reg_decay_steps: the rotation regulariser's initial weight and its linear decay to 0.
        probe_samples / probe_ridge: the linear-probe protocol (0 samples: off).
        lr / weight_decay: Adam settings (the paper: Adam, no rate given).
        **kwargs: see :class:`methods.base.PoseEstimator`.
    """

    requires = ("image", "K")
    input_keys = ("image",)

    def __init__(self, backbone: str = "resnet34", pretrained: str | None = None, frozen_bn: bool = False,
                 channels_last: bool = False, image_size: int = 128, head_width: int = 1024, max_scale: float = 1.5,
                 learn_shape: bool = False, render_size: int | None = None, num_samples: int = 64,
                 chunk_rays: int = 1024, gen_base: int = 32, gen_depth: int = 4, gen_max_channels: int = 256, spade_hidden: int = 64,
                 render_recompute: bool | None = None, colour_mode: str = "normalised",
                 parts_per_ray: int | None = None, depth_range: float | None = None, field: str = "analytic",
                 grid_size: int = 64,
                 condition: str = "rgb", gen_skips: bool = True, composite: str | None = None,
                 appearance: str = "image", appearance_dim: int = 16,
                 perceptual_weights: str | None = None, perceptual_layers: int = 14,
                 recon_reduction: str = "sum", recon_scales: int = 1, boundary_weight: float = 1.0, reg_weight: float = 1.0, reg_decay_steps: int = 500,
                 probe_samples: int = 1024, probe_ridge: float = 1e-3, lr: float = 2e-4, weight_decay: float = 0.0,
                 **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if max_scale < 1.0 or num_samples < 1 or reg_decay_steps < 0 or probe_samples < 0:
            raise ValueError("NeuralRendering options need max_scale >= 1, num_samples >= 1, reg_decay_steps >= 0 "
                             f"and probe_samples >= 0, got {max_scale}, {num_samples}, {reg_decay_steps}, "
                             f"{probe_samples}")  # fmt: skip
        if condition not in ("rgb", "parts"):
            raise ValueError(f"NeuralRendering: condition must be 'rgb' or 'parts', got {condition!r}")
        if composite is not None and composite not in COMPOSITES:
            raise ValueError(f"NeuralRendering: composite must be null or one of {COMPOSITES}, got {composite!r}")
        if composite == "background":  # the data module's background estimate (SyntheticHumanPairs)
            self.requires = (*type(self).requires, "background")
        if appearance not in ("image", "global"):
            raise ValueError(f"NeuralRendering: appearance must be 'image' or 'global', got {appearance!r}")
        if recon_scales < 1 or image_size % 2 ** (recon_scales - 1):
            raise ValueError(f"NeuralRendering: recon_scales must be >= 1 with image_size {image_size} divisible by "
                             f"2**(recon_scales - 1), got {recon_scales}")  # fmt: skip
        if recon_reduction not in ("sum", "mean"):
            raise ValueError(f"NeuralRendering: recon_reduction must be 'sum' or 'mean', got {recon_reduction!r}")
        if image_size % 2**gen_depth:
            raise ValueError(f"NeuralRendering: image_size {image_size} must be divisible by 2**gen_depth = "
                             f"{2**gen_depth}; change model.init_args.gen_depth or image_size")  # fmt: skip
        self.render_size = render_size or image_size
        self.template = GaussianTemplate(learn_shape=learn_shape)
        K = self.template.num_parts
        self.backbone = make_backbone(backbone, pretrained, frozen_bn, channels_last, return_strides=(32,))
        self.head = nn.Sequential(
            nn.Linear(self.backbone.out_channels, head_width), nn.LeakyReLU(0.2), nn.Linear(head_width, 6 * K + 3)
        )
        with torch.no_grad():  # start at the template's pose, facing the camera, centred
            self.head[-1].weight.mul_(1e-2)
            self.head[-1].bias.zero_()
        cond = (3 if condition == "rgb" else K) + 1  # the render's features and its opacity
        # appearance global: x_dt reaches the generator only as a pooled vector (it cannot copy x_dt's pixels)
        self.appearance = (nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(16, 32, 3, 2, 1),
                                         nn.LeakyReLU(0.2), nn.Conv2d(32, appearance_dim, 3, 2, 1),
                                         nn.AdaptiveAvgPool2d(1))
                           if appearance == "global" else None)  # fmt: skip
        app = 3 if appearance == "image" else appearance_dim
        self.generator = EncoderDecoder(cond + app, 3, base=gen_base, depth=gen_depth, cond_channels=cond,
                                        max_channels=gen_max_channels, spade_hidden=spade_hidden,
                                        spade_mode="bilinear", skips=gen_skips)  # fmt: skip
        # the background layer of composite: layered reads x_dt alone: it cannot know where the template is
        self.background = (EncoderDecoder(3, 3, base=gen_base, depth=gen_depth, max_channels=gen_max_channels)
                           if composite == "layered" else None)  # fmt: skip
        if channels_last:
            self.generator = self.generator.to(memory_format=torch.channels_last)
            if self.background is not None:
                self.background = self.background.to(memory_format=torch.channels_last)
        self.perceptual = (PerceptualLoss(perceptual_weights, perceptual_layers, "model.init_args.perceptual_weights")
                           if perceptual_weights else None)  # fmt: skip
        self.probe_name = f"{self.method_name}-linear"
        self._probe: dict[str, torch.Tensor] | None = None
        self._probe_data: dict[str, torch.Tensor] | None = None
        self._figure_batches: dict[str, dict[str, torch.Tensor]] = {}

    # -- the encoder phi and the template (Sec. 3.2-3.3) ---------------------------------------------------
    def encode(self, image: torch.Tensor, K: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) images and their (B, 3, 3) intrinsics -> the posed template (:meth:`GaussianTemplate.pose`)
        plus ``rotvec``, ``scale``, ``translation``."""
        hp = self.hparams
        check_image(image, (hp.image_size, hp.image_size), type(self).__name__)
        n = self.template.num_parts
        out = self.head(self.backbone(image)[32].mean(dim=(-2, -1)).float()).float()
        rotvec = out[:, : 3 * n].view(-1, n, 3)
        scale = torch.exp(math.log(hp.max_scale) * torch.tanh(out[:, 3 * n : 6 * n])).view(-1, n, 3)
        H, W = image.shape[-2:]
        Kf = K.float()
        uv = torch.stack([W / 2 * (1 + out[:, -3]), H / 2 * (1 + out[:, -2])], dim=-1)
        z_ref = Kf[:, 1, 1] * TEMPLATE_HEIGHT / (H / 1.2)
        log_depth = out[:, -1] if hp.depth_range is None else hp.depth_range * torch.tanh(out[:, -1])
        depth = z_ref * torch.exp(log_depth)
        ray = torch.linalg.solve(Kf, torch.cat([uv, torch.ones_like(uv[:, :1])], dim=-1).unsqueeze(-1)).squeeze(-1)
        translation = ray * depth.unsqueeze(-1)
        posed = self.template.pose(rotvec, scale, translation)
        return {**posed, "rotvec": rotvec, "scale": scale, "translation": translation}

    def render(self, posed: dict[str, torch.Tensor], K: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """(B, C + 1, H, W) rendered template (features, opacity) at the image's size (Eq. 6): C = 3 colours, or one
        channel per part with ``condition: parts`` (each part's colour c_k the k-th unit vector)."""
        root = posed["translation"]
        radius = (posed["joints"] - root.unsqueeze(1)).norm(dim=-1).amax(-1).detach() + 0.3
        near = (root[:, 2].detach() - radius).clamp(min=0.05)
        far = root[:, 2].detach() + radius
        s = self.render_size
        feat, alpha = render_gaussians(posed["centres"], posed["whiten"], self.template.occupancy,
                                       self.part_colours(), K, (s, s), near, far, self.hparams.num_samples,
                                       image_size=image_size, chunk_rays=self.hparams.chunk_rays,
                                       recompute=self.hparams.render_recompute,
                                       colour_mode=self.hparams.colour_mode,
                                       parts_per_ray=self.hparams.parts_per_ray, field=self.hparams.field,
                                       grid_size=self.hparams.grid_size)  # fmt: skip
        out = torch.cat([feat, alpha], dim=1)
        if (s, s) != tuple(image_size):
            out = F.interpolate(out, size=image_size, mode="bilinear", align_corners=False)
        return out

    def part_colours(self) -> torch.Tensor:
        """(K, C) the colours c_k the renderer composites: the template's RGB, or one-hot per part (``parts``)."""
        if self.hparams.condition == "parts":
            return torch.eye(self.template.num_parts, device=self.template.colour_logit.device)
        return self.template.colours

    def render_rgb(self, render: torch.Tensor) -> torch.Tensor:
        """(B, 4, H, W) colour + opacity of a render, for figures (per-part maps coloured by the template colours)."""
        if self.hparams.condition == "rgb":
            return render
        rgb = torch.einsum("bkhw,kc->bchw", render[:, :-1].float(), self.template.colours.float())
        return torch.cat([rgb, render[:, -1:].float()], dim=1)

    def forward(self, image: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """(B, 17, 3) camera-frame template joints (m)."""
        return self.encode(image, K)["joints"]

    # -- losses (Eq. 7-8) ----------------------------------------------------------------------------------
    def reconstruct(
        self, rendered: torch.Tensor, x_dt: torch.Tensor, background: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """psi: the reconstruction of x_t from the render and x_dt (``recon``); with ``composite`` the generator's
        output is a foreground layer (``foreground``) laid by the render's opacity A over a background layer
        (``background``): recon = A F + (1 - A) B, B = the template-blind background net of x_dt (``layered``),
        x_dt itself (``x_dt``) or the data's background estimate ``background`` (B, 3, H, W) (``background``)."""
        app = x_dt if self.appearance is None else self.appearance(x_dt).expand(-1, -1, *x_dt.shape[-2:])
        out = torch.sigmoid(self.generator(torch.cat([rendered.to(x_dt.dtype), app], dim=1), rendered))
        composite = self.hparams.composite
        if composite is None:
            return {"recon": out}
        if composite == "background":
            if background is None or background.shape != x_dt.shape:
                raise ValueError("NeuralRendering with model.init_args.composite: background needs the batch key "
                                 f"'background' {tuple(x_dt.shape)} (the video's background estimate), got "
                                 f"{None if background is None else tuple(background.shape)}: use the data module "
                                 "datamodules.SyntheticHumanPairs (background_source: median or plate)")  # fmt: skip
            bg = background.to(out.dtype)
        else:
            bg = x_dt if self.background is None else torch.sigmoid(self.background(x_dt))
        alpha = rendered[:, -1:].to(out.dtype).clamp(0, 1)
        return {"recon": alpha * out + (1 - alpha) * bg, "foreground": out, "background": bg}

    def reconstruction_loss(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """L_recon: squared pixel error, summed per image and averaged over the batch (or a plain mean; see
        ``recon_reduction``); with ``perceptual_weights`` the L1 distance of VGG-19 features instead (the 2D
        predecessor's loss), reduced the same way."""
        if self.perceptual is not None:
            return self.perceptual(recon, target, self.hparams.recon_reduction)
        diff, total = recon.float() - target.float(), 0.0
        for level in range(self.hparams.recon_scales):  # the error of 2^level x 2^level means, weighted by their area
            se = (F.avg_pool2d(diff, 2**level) if level else diff).square() * 4**level
            total = total + (se.flatten(1).sum(1).mean() if self.hparams.recon_reduction == "sum" else se.mean())
        return total

    @staticmethod
    def boundary_loss(joints: torch.Tensor, K: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Eq. 7: sum over anchors and axes of |a| where |a| > 1, a the projection in (-1, 1) crop coordinates;
        batch mean."""
        H, W = image_size
        uv = project(joints, K.float())
        a = 2 * uv / torch.tensor([W, H], dtype=uv.dtype, device=uv.device) - 1
        return torch.where(a.abs() > 1, a.abs(), torch.zeros_like(a)).sum(dim=(-1, -2)).mean()

    def reg_alpha(self, step: int) -> float:
        """alpha of Eq. 8: linear decay from reg_weight to 0 over reg_decay_steps (see the module docstring)."""
        hp = self.hparams
        return hp.reg_weight * max(0.0, 1.0 - step / hp.reg_decay_steps) if hp.reg_decay_steps else 0.0

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        image = batch["image"]
        if image.dim() != 5 or image.shape[1] < 2:
            raise ValueError(f"NeuralRendering trains on frame pairs (B, 2, 3, H, W) of one static-camera video, got "
                             f"image {tuple(image.shape)}: set data.init_args.mode: pair")  # fmt: skip
        x_t, x_dt, K = image[:, 0], image[:, 1], batch["K"][:, 0]
        size = tuple(x_t.shape[-2:])
        posed = self.encode(x_t, K)
        rendered = self.render(posed, K, size)
        layers = self.reconstruct(rendered, x_dt, batch.get("background"))
        recon = layers["recon"]
        loss_recon = self.reconstruction_loss(recon, x_t)
        loss_b = self.boundary_loss(posed["joints"], K, size)
        r_norm = (posed["rotvec"].square().sum(-1) + 1e-8).sqrt().sum(-1).mean()
        loss = loss_recon + self.hparams.boundary_weight * loss_b + self.reg_alpha(self.global_step) * r_norm
        self.stop_if_not_finite({"train/loss": loss, "train/loss_recon": loss_recon, "train/loss_boundary": loss_b})
        mse = F.mse_loss(recon.detach().float(), x_t.float())  # comparable across reductions and image sizes
        self.log_dict({"train/loss": loss, "train/loss_recon": loss_recon, "train/recon_mse": mse,
                       "train/loss_boundary": loss_b,
                       "train/rotation_norm": r_norm})  # fmt: skip
        if batch_idx % 50 == 0:  # kept on the device (no host sync) for the figure of the next validation
            n = min(4, x_t.shape[0])
            self._figure_batches["train"] = {"x_t": x_t[:n].detach(), "x_dt": x_dt[:n].detach(),
                                             "render": self.render_rgb(rendered[:n].detach()),
                                             "recon": recon[:n].detach()}  # fmt: skip
            if "background" in layers:
                self._figure_batches["train"]["background"] = layers["background"][:n].detach()
        return loss

    # -- evaluation ---------------------------------------------------------------------------------------
    def predict_pose(self, batch: dict) -> torch.Tensor:
        """Protocol 1: the template's anchors are the 17 joints (module docstring); unit scale x training size."""
        joints = root_centre(self(batch["image"], batch["K"]).float(), self.skeleton.root)
        return joints / mean_root_distance(joints, self.skeleton.root) * self.pose_scale_mm

    def template_points(self, image: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """(B, 33 * 3) features of the linear probe: root-centred anchors and part centres (m)."""
        posed = self.encode(image, K)
        root = posed["joints"][:, self.skeleton.root : self.skeleton.root + 1]
        return torch.cat([posed["joints"] - root, posed["centres"] - root], dim=1).flatten(1).float()

    def make_metrics(self, groups: int) -> nn.ModuleDict:
        metrics = super().make_metrics(groups)
        for m in (
            LeftRightConfusion(self.skeleton, num_groups=groups),
            LimbDepthSign(self.skeleton, num_groups=groups),
        ):
            metrics[m.name] = m
        return metrics

    def prepare_evaluation(self, dm) -> None:
        super().prepare_evaluation(dm)
        self._datamodule = dm
        if self.hparams.probe_samples:
            self.evaluators[self.probe_name] = self.make_metrics(max(1, len(self.action_names))).to(self.device)

    def _probe_set(self) -> dict[str, torch.Tensor]:
        """Fixed, evenly spaced single-view training frames with their 3D labels (rendered once, kept as uint8)."""
        if self._probe_data is None:
            ds = self._datamodule.dataset("train", "single")
            n = min(self.hparams.probe_samples, len(ds))
            idx = torch.linspace(0, len(ds) - 1, n).round().long().tolist()
            step = 64
            parts = [ds.__getitems__(idx[i : i + step]) for i in range(0, n, step)]
            self._probe_data = {
                "image": torch.cat([(p["image"] * 255).round().to(torch.uint8) for p in parts]),
                "K": torch.cat([p["K"] for p in parts]).float(),
                "target": torch.cat([root_centre(p["joints_3d"].float(), self.skeleton.root) for p in parts]),
            }
        return self._probe_data

    @torch.no_grad()
    def fit_probe(self) -> None:
        """Protocol 2: ridge regression from template points to root-relative joints on training frames."""
        data = self._probe_set()
        was_training = self.training
        self.eval()
        feats = []
        for i in range(0, len(data["image"]), 128):
            image = data["image"][i : i + 128].to(self.device).float() / 255
            if self.hparams.channels_last:
                image = image.contiguous(memory_format=torch.channels_last)
            feats.append(self.template_points(image, data["K"][i : i + 128].to(self.device)).double())
        self.train(was_training)
        X = torch.cat(feats)
        Y = data["target"].to(X).flatten(1)
        x_mean, y_mean = X.mean(0), Y.mean(0)
        Xc, Yc = X - x_mean, Y - y_mean
        gram = Xc.T @ Xc
        lam = self.hparams.probe_ridge * gram.diagonal().mean().clamp(min=1e-12)
        W = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=X.dtype, device=X.device), Xc.T @ Yc)
        self._probe = {"W": W.float(), "x_mean": x_mean.float(), "y_mean": y_mean.float()}

    def estimates(self, batch: dict) -> dict[str, torch.Tensor]:
        out = super().estimates(batch)
        if self._probe is not None and self.probe_name in self.evaluators:
            p = self._probe
            X = self.template_points(batch["image"], batch["K"])
            out[self.probe_name] = ((X - p["x_mean"]) @ p["W"] + p["y_mean"]).view(X.shape[0], -1, 3)
        return out

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        if self.hparams.probe_samples and not self.trainer.sanity_checking:
            self.fit_probe()

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        if self.hparams.probe_samples:
            self.fit_probe()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        if batch_idx == 0:
            n = min(6, batch["image"].shape[0])
            image, K = batch["image"][:n], batch["K"][:n]
            render = self.render(self.encode(image, K), K, tuple(image.shape[-2:]))
            self._figure_batches["val"] = {"x_t": image, "render": self.render_rgb(render)}

    def on_validation_epoch_end(self) -> None:
        if self._probe is None:  # nothing fitted (sanity check): no probe numbers this time
            probe = self.evaluators.pop(self.probe_name) if self.probe_name in self.evaluators else None
            super().on_validation_epoch_end()
            if probe is not None:
                self.evaluators[self.probe_name] = probe
        else:
            super().on_validation_epoch_end()
        if not self.trainer.sanity_checking:
            self.plot_templates(step=int(self.global_step))

    # the linear probe is recorded as its own method row: the image is its input, its protocol names the probe
    def result_protocol(self, name: str, key: str, metric) -> dict:
        if name != self.probe_name:
            return super().result_protocol(name, key, metric)
        probe = f"ridge from 33 template points on {self.hparams.probe_samples} train frames"
        return {**metric.protocol, "scale": "n/a", "probe": probe}

    def result_role(self, name: str) -> str:
        return "method" if name == self.probe_name else super().result_role(name)

    def input_description(self, name: str, data_protocol: dict | None = None) -> str:
        """The test image; with ``composite: background`` the method's rows also say that training read the video's
        background estimate and which (``plate``, the empty room, is privileged)."""
        method = name in (self.method_name, self.probe_name)
        text = super().input_description(self.method_name if method else name, data_protocol)
        if method and self.hparams.composite == "background":
            text += f" (trained on pairs, background {self.background_source or 'unknown'})"
        return text

    # -- figures -------------------------------------------------------------------------------------------
    def plot_templates(self, step: int | None = None) -> list[Path]:
        """``val_templates.png`` and ``train_reconstructions.png`` in the log dir (see the module docstring)."""
        if self.trainer is None or not self._figure_batches:
            return []
        log_dir = Path(self.trainer.log_dir or ".")
        if not self.trainer.is_global_zero:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        def over(img, render):  # the render over the image, by its opacity
            return img * (1 - render[:, 3:4].clamp(0, 1)) + render[:, :3]  # the render's colour is premultiplied

        layouts = {
            "val": ("val_templates.png", lambda b: [("input", b["x_t"]), ("template over input", over(b["x_t"], b["render"])),
                                                    ("template", b["render"][:, :3] + (1 - b["render"][:, 3:4]))]),
            "train": ("train_reconstructions.png",
                      lambda b: [("x_t", b["x_t"]), ("template over x_t", over(b["x_t"], b["render"])),
                                 ("x_dt", b["x_dt"]), ("reconstruction", b["recon"])]
                      + ([("background layer", b["background"])] if "background" in b else [])),
        }  # fmt: skip
        paths = []
        for stage, (name, rows_of) in layouts.items():
            if stage not in self._figure_batches:
                continue
            b = {k: v.detach().float().cpu() for k, v in self._figure_batches[stage].items()}
            rows = rows_of(b)
            n = rows[0][1].shape[0]
            fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n, 1.6 * len(rows)), squeeze=False)
            for r, (title, imgs) in enumerate(rows):
                for c in range(n):
                    ax = axes[r][c]
                    ax.imshow(imgs[c].clamp(0, 1).permute(1, 2, 0).numpy())
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if c == 0:
                        ax.set_ylabel(title, fontsize=7)
            fig.suptitle(f"step {step}" if step is not None else "", fontsize=8)
            fig.tight_layout()
            path = log_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=80)
            plt.close(fig)
            paths.append(path)
            for logger in self.loggers:
                if hasattr(logger, "log_image"):
                    logger.log_image(
                        key=f"{stage}/templates", images=[str(path)], **({} if step is None else {"step": step})
                    )
        return paths

    def configure_optimizers(self):
        hp = self.hparams
        return torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
