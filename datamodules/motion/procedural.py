"""Procedural human motion: joint-angle kinematics on the 17-joint skeleton, inside joint limits.

Each (subject, action, sequence) is a clip of world-frame joint positions (Z up, mm). A clip is
made from

* the subject's bone lengths (a template scaled by height, with per-bone variation; left and right
  always equal);
* an action: a periodic pattern of joint angles (mean + amplitude * sin(phase + shift), with
  per-sequence random amplitude, tempo and offsets) plus smooth random motion on every degree of
  freedom, all clamped to human joint limits;
* a root trajectory: heading that turns smoothly, forward speed per action, feet on the ground
  (the lowest joint touches Z = 0) and a flight phase for jumps.

Everything is vectorised over clips and frames; forward kinematics loops over the 17 joints only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..skeleton import H36M_17

# Body frame of the rest pose: x = the person's right, y = forward, z = up (right-handed).
# Each joint's rest offset from its parent: (direction, template length in mm).
_REST = {
    "RHip": ((1, 0, 0), 130), "RKnee": ((0, 0, -1), 450), "RFoot": ((0, 0, -1), 440),
    "LHip": ((-1, 0, 0), 130), "LKnee": ((0, 0, -1), 450), "LFoot": ((0, 0, -1), 440),
    "Spine": ((0, 0, 1), 230), "Thorax": ((0, 0, 1), 250),
    "Neck/Nose": ((0, 0.35, 1), 115), "Head": ((0, -0.2, 1), 115),
    "LShoulder": ((-1, 0, -0.1), 150), "LElbow": ((0, 0, -1), 280), "LWrist": ((0, 0, -1), 250),
    "RShoulder": ((1, 0, -0.1), 150), "RElbow": ((0, 0, -1), 280), "RWrist": ((0, 0, -1), 250),
}  # fmt: skip

#: Degrees of freedom and their limits in degrees (positive = flexion / forward / outward / left turn).
#: ``root_pitch`` tilts the pelvis, and with it the upper body; the legs follow their hip angles.
DOF_LIMITS: dict[str, tuple[float, float]] = {
    "root_pitch": (-10, 45), "root_roll": (-10, 10),
    "spine_flex": (-20, 70), "spine_lat": (-25, 25), "spine_twist": (-40, 40),
    "neck_flex": (-40, 50), "neck_turn": (-70, 70),
    "r_hip_flex": (-20, 120), "r_hip_abd": (-15, 45), "r_hip_rot": (-30, 30), "r_knee": (0, 140),
    "l_hip_flex": (-20, 120), "l_hip_abd": (-15, 45), "l_hip_rot": (-30, 30), "l_knee": (0, 140),
    "r_sh_flex": (-50, 180), "r_sh_abd": (-10, 170), "r_sh_rot": (-60, 60), "r_elbow": (0, 145),
    "l_sh_flex": (-50, 180), "l_sh_abd": (-10, 170), "l_sh_rot": (-60, 60), "l_elbow": (0, 145),
}  # fmt: skip
DOFS = tuple(DOF_LIMITS)


@dataclass(frozen=True)
class Action:
    """A periodic motion pattern.

    ``dofs`` maps a degree of freedom to ``(mean, amplitude, phase shift in cycles)`` in degrees;
    unlisted DOFs stay at their resting mean (0, or the idle pose below) plus noise.
    """

    tempo_hz: tuple[float, float]
    speed_mm_s: tuple[float, float] = (0.0, 0.0)
    jump_mm: float = 0.0
    dofs: dict[str, tuple[float, float, float]] = field(default_factory=dict)


_IDLE = {"r_elbow": (15, 0, 0), "l_elbow": (15, 0, 0), "r_sh_abd": (8, 0, 0), "l_sh_abd": (8, 0, 0), "r_knee": (5, 0, 0), "l_knee": (5, 0, 0)}  # fmt: skip

ACTIONS: dict[str, Action] = {
    "walk": Action((0.8, 1.1), (900, 1500), dofs={
        "r_hip_flex": (10, 25, 0.0), "l_hip_flex": (10, 25, 0.5), "r_knee": (25, 25, 0.2), "l_knee": (25, 25, 0.7),
        "r_sh_flex": (0, 20, 0.5), "l_sh_flex": (0, 20, 0.0), "r_elbow": (25, 10, 0.5), "l_elbow": (25, 10, 0.0),
        "spine_twist": (0, 6, 0.0)}),
    "run": Action((1.3, 1.6), (2500, 3800), dofs={
        "r_hip_flex": (20, 40, 0.0), "l_hip_flex": (20, 40, 0.5), "r_knee": (55, 45, 0.2), "l_knee": (55, 45, 0.7),
        "r_sh_flex": (10, 40, 0.5), "l_sh_flex": (10, 40, 0.0), "r_elbow": (90, 10, 0.5), "l_elbow": (90, 10, 0.0),
        "spine_flex": (12, 3, 0.0), "root_pitch": (8, 2, 0.0), "spine_twist": (0, 10, 0.0)}),
    "jump": Action((0.6, 0.9), jump_mm=250.0, dofs={
        "r_hip_flex": (40, 40, 0.25), "l_hip_flex": (40, 40, 0.25), "r_knee": (60, 60, 0.25), "l_knee": (60, 60, 0.25),
        "root_pitch": (15, 15, 0.25), "r_sh_flex": (70, 80, 0.75), "l_sh_flex": (70, 80, 0.75),
        "r_elbow": (30, 20, 0.0), "l_elbow": (30, 20, 0.0)}),
    "squat": Action((0.25, 0.45), dofs={
        "r_hip_flex": (50, 50, 0.25), "l_hip_flex": (50, 50, 0.25), "r_knee": (60, 60, 0.25), "l_knee": (60, 60, 0.25),
        "root_pitch": (20, 20, 0.25), "r_sh_flex": (45, 45, 0.25), "l_sh_flex": (45, 45, 0.25),
        "r_hip_abd": (12, 5, 0.25), "l_hip_abd": (12, 5, 0.25)}),
    "wave": Action((1.0, 1.8), dofs={
        "r_sh_abd": (130, 15, 0.0), "r_elbow": (60, 35, 0.0), "r_sh_rot": (20, 10, 0.25),
        "neck_turn": (15, 5, 0.0), "spine_lat": (-5, 3, 0.0)}),
    "punch": Action((0.8, 1.4), dofs={
        "r_sh_flex": (65, 25, 0.0), "l_sh_flex": (65, 25, 0.5), "r_elbow": (70, 65, 0.5), "l_elbow": (70, 65, 0.0),
        "r_sh_abd": (15, 5, 0.0), "l_sh_abd": (15, 5, 0.5), "spine_twist": (0, 20, 0.0),
        "r_knee": (20, 5, 0.0), "l_knee": (20, 5, 0.5), "r_hip_flex": (15, 5, 0.0), "l_hip_flex": (15, 5, 0.5)}),
    "kick": Action((0.5, 0.8), dofs={
        "r_hip_flex": (40, 45, 0.0), "r_knee": (45, 40, 0.8), "l_knee": (12, 8, 0.0),
        "r_sh_abd": (35, 15, 0.5), "l_sh_abd": (35, 15, 0.5), "spine_flex": (-5, 10, 0.5), "root_pitch": (-3, 6, 0.5)}),
    "bend": Action((0.15, 0.3), dofs={
        "spine_flex": (25, 25, 0.25), "root_pitch": (15, 15, 0.25), "r_hip_flex": (10, 10, 0.25), "l_hip_flex": (10, 10, 0.25),
        "r_sh_flex": (35, 35, 0.25), "l_sh_flex": (35, 35, 0.25), "neck_flex": (15, 15, 0.25), "r_knee": (10, 10, 0.25),
        "l_knee": (10, 10, 0.25)}),
}  # fmt: skip


def _rot(axis: str, angle: torch.Tensor) -> torch.Tensor:
    """(...) angles in radians -> (..., 3, 3) rotations about a body axis."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rows = {
        "x": ((one, zero, zero), (zero, c, -s), (zero, s, c)),
        "y": ((c, zero, s), (zero, one, zero), (-s, zero, c)),
        "z": ((c, -s, zero), (s, c, zero), (zero, zero, one)),
    }[axis]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def _euler(flex: torch.Tensor, abd: torch.Tensor, twist: torch.Tensor) -> torch.Tensor:
    """Twist about z, then abduction about y, then flexion about x (applied right to left)."""
    return _rot("z", twist) @ _rot("y", abd) @ _rot("x", flex)


