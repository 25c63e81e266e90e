"""Is neural rendering's image objective lowest at the true pose? A diagnostic, no encoder and no generator.

``python -m benchmark.probe_template [--objective silhouette|mask|colour] [--frames 16] [--steps 150] [--inflate 1]``

The Gaussian template of :mod:`methods.neural_rendering` is posed to the true 3D joints of ``--frames`` frames of
``SyntheticHumanPairs`` (empty-room plate): each part's rotation is the smallest one taking its template bone onto
the true bone, its along-bone scale the length ratio. Then the objective is descended (Adam) on the 16 part
rotations, scales and root held at the truth, from the rest pose and from the truth plus 0.3 rad of noise. It
prints the objective at the truth and along the descent, and the 2D angle between the projected template bones
and the true 2D bones (the 8 limb bones, and all 16).

Objectives: ``silhouette``, the mean squared error of the render's opacity to the soft foreground
min(1, max_c |x - B| / 0.25) (part-guided synthesis's m_sal; no appearance at all); ``mask``, the same to the true
person mask (privileged: it asks whether the template's own shape can tell the pose); ``colour``, the template's
own part colours over the plate, recon = sum_k c_k A_k + (1 - A) B, after fitting the colours, occupancies and
(``--learn-shape``) the Gaussians' shape to true-pose renders of ``--fit-frames`` other frames. ``--inflate k``
starts the Gaussians k times wider and narrows them linearly to their size over the first 2/3 of the descent
(coarse to fine).

If the descent ends below the truth's objective with the bones further from the truth, the objective's minimum is
not the true pose, and no encoder trained on it can be expected to find the pose (docs/reproductions/
neural_rendering.md quotes the figures).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from datamodules.cameras import project
from datamodules.skeleton import H36M_17
from methods.part_guided import saliency

LIMB_BONES = [
    H36M_17.index(n) - 1 for n in ("RKnee", "RFoot", "LKnee", "LFoot", "LElbow", "LWrist", "RElbow", "RWrist")
]
PARENTS = torch.tensor(H36M_17.parents[1:])


def load_frames(count: int, offset: int, image_size: int) -> dict[str, torch.Tensor]:
    """``count`` evenly spaced training pairs' first frames (shifted by ``offset`` items): image, background
    (the plate), K, mask, joints_3d (m, camera frame), joints_2d (px)."""
    from datamodules import SyntheticHumanPairs

    data = SyntheticHumanPairs(mode="pair", image_size=image_size, num_workers=0, background_source="plate")
    ds = data.dataset("train")
    idx = (torch.linspace(0, len(ds) - 1 - offset, count).round().long() + offset).tolist()
    b = ds.__getitems__(idx)
    return {"image": b["image"][:, 0].float(), "background": b["background"].float(), "K": b["K"][:, 0].float(),
            "mask": b["mask"][:, 0].float(), "joints_3d": b["joints_3d"][:, 0].float() / 1000,
            "joints_2d": b["joints_2d"][:, 0].float()}  # fmt: skip


def true_pose(template_joints: torch.Tensor, joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 16, 3) rotation vectors taking each template bone's direction onto the true bone's (the smallest
    rotation) and (B, 16, 3) scales: 1 across the bone, the length ratio along it (clamped to the method's
    [1/1.5, 1.5])."""
    true_bone = joints[:, 1:] - joints[:, PARENTS]
    bone = (template_joints[1:] - template_joints[PARENTS]).expand_as(true_bone)
    u, w = F.normalize(bone, dim=-1), F.normalize(true_bone, dim=-1)
    axis = torch.linalg.cross(u, w, dim=-1)
    angle = torch.atan2(axis.norm(dim=-1), (u * w).sum(-1))
    rotvec = F.normalize(axis, dim=-1) * angle.unsqueeze(-1)
    scale = torch.ones_like(bone)
    along = bone.abs().argmax(-1, keepdim=True)  # every template bone lies along one template axis
    scale.scatter_(-1, along, (true_bone.norm(dim=-1) / bone.norm(dim=-1)).clamp(1 / 1.5, 1.5).unsqueeze(-1))
    return rotvec, scale


def bone_angle_error(joints: torch.Tensor, K: torch.Tensor, joints_2d: torch.Tensor) -> tuple[float, float]:
    """Mean 2D angle (degrees) between the projected bones and the true 2D bones: the 8 limb bones, all 16."""
    uv = project(joints, K)
    pred, true = uv[:, 1:] - uv[:, PARENTS], joints_2d[:, 1:] - joints_2d[:, PARENTS]
    angle = torch.rad2deg(torch.acos(F.cosine_similarity(pred, true, dim=-1).clamp(-1, 1)))
    return angle[:, LIMB_BONES].mean().item(), angle.mean().item()


