"""Synthetic bodies: ellipsoid primitives rigged to the 17-joint skeleton, with clothing and textures.

A body is 21 ellipsoids in 11 *part frames* computed from the joints of each frame:

* pelvis, torso and head frames come from the joints alone (hips, shoulders, nose give the twist);
* each limb frame is its parent frame carried onto the bone by the *minimal* rotation from a rest
  direction (legs down, arms sideways, a child bone along its parent), so the frame turns smoothly
  with the bone and textures stay glued to the limb (the twist about a bone is not in the joints).

Each ellipsoid sits at a fixed place in its frame: sizes along the bone follow that frame's bone
length in the current frame; widths follow the subject (overall size from its bone lengths, a
per-subject girth, shoulder and hip widths). Appearance is per subject: skin, hair, shirt, trousers
and shoes colours, sleeve and leg lengths, a pattern per garment (stripes, checks, smooth noise)
and a fine fabric grain, all in the part's local millimetres so they move with the body.

Local frame axes (columns of the rotations): x = the person's right, y = forward, z = along the
bone (up for pelvis, torso and head). Units: mm.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from functools import cached_property

import torch

from ..motion.procedural import _REST
from ..poses import split_generator
from ..skeleton import H36M_17
from .raycast import Ellipsoids, matmul, matvec

#: Part labels of the ``parts`` map (index = label; 0 is the background).
PARTS = ("background", "head", "torso", "pelvis", "r_upper_arm", "r_forearm", "r_hand", "l_upper_arm", "l_forearm",
         "l_hand", "r_thigh", "r_shin", "r_foot", "l_thigh", "l_shin", "l_foot")  # fmt: skip

#: Part frames; each primitive lives in one.
FRAMES = ("pelvis", "torso", "head", "r_upper_arm", "r_forearm", "l_upper_arm", "l_forearm",
          "r_thigh", "r_shin", "l_thigh", "l_shin")  # fmt: skip

#: Garments (colour and pattern slots of an appearance). "sleeve" and "leg" resolve per subject
#: to shirt or skin, trousers or skin (short sleeves, shorts).
GARMENTS = ("skin", "hair", "shirt", "pants", "shoes")


@dataclass(frozen=True)
class Primitive:
    """One ellipsoid of the template body.

    ``center = (cx, cy, cz_mm + cz_len * L)`` and ``radii = (rx, ry, rz_mm + rz_len * L)`` in the
    frame's local axes, with L the frame's bone length in the current frame. The millimetre terms
    scale with the subject's size (and the x/y radii with its girth when ``girth`` is set).
    """

    name: str
    part: str
    frame: str
    garment: str
    center: tuple[float, float, float]
    center_len: float
    radii: tuple[float, float, float]
    radius_len: float
    girth: bool = True


def _limbs(side: str) -> tuple[Primitive, ...]:
    s = side
    return (
        Primitive(f"{s}_shoulder", f"{s}_upper_arm", f"{s}_upper_arm", "shirt", (0, 0, 0), 0.05, (58, 58, 62), 0.0),
        Primitive(f"{s}_upper_arm", f"{s}_upper_arm", f"{s}_upper_arm", "shirt", (0, 0, 0), 0.5, (48, 48, 25), 0.5),
        Primitive(f"{s}_forearm", f"{s}_forearm", f"{s}_forearm", "sleeve", (0, 0, 0), 0.5, (40, 40, 20), 0.5),
        Primitive(f"{s}_hand", f"{s}_hand", f"{s}_forearm", "skin", (0, 0, 75), 1.0, (44, 24, 80), 0.0, girth=False),
        Primitive(f"{s}_thigh", f"{s}_thigh", f"{s}_thigh", "pants", (0, 0, 0), 0.45, (80, 80, 40), 0.5),
        Primitive(f"{s}_shin", f"{s}_shin", f"{s}_shin", "leg", (0, 0, 0), 0.5, (56, 56, 25), 0.5),
        # The foot hangs off the shin frame: local -y is forward in the leg frames (see ``part_frames``).
        Primitive(f"{s}_foot", f"{s}_foot", f"{s}_shin", "shoes", (0, -70, 45), 1.0, (48, 125, 42), 0.0, girth=False),
    )


#: The template body. Order matters only for the part and frame lookups below.
PRIMITIVES: tuple[Primitive, ...] = (
    Primitive("pelvis", "pelvis", "pelvis", "pants", (0, -5, 0), 0.1, (160, 110, 20), 0.45),
    Primitive("abdomen", "torso", "pelvis", "shirt", (0, 0, 0), 0.78, (140, 105, 30), 0.45),
    Primitive("chest", "torso", "torso", "shirt", (0, 8, 0), 0.45, (150, 112, 30), 0.55),
    Primitive("shoulders", "torso", "torso", "shirt", (0, -8, 0), 0.92, (180, 85, 72), 0.0),
    Primitive("neck", "head", "head", "skin", (0, 0, 0), 0.2, (48, 48, 20), 0.22, girth=False),
    Primitive("skull", "head", "head", "skin", (0, 8, 0), 0.57, (78, 95, 10), 0.42, girth=False),
    Primitive("nose", "head", "head", "skin", (0, 92, 0), 0.5, (16, 24, 22), 0.0, girth=False),
    *_limbs("r"),
    *_limbs("l"),
)
PRIM_NAMES = tuple(p.name for p in PRIMITIVES)
SKULL, CHEST = PRIM_NAMES.index("skull"), PRIM_NAMES.index("chest")

#: Bone lengths (17,) mm of the motion template (``datamodules.motion.procedural``) that the primitive sizes were made for.
_TEMPLATE = torch.tensor([0.0] + [_REST[name][1] for name in H36M_17.joints[1:]])


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(v, dim=-1, eps=1e-8)


def _frame_zx(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Rotation (..., 3, 3) with columns x, y, z: z along ``z``, x as close to ``x`` as orthogonality allows."""
    z = _normalize(z)
    x = _normalize(x - (x * z).sum(-1, keepdim=True) * z)
    return torch.stack([x, torch.cross(z, x, dim=-1), z], dim=-1)