def subject_bone_lengths(num_subjects: int, generator: torch.Generator, variation: float = 0.05) -> torch.Tensor:
    """(S, J) rest-offset lengths in mm per subject; the root's entry is 0; left and right equal."""
    height = 1.0 + 0.06 * torch.randn(num_subjects, 1, generator=generator)
    per_bone = 1.0 + variation * torch.randn(num_subjects, H36M_17.num_joints, generator=generator)
    for left, right in H36M_17.left_right:
        per_bone[:, right] = per_bone[:, left]
    template = torch.tensor([0.0] + [_REST[name][1] for name in H36M_17.joints[1:]])
    return template * height * per_bone


def _rest_directions() -> torch.Tensor:
    dirs = torch.zeros(H36M_17.num_joints, 3)
    for j, name in enumerate(H36M_17.joints[1:], start=1):
        dirs[j] = torch.nn.functional.normalize(torch.tensor(_REST[name][0], dtype=torch.float32), dim=0)
    return dirs


def joint_angles(action: Action, num_clips: int, num_frames: int, fps: float, generator: torch.Generator,
                 noise_deg: float = 6.0) -> torch.Tensor:  # fmt: skip
    """(C, T, D) joint angles in radians for ``num_clips`` random performances of ``action``."""
    g = generator
    t = torch.arange(num_frames) / fps
    tempo = action.tempo_hz[0] + (action.tempo_hz[1] - action.tempo_hz[0]) * torch.rand(num_clips, 1, generator=g)
    phase = 2 * math.pi * (tempo * t + torch.rand(num_clips, 1, generator=g))  # (C, T)
    spec = {**_IDLE, **action.dofs}
    mean = torch.tensor([spec.get(d, (0, 0, 0))[0] for d in DOFS], dtype=torch.float32)
    amp = torch.tensor([spec.get(d, (0, 0, 0))[1] for d in DOFS], dtype=torch.float32)
    shift = torch.tensor([spec.get(d, (0, 0, 0))[2] for d in DOFS], dtype=torch.float32) * 2 * math.pi
    amp = amp * (0.7 + 0.6 * torch.rand(num_clips, 1, len(DOFS), generator=g))
    mean = mean + 5.0 * torch.randn(num_clips, 1, len(DOFS), generator=g)
    angles = mean + amp * torch.sin(phase.unsqueeze(-1) + shift)
    # Smooth random motion: three low-frequency sinusoids per DOF with random phases.
    freqs = 0.1 + 0.5 * torch.rand(num_clips, 1, len(DOFS), 3, generator=g)
    phases = 2 * math.pi * torch.rand(num_clips, 1, len(DOFS), 3, generator=g)
    wiggle = torch.sin(2 * math.pi * freqs * t.view(1, -1, 1, 1) + phases).sum(-1) / math.sqrt(3)
    angles = angles + noise_deg * wiggle
    lo = torch.tensor([DOF_LIMITS[d][0] for d in DOFS])
    hi = torch.tensor([DOF_LIMITS[d][1] for d in DOFS])
    return torch.deg2rad(torch.maximum(torch.minimum(angles, hi), lo))