class Probe:
    """The template posed, rendered and scored on one batch of frames."""

    def __init__(self, objective: str, image_size: int, render_size: int, samples: int, learn_shape: bool):
        from methods.neural_rendering import NeuralRendering

        self.objective = objective
        self.model = NeuralRendering(backbone="resnet18", image_size=image_size, render_size=render_size,
                                     num_samples=samples, condition="parts", learn_shape=learn_shape,
                                     render_recompute=False, parts_per_ray=6, gen_base=8, gen_depth=2,
                                     spade_hidden=8, head_width=32, probe_samples=0, pss_k=())  # fmt: skip
        self.template = self.model.template

    def pose(self, frames: dict, rotvec: torch.Tensor, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        root = frames["joints_3d"][:, 0]
        return {**self.template.pose(rotvec, scale, root), "translation": root}

    def loss(self, frames: dict, posed: dict, inflate: float = 1.0) -> torch.Tensor:
        posed = {**posed, "whiten": posed["whiten"] / inflate}  # every Gaussian `inflate` times wider
        size = tuple(frames["image"].shape[-2:])
        render = self.model.render_rgb(self.model.render(posed, frames["K"], size))
        alpha, x, plate = render[:, 3:].clamp(0, 1), frames["image"], frames["background"]
        if self.objective == "mask":
            return F.mse_loss(alpha, frames["mask"])
        if self.objective == "silhouette":
            return F.mse_loss(alpha, saliency(x, plate, 0.25))
        return F.mse_loss(render[:, :3] + (1 - alpha) * plate, x)

    def fit_appearance(self, frames: dict, steps: int, batch: int = 16) -> None:
        """Colours, occupancies (and the shape with ``learn_shape``) fitted to true-pose renders (Adam, 5e-2)."""
        params = [p for p in self.template.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=5e-2)
        rotvec, scale = true_pose(self.template.joints, frames["joints_3d"])
        gen = torch.Generator().manual_seed(0)
        for _ in range(steps):
            i = torch.randint(len(rotvec), (batch,), generator=gen)
            part = {k: v[i] for k, v in frames.items()}
            loss = self.loss(part, self.pose(part, rotvec[i], scale[i]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        for p in params:
            p.requires_grad_(False)

    def descend(self, frames: dict, start: torch.Tensor, scale: torch.Tensor, steps: int, inflate: float,
                lr: float = 0.03) -> list[tuple[int, float, float, float]]:  # fmt: skip
        """Adam on the rotations from ``start``; (step, objective at true size, limb error, all-bone error) at
        the start, the quarters and the end."""
        rotvec = start.clone().requires_grad_()
        opt = torch.optim.Adam([rotvec], lr=lr)
        marks, rows = {0, steps // 4, steps // 2, 3 * steps // 4, steps}, []
        for step in range(steps + 1):
            posed = self.pose(frames, rotvec, scale)
            if step in marks:
                with torch.no_grad():
                    rows.append((step, self.loss(frames, posed).item(),
                                 *bone_angle_error(posed["joints"], frames["K"], frames["joints_2d"])))  # fmt: skip
            if step == steps:
                break
            k = 1 + (inflate - 1) * max(0.0, 1 - step / max(1, 2 * steps // 3))
            loss = self.loss(frames, posed, k)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return rows


def main(argv: list[str] | None = None) -> dict[str, list]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objective", choices=("silhouette", "mask", "colour"), default="silhouette")
    ap.add_argument("--frames", type=int, default=16, help="held-out frames descended on")
    ap.add_argument("--fit-frames", type=int, default=512, help="frames the colour objective's appearance fits on")
    ap.add_argument("--fit-steps", type=int, default=300)
    ap.add_argument("--learn-shape", action="store_true", help="fit the Gaussians' shape too (colour objective)")
    ap.add_argument("--steps", type=int, default=150, help="descent steps")
    ap.add_argument("--inflate", type=float, default=1.0, help="start the Gaussians this many times wider")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--render-size", type=int, default=32)
    ap.add_argument("--samples", type=int, default=24, help="ray-marching samples per ray")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    probe = Probe(args.objective, args.image_size, args.render_size, args.samples, args.learn_shape)
    frames = load_frames(args.frames, 7, args.image_size)
    if args.objective == "colour":
        probe.fit_appearance(load_frames(args.fit_frames, 0, args.image_size), args.fit_steps)
    rotvec, scale = true_pose(probe.template.joints, frames["joints_3d"])
    with torch.no_grad():
        at_truth = probe.loss(frames, probe.pose(frames, rotvec, scale)).item()
    noise = 0.3 * torch.randn(rotvec.shape, generator=torch.Generator().manual_seed(3))
    starts = {"rest": torch.zeros_like(rotvec), "truth + noise": rotvec + noise}
    runs = {name: probe.descend(frames, start, scale, args.steps, args.inflate) for name, start in starts.items()}
    table = Table(title=f"{args.objective} objective on {args.frames} frames; at the true pose {at_truth:.5f}")
    for col in ("start", "step", "objective", "limbs (deg)", "all bones (deg)"):
        table.add_column(col, justify="left" if col == "start" else "right")
    for name, rows in runs.items():
        for step, loss, limbs, bones in rows:
            table.add_row(name, str(step), f"{loss:.5f}", f"{limbs:.1f}", f"{bones:.1f}")
    Console().print(table)
    return {"at_truth": at_truth, **runs}


if __name__ == "__main__":
    main()