def _frame_zy(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Rotation with z along ``z`` and y as close to ``y`` as orthogonality allows."""
    z = _normalize(z)
    y = _normalize(y - (y * z).sum(-1, keepdim=True) * z)
    return torch.stack([torch.cross(y, z, dim=-1), y, z], dim=-1)


def _swing(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Minimal rotation (..., 3, 3) taking unit vectors ``a`` to ``b`` (Rodrigues, axis a x b).

    Singular only for opposite vectors, which the rest directions keep out of a human range of
    motion (a leg straight up, an arm through the chest, a knee bent past 180 degrees).
    """
    v = torch.cross(a, b, dim=-1)
    c = (a * b).sum(-1)
    zero = torch.zeros_like(c)
    vx = torch.stack([torch.stack([zero, -v[..., 2], v[..., 1]], -1),
                      torch.stack([v[..., 2], zero, -v[..., 0]], -1),
                      torch.stack([-v[..., 1], v[..., 0], zero], -1)], dim=-2)  # fmt: skip
    return torch.eye(3) + vx + matmul(vx, vx) / (1 + c).clamp(min=1e-4)[..., None, None]


def _fixed(axis: str, degrees: float) -> torch.Tensor:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    c, s = round(c, 12), round(s, 12)
    return {
        "x": torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
    }[axis].float()


# Rest orientation of each limb frame relative to its parent: legs hang down (180 deg about x keeps
# x = right and turns forward into -y), arms point sideways (T-pose), children continue their parent.
_LIMB_REST = {"r_upper_arm": _fixed("y", 90), "l_upper_arm": _fixed("y", -90), "r_thigh": _fixed("x", 180),
              "l_thigh": _fixed("x", 180)}  # fmt: skip


def part_frames(joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Part frames of (..., 17, 3) H36M joints (mm).

    Returns:
        origins (..., F, 3) mm, rotations (..., F, 3, 3) (columns = local axes in the world) and
        bone lengths (..., F) mm, in the order of :data:`FRAMES`.
    """
    j = {name: joints[..., i, :] for i, name in enumerate(H36M_17.joints)}
    pelvis = _frame_zx(j["Spine"] - j["Hip"], j["RHip"] - j["LHip"])
    torso = _frame_zx(j["Thorax"] - j["Spine"], j["RShoulder"] - j["LShoulder"])
    # The head turns with the nose; a little of the torso's forward keeps it defined when the nose
    # lies on the neck-to-head line.
    head_y = (j["Neck/Nose"] - j["Thorax"]) + 15.0 * torso[..., :, 1]
    head = _frame_zy(j["Head"] - j["Thorax"], head_y)
    rot = {"pelvis": pelvis, "torso": torso, "head": head}
    origin = {"pelvis": j["Hip"], "torso": j["Spine"], "head": j["Thorax"]}
    end = {"pelvis": j["Spine"], "torso": j["Thorax"], "head": j["Head"]}
    limbs = (("r_upper_arm", "torso", "RShoulder", "RElbow"), ("r_forearm", "r_upper_arm", "RElbow", "RWrist"),
             ("l_upper_arm", "torso", "LShoulder", "LElbow"), ("l_forearm", "l_upper_arm", "LElbow", "LWrist"),
             ("r_thigh", "pelvis", "RHip", "RKnee"), ("r_shin", "r_thigh", "RKnee", "RFoot"),
             ("l_thigh", "pelvis", "LHip", "LKnee"), ("l_shin", "l_thigh", "LKnee", "LFoot"))  # fmt: skip
    for name, parent, start, stop in limbs:
        rest = rot[parent] if name not in _LIMB_REST else matmul(rot[parent], _LIMB_REST[name].expand_as(rot[parent]))
        bone = _normalize(j[stop] - j[start])
        rot[name] = matmul(_swing(rest[..., :, 2], bone), rest)
        origin[name], end[name] = j[start], j[stop]
    origins = torch.stack([origin[f] for f in FRAMES], dim=-2)
    lengths = torch.stack([(end[f] - origin[f]).norm(dim=-1) for f in FRAMES], dim=-1)
    return origins, torch.stack([rot[f] for f in FRAMES], dim=-3), lengths


_FRAME_OF = torch.tensor([FRAMES.index(p.frame) for p in PRIMITIVES])
#: (P,) part label of each primitive.
PART_OF = torch.tensor([PARTS.index(p.part) for p in PRIMITIVES])
_CENTER_LEN = torch.tensor([p.center_len for p in PRIMITIVES])
_RADIUS_LEN = torch.tensor([p.radius_len for p in PRIMITIVES])
_GRAIN = torch.rand(4096, generator=torch.Generator().manual_seed(20240531))


@dataclass
class Bodies:
    """Shape and appearance of S subjects (row s describes subject ``subject_ids[s]``).

    Attributes:
        subject_ids: (S,) subject ids of the motion source.
        center_mm: (S, P, 3) size-scaled constant part of each primitive's local centre, mm.
        radii_mm: (S, P, 3) size- and girth-scaled constant part of the radii, mm.
        garment: (S, P) garment index (:data:`GARMENTS`) of each primitive.
        colors: (S, G, 2, 3) primary and secondary RGB of each garment in [0, 1].
        pattern: (S, G, 3) weights of (stripes, checks, smooth noise) per garment, 0/1.
        period: (S, G) pattern period, mm.
        waves: (S, G, 3, 3) wave vectors of the smooth noise, rad/mm.
        tint: (S, P, 3) per-primitive multiplicative colour jitter (parts differ slightly).
        hairline: (S,) unit-sphere height above which the skull is hair.
        logo: (S, 4) chest logo RGB and on/off flag.
    """

    subject_ids: torch.Tensor
    center_mm: torch.Tensor
    radii_mm: torch.Tensor
    garment: torch.Tensor
    colors: torch.Tensor
    pattern: torch.Tensor
    period: torch.Tensor
    waves: torch.Tensor
    tint: torch.Tensor
    hairline: torch.Tensor
    logo: torch.Tensor

    @cached_property
    def surface(self) -> torch.Tensor:
        """(S * (P + 1), 26) per (subject, primitive) shading table; row P of a subject is its hair.

        Columns: primary RGB, secondary RGB, pattern weights (3), period, noise waves (9), tint RGB,
        logo RGB and flag (chest only).
        """
        S, P = self.garment.shape
        garment = torch.cat([self.garment, torch.full((S, 1), GARMENTS.index("hair"))], dim=1)  # (S, P + 1)
        rows = torch.arange(S).unsqueeze(-1)
        logo = torch.zeros(S, P + 1, 4)
        logo[:, CHEST] = self.logo
        table = torch.cat([self.colors[rows, garment].flatten(-2), self.pattern[rows, garment],
                           self.period[rows, garment].unsqueeze(-1), self.waves[rows, garment].flatten(-2),
                           torch.cat([self.tint, self.tint[:, SKULL : SKULL + 1]], dim=1), logo], dim=-1)  # fmt: skip
        return table.reshape(S * (P + 1), 26)


def _hsv(h: float, s: float, v: float) -> list[float]:
    return list(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)))


def _appearance(seed: int, subject: int) -> dict[str, torch.Tensor]:
    """One subject's random shape factors and clothing, a function of (seed, subject) only."""
    g = split_generator(seed, "appearance", subject)
    u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    r = u(40).tolist()
    skin_t = r[0]
    skin = [0.92 - 0.55 * skin_t, 0.76 - 0.52 * skin_t, 0.66 - 0.52 * skin_t]
    hair = [[0.08, 0.06, 0.05], [0.30, 0.18, 0.10], [0.75, 0.62, 0.35], [0.55, 0.55, 0.55], [0.45, 0.15, 0.08]][
        int(r[1] * 5)
    ]
    shirt = _hsv(r[2], 0.25 + 0.6 * r[3], 0.35 + 0.6 * r[4])
    shirt2 = _hsv(r[2] + 0.3 + 0.4 * r[5], 0.2 + 0.7 * r[6], 0.3 + 0.7 * r[7])
    pants = (
        _hsv(0.55 + 0.15 * r[8], 0.2 + 0.5 * r[9], 0.15 + 0.5 * r[10])
        if r[11] < 0.6
        else _hsv(r[8], 0.5 * r[9], 0.2 + 0.6 * r[10])
    )
    pants2 = [c * (0.6 + 0.3 * r[12]) for c in pants]
    shoes = _hsv(r[13], 0.4 * r[14], 0.1 + 0.8 * r[15] ** 2)
    shoes2 = [min(1.0, c + 0.3) for c in shoes]
    colors = torch.tensor([[skin, [c * 0.85 for c in skin]], [hair, [c * 0.7 for c in hair]], [shirt, shirt2],
                           [pants, pants2], [shoes, shoes2]])  # fmt: skip
    pattern = torch.zeros(len(GARMENTS), 3)
    shirt_kind = int(r[16] * 4)  # plain, stripes, checks, noise
    if shirt_kind > 0:
        pattern[2, shirt_kind - 1] = 1.0
    pattern[3, 2] = 1.0 if r[17] < 0.5 else 0.0  # jeans-like mottling
    pattern[1, 2] = 1.0
    period = torch.tensor([40.0, 25.0, 30 + 70 * r[18], 40 + 40 * r[19], 30.0])
    waves = (torch.randn(len(GARMENTS), 3, 3, generator=g) * (2 * math.pi / period).view(-1, 1, 1)).float()
    return {
        "colors": colors.float(),
        "pattern": pattern,
        "period": period,
        "waves": waves,
        "short_sleeves": torch.tensor(r[20] < 0.4),
        "shorts": torch.tensor(r[21] < 0.25),
        "girth": torch.tensor(0.85 + 0.35 * r[22]),
        "shoulders": torch.tensor(0.9 + 0.2 * r[23]),
        "hips": torch.tensor(0.9 + 0.2 * r[24]),
        "tint": 1.0 + 0.07 * torch.randn(len(PRIMITIVES), 3, generator=g),
        "hairline": torch.tensor(-0.1 + 0.4 * r[25]),
        "logo": torch.tensor([*_hsv(r[26], 0.8, 0.9), float(r[27] < 0.5)]),
    }


def make_bodies(subject_ids: torch.Tensor, bone_lengths: torch.Tensor, seed: int) -> Bodies:
    """Bodies of subjects ``subject_ids`` (S,) with mean bone lengths (S, 17) mm (root entry ignored).

    Size: the ratio of the subject's bones to the motion template (median over bones) scales all
    widths; shape and clothing are random per (seed, subject) and independent of the other subjects.
    """
    if bone_lengths.shape != (len(subject_ids), H36M_17.num_joints):
        raise ValueError(f"make_bodies: bone_lengths must be (S, 17) for S={len(subject_ids)} subjects, "
                         f"got {tuple(bone_lengths.shape)}")  # fmt: skip
    size = (bone_lengths[:, 1:] / _TEMPLATE[1:]).median(dim=-1).values  # (S,)
    apps = [_appearance(seed, int(s)) for s in subject_ids]
    stack = lambda key: torch.stack([a[key] for a in apps])  # noqa: E731
    base_c = torch.tensor([p.center for p in PRIMITIVES], dtype=torch.float32)
    base_r = torch.tensor([p.radii for p in PRIMITIVES], dtype=torch.float32)
    girth = torch.tensor([p.girth for p in PRIMITIVES])
    width = torch.where(girth, stack("girth").unsqueeze(-1), torch.ones(1))  # (S, P)
    radii = base_r * size.view(-1, 1, 1) * torch.stack([width, width, torch.ones_like(width)], dim=-1)
    radii[:, PRIM_NAMES.index("shoulders"), 0] *= stack("shoulders")
    radii[:, PRIM_NAMES.index("pelvis"), 0] *= stack("hips")
    garments = []
    for a in apps:
        row = []
        for p in PRIMITIVES:
            name = {"sleeve": "skin" if a["short_sleeves"] else "shirt", "leg": "skin" if a["shorts"] else "pants"}.get(
                p.garment, p.garment
            )
            row.append(GARMENTS.index(name))
        garments.append(row)
    return Bodies(
        subject_ids=subject_ids.long(),
        center_mm=base_c * size.view(-1, 1, 1),
        radii_mm=radii,
        garment=torch.tensor(garments),
        colors=stack("colors"),
        pattern=stack("pattern"),
        period=stack("period"),
        waves=stack("waves"),
        tint=stack("tint"),
        hairline=stack("hairline"),
        logo=stack("logo"),
    )


def ellipsoids(joints: torch.Tensor, body: torch.Tensor, bodies: Bodies) -> Ellipsoids:
    """The (M, P) ellipsoids of bodies ``body`` (M,) (rows of ``bodies``) posed by joints (M, 17, 3) mm."""
    origins, rots, lengths = part_frames(joints)
    f = _FRAME_OF
    L = lengths[:, f]  # (M, P)
    local_c = bodies.center_mm[body].clone()
    local_c[..., 2] += _CENTER_LEN * L
    radii = bodies.radii_mm[body].clone()
    radii[..., 2] += _RADIUS_LEN * L
    axes = rots[:, f]
    return Ellipsoids(center=origins[:, f] + matvec(axes, local_c), axes=axes, radii=radii)


def albedo(
    bodies: Bodies, body: torch.Tensor, prim: torch.Tensor, unit: torch.Tensor, radii: torch.Tensor
) -> torch.Tensor:
    """Surface colour (n, 3) in [0, 1] of hit points.

    Args:
        body: (n,) rows of ``bodies``; prim: (n,) primitive index.
        unit: (n, 3) hit points in unit-sphere coordinates; radii: (n, 3) the primitive's radii, mm.
    """
    local = unit * radii  # mm in the part's frame: patterns are glued to the body
    P = len(PRIMITIVES)
    hair = (prim == SKULL) & ((unit[:, 2] > bodies.hairline[body]) | ((unit[:, 1] < -0.3) & (unit[:, 2] > -0.35)))
    surface = bodies.surface.index_select(0, body * (P + 1) + torch.where(hair, P, prim))  # one gather per hit
    first, second, weights = surface[:, 0:3], surface[:, 3:6], surface[:, 6:9]
    period, waves, tint, logo = surface[:, 9:10], surface[:, 10:19].view(-1, 3, 3), surface[:, 19:22], surface[:, 22:26]
    stripes = (torch.sin(local[:, 2:3] * (2 * math.pi) / period) > 0).float()
    checks = (torch.floor(local / period).sum(-1, keepdim=True) % 2).float()
    noise = (torch.sin(matvec(waves, local)).sum(-1, keepdim=True) / 3 + 0.5).clamp(0, 1)
    mix = weights[:, 0:1] * stripes + weights[:, 1:2] * checks + weights[:, 2:3] * noise
    color = (first + (second - first) * mix) * tint
    on_logo = (logo[:, 3] > 0) & (unit[:, 1] > 0.6) & (unit[:, 0] ** 2 + (unit[:, 2] - 0.15) ** 2 < 0.09)
    color = torch.where(on_logo.unsqueeze(-1), logo[:, :3], color)
    # Fabric grain: 6 mm cells index a fixed random table (cheaper than hashing every hit).
    cells = torch.floor(local * (1 / 6.0)).long()
    grain = _GRAIN[(cells[:, 0] * 73 + cells[:, 1] * 151 + cells[:, 2] * 283 + prim * 997 + body * 4099) & 4095]
    return (color * (0.94 + 0.12 * grain.unsqueeze(-1))).clamp(0, 1)