def _bone_rotations(angles: torch.Tensor) -> torch.Tensor:
    """(..., D) angles -> (..., J, 3, 3) local rotation of each joint's incoming bone."""
    a = {d: angles[..., i] for i, d in enumerate(DOFS)}
    eye = torch.eye(3).expand(*angles.shape[:-1], 3, 3)
    zero = torch.zeros_like(a["root_pitch"])
    half_spine = _euler(-a["spine_flex"] / 2, a["spine_lat"] / 2, a["spine_twist"] / 2)
    half_neck = _euler(-a["neck_flex"] / 2, zero, a["neck_turn"] / 2)
    local = {
        "RKnee": _euler(a["r_hip_flex"], -a["r_hip_abd"], a["r_hip_rot"]),
        "LKnee": _euler(a["l_hip_flex"], a["l_hip_abd"], -a["l_hip_rot"]),
        "RFoot": _rot("x", -a["r_knee"]),
        "LFoot": _rot("x", -a["l_knee"]),
        "Spine": _rot("x", -a["root_pitch"]) @ half_spine,
        "Thorax": half_spine,
        "Neck/Nose": half_neck,
        "Head": half_neck,
        "RElbow": _euler(a["r_sh_flex"], -a["r_sh_abd"], a["r_sh_rot"]),
        "LElbow": _euler(a["l_sh_flex"], a["l_sh_abd"], -a["l_sh_rot"]),
        "RWrist": _rot("x", a["r_elbow"]),
        "LWrist": _rot("x", a["l_elbow"]),
    }
    return torch.stack([local.get(name, eye) for name in H36M_17.joints], dim=-3)


def forward_kinematics(angles: torch.Tensor, bone_lengths: torch.Tensor) -> torch.Tensor:
    """Body-frame joints (..., J, 3) mm from angles (..., D) and lengths broadcastable to (..., J).

    The root sits at the origin, the body faces +y, z is up; root orientation is applied by the caller.
    """
    offsets = _rest_directions() * bone_lengths.unsqueeze(-1)  # (..., J, 3)
    local = _bone_rotations(angles)
    root_rot = _rot("y", -angles[..., DOFS.index("root_roll")])
    positions = [torch.zeros(*angles.shape[:-1], 3)]
    frames = [root_rot]
    for j in range(1, H36M_17.num_joints):
        p = H36M_17.parents[j]
        frames.append(frames[p] @ local[..., j, :, :])
        positions.append(positions[p] + (frames[j] @ offsets[..., j, :].unsqueeze(-1)).squeeze(-1))
    return torch.stack(positions, dim=-2)


def root_trajectory(action: Action, num_clips: int, num_frames: int, fps: float, generator: torch.Generator
                    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Heading (C, T) radians and ground-plane root position (C, T, 2) mm."""
    g = generator
    t = torch.arange(num_frames) / fps
    heading0 = 2 * math.pi * torch.rand(num_clips, 1, generator=g)
    turn_rate = math.radians(25) * (2 * torch.rand(num_clips, 1, generator=g) - 1)
    heading = (
        heading0
        + turn_rate * t
        + 0.3 * torch.sin(2 * math.pi * 0.1 * t + 2 * math.pi * torch.rand(num_clips, 1, generator=g))
    )
    speed = action.speed_mm_s[0] + (action.speed_mm_s[1] - action.speed_mm_s[0]) * torch.rand(num_clips, 1, generator=g)
    # The body faces +y in its own frame; heading rotates it about the world's z axis.
    step = torch.stack([-torch.sin(heading), torch.cos(heading)], dim=-1) * (speed / fps).unsqueeze(-1)
    start = 1000.0 * (2 * torch.rand(num_clips, 1, 2, generator=g) - 1)
    return heading, start + torch.cumsum(step, dim=1) - step[:, :1]


def generate_clips(action: Action, bone_lengths: torch.Tensor, num_frames: int, fps: float,
                   generator: torch.Generator, noise_deg: float = 6.0) -> torch.Tensor:  # fmt: skip
    """World-frame joints (C, T, J, 3) mm for one clip per row of ``bone_lengths`` (C, J)."""
    num_clips = bone_lengths.shape[0]
    angles = joint_angles(action, num_clips, num_frames, fps, generator, noise_deg)
    body = forward_kinematics(angles, bone_lengths.unsqueeze(1))  # (C, T, J, 3)
    heading, ground = root_trajectory(action, num_clips, num_frames, fps, generator)
    world = body @ _rot("z", heading).transpose(-1, -2)
    height = -world[..., 2].amin(dim=-1)  # lowest joint on the floor
    if action.jump_mm > 0:
        t = torch.arange(num_frames) / fps
        tempo = sum(action.tempo_hz) / 2
        height = height + action.jump_mm * torch.relu(torch.sin(2 * math.pi * tempo * t)).unsqueeze(0)
    offset = torch.cat([ground, height.unsqueeze(-1)], dim=-1)
    return world + offset.unsqueeze(-2)
