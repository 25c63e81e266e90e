"""Scenes for the synthetic humans: procedural rooms, lights and H36M-like calibrated camera rigs.

A scene is a round room (a textured floor at the person's ground level, a cylindrical wall with a
height gradient, stripes or panels, a dado rail and posters/windows/discs, a ceiling), one
directional light plus ambient light, and a rig of ``V`` cameras spread around the room's centre
like Human3.6M's four (azimuths a quarter turn apart with jitter, 1.0-2.2 m high, 4-5.5 m away,
about 1145 px focal length on a nominal 1000 x 1000 frame). Everything is a function of the seed
and the scene number, so a scene's background is static and identical wherever it is reused.

Backgrounds are ray cast like the bodies (ray-plane and ray-cylinder intersections), so a moving
camera sees a consistent room and background flow is exact.

This module also holds the counter-based hash RNG (:func:`hash_uniform`) used for per-sample
randomness: a value depends only on its integer keys, never on batch composition or worker.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from ..cameras import look_at
from ..poses import split_generator
from .raycast import invert_intrinsics, matmul, matvec

_M32 = 0xFFFFFFFF
#: Nominal full frame (width, height) of the rig cameras, px; crops rescale it.
FULL_FRAME = (1000, 1000)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """The 'lowbias32' integer finaliser on int64 tensors holding 32-bit values (wrapping multiplies)."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def hash_uniform(*keys: torch.Tensor | int, n: int = 1) -> torch.Tensor:
    """Uniform floats (..., n) in [0, 1) that are a pure function of the broadcast int64 ``keys``."""
    h = torch.tensor(0x2545F491, dtype=torch.int64)
    for k in keys:
        k = torch.as_tensor(k, dtype=torch.int64)
        h = _mix32(h * 31 + _mix32(k & _M32) + _mix32(((k >> 32) & _M32) ^ 0x5BD1E995))
    outs = [_mix32(h ^ ((j + 1) * 0x68E31DA4)) >> 8 for j in range(n)]
    return torch.stack(outs, dim=-1).to(torch.float32) / float(1 << 24)


def hash_normal(*keys: torch.Tensor | int, n: int = 1) -> torch.Tensor:
    """Standard normal floats (..., n) from :func:`hash_uniform` (Box-Muller)."""
    u = hash_uniform(*keys, n=2 * n)
    radius = torch.sqrt(-2 * torch.log1p(-u[..., :n]))  # 1 - u in (0, 1]
    return radius * torch.cos(2 * math.pi * u[..., n:])


#: Floor textures repeat every FLOOR_PERIOD mm in x and y, sampled by FLOOR_TEXELS^2 texels.
FLOOR_PERIOD, FLOOR_TEXELS = 4096.0, 256
#: Wall textures are panoramas over the azimuth (width) and the wall's height.
WALL_TEXELS = (1024, 128)
#: Wall patterns are laid out as if on a wall this far from the room's centre, mm.
WALL_REF_RADIUS = 10000.0
#: Radius of the soft contact shadow on the floor, mm.
SHADOW_RADIUS = 650.0
_FAR = 1e9  # floor position of pixels that do not see the floor
#: The floor texture also comes 4x coarser (box filtered), used where a pixel covers more than
#: MIP_SWITCH_MM of floor: far away and at grazing angles, where the full texture would alias.
MIP_FACTOR, MIP_SWITCH_MM = 4, 40.0
_ROW = FLOOR_TEXELS + 2  # atlas row of one scene: padded floor | padded wall over the coarse floor | ceiling patch
_WALL_X = FLOOR_TEXELS + 2
_MIP_Y = WALL_TEXELS[1] + 2
_CEIL_X = _WALL_X + WALL_TEXELS[0] + 2


@dataclass
class Scenes:
    """S procedural scenes with V-camera rigs. Lengths mm, angles rad, colours RGB in [0, 1].

    The rooms' appearance (floor pattern, wall gradient, stripes, rail and decorations, with the
    scene's light baked in) is precomputed into one texture atlas; rendering a background is ray
    intersection plus one bilinear ``grid_sample`` for all pixels of a batch.

    Attributes:
        atlas: (3, S * rows, cols) texture atlas, each scene's floor and wall with a 1-texel wrap border.
        wall_height: (S,) room height.
        light: (S, 3) unit direction towards the light (world, Z up).
        light_color: (S, 3); ambient, diffuse: (S,) intensities (for the bodies; baked into the room).
        cam_azimuth, cam_height, cam_distance, cam_focal: (S, V) the rig: camera azimuth about the
            target, height above the floor, horizontal distance to the target, focal length in px on
            :data:`FULL_FRAME`. cam_center: (S, V, 2) principal points, px.
        target_height: (S,) height above the floor the rig aims at.
    """

    atlas: torch.Tensor
    wall_height: torch.Tensor
    light: torch.Tensor
    light_color: torch.Tensor
    ambient: torch.Tensor
    diffuse: torch.Tensor
    cam_azimuth: torch.Tensor
    cam_height: torch.Tensor
    cam_distance: torch.Tensor
    cam_focal: torch.Tensor
    cam_center: torch.Tensor
    target_height: torch.Tensor

    @property
    def num_views(self) -> int:
        return self.cam_azimuth.shape[1]

    def __len__(self) -> int:
        return self.cam_azimuth.shape[0]


def _floor_texture(g: torch.Generator, index: int, shade: torch.Tensor) -> torch.Tensor:
    """(T, T, 3) periodic floor texture: tiles with grout, staggered planks or carpet noise."""
    u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    P, n = FLOOR_PERIOD, FLOOR_TEXELS
    coords = (torch.arange(n) + 0.5) * (P / n)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    base = 0.25 + 0.6 * u(1) * (0.6 + 0.4 * u(3))
    second, grout = base * (0.55 + 0.3 * u(1)), base * 0.4
    kind = int(u(1) * 3)
    if kind == 0:  # tiles: an even count per period keeps the checkerboard periodic
        size = P / (2 * max(1, round(P / (2 * float(250 + 550 * u(1))))))
        tx, ty = x / size, y / size
        checker = ((torch.floor(tx) + torch.floor(ty)) % 2).unsqueeze(-1)
        edge = torch.minimum(torch.minimum(tx % 1, 1 - tx % 1), torch.minimum(ty % 1, 1 - ty % 1)) * size
        rgb = torch.where((edge < 8).unsqueeze(-1), grout, base + (second - base) * checker)
    elif kind == 1:  # planks along x, rows staggered, each plank its own tone
        width = P / max(1, round(P / float(120 + 150 * u(1))))
        length = P / max(1, round(P / float(1200 + 1500 * u(1))))
        rows, planks = round(P / width), round(P / length)
        row = torch.floor(y / width).long().clamp(max=rows - 1)
        along = x / length + torch.rand(rows, generator=g)[row]
        plank = torch.floor(along).long() % planks
        tone = 0.75 + 0.5 * torch.rand(rows, planks, generator=g)[row, plank]
        grain = 0.94 + 0.06 * torch.sin(2 * math.pi * (y / width * 2 + torch.sin(2 * math.pi * x / P * 3)))
        gap = ((along % 1) * length < 16) | ((y / width) % 1 * width < 12)
        rgb = torch.where(gap.unsqueeze(-1), grout, base * (tone * grain).unsqueeze(-1))
    else:  # carpet: smooth noise from waves with whole periods per tile of the floor
        waves = torch.randint(-7, 8, (3, 2), generator=g).float() * (2 * math.pi / P)
        mix = (torch.sin(x.unsqueeze(-1) * waves[:, 0] + y.unsqueeze(-1) * waves[:, 1]).sum(-1) / 3 + 0.5).clamp(0, 1)
        rgb = base + (second - base) * mix.unsqueeze(-1)
    return (rgb * shade).clamp(0, 1)


def _wall_texture(g: torch.Generator, light: torch.Tensor, ambient: float, diffuse: float, height: float,
                  decorations: int) -> torch.Tensor:  # fmt: skip
    """(H, W, 3) wall panorama (rows = height from the floor up, columns = azimuth from -pi), lit."""
    u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    W, H = WALL_TEXELS
    theta = -math.pi + (torch.arange(W) + 0.5) * (2 * math.pi / W)
    h = (torch.arange(H) + 0.5) * (height / H)
    hh, th = torch.meshgrid(h, theta, indexing="ij")
    bottom = 0.3 + 0.6 * u(3)
    top = (bottom + 0.3 * (u(3) - 0.3)).clamp(0.05, 1)
    stripe_color, rail_color = u(3), 0.2 + 0.5 * u(3)
    rgb = bottom + (top - bottom) * (hh / height).clamp(0, 1).unsqueeze(-1)
    if float(u(1)) < 0.5:  # vertical stripes, a whole number around the room
        count = max(1, round(2 * math.pi * WALL_REF_RADIUS / float(600 + 1200 * u(1))))
        rgb = torch.where((torch.sin(count * th) > 0.6).unsqueeze(-1), 0.5 * rgb + 0.5 * stripe_color, rgb)
    if float(u(1)) < 0.6:  # dado rail
        rgb = torch.where(((hh - 950).abs() < 40).unsqueeze(-1), rail_color, rgb)
    rgb = torch.where((hh < 110).unsqueeze(-1), 0.35 * rail_color, rgb)  # skirting board
    # Decorations (posters, doors, windows, discs), painted in order on their patch of texels.
    texel_w, texel_h = 2 * math.pi * WALL_REF_RADIUS / W, height / H  # mm per texel
    for _ in range(decorations):
        az, mid = float(2 * math.pi * u(1)), float(600 + 1800 * u(1))
        half_w, half_h = float(150 + 450 * u(1)), float(150 + 600 * u(1))
        disc, color = float(u(1)) < 0.3, u(3)
        half_h = half_w if disc else half_h
        r0, r1 = max(0, int((mid - half_h) / texel_h)), min(H, int((mid + half_h) / texel_h) + 2)
        cols = torch.arange(int((az - math.pi) / (2 * math.pi) * W - half_w / texel_w) - 1,
                            int((az - math.pi) / (2 * math.pi) * W + half_w / texel_w) + 2) % W  # fmt: skip
        if r1 <= r0:
            continue
        d_arc = (torch.remainder(theta[cols] - az + math.pi, 2 * math.pi) - math.pi) * WALL_REF_RADIUS
        d_h = h[r0:r1].unsqueeze(-1) - mid
        inside = (
            (d_arc / half_w) ** 2 + (d_h / half_w) ** 2 < 1 if disc else (d_arc.abs() < half_w) & (d_h.abs() < half_h)
        )
        patch = rgb[r0:r1, cols]
        rgb[r0:r1, cols] = torch.where(inside.unsqueeze(-1), color, patch)
    # Light baked in: the wall's normal points to the room's centre.
    normal_xy = -torch.stack([torch.cos(th), torch.sin(th)], dim=-1)
    lambert = (normal_xy * light[:2]).sum(-1).clamp(min=0)
    return (rgb * (ambient + 0.8 * diffuse * lambert).unsqueeze(-1)).clamp(0, 1)


def _pad_wrap(tex: torch.Tensor, wrap_rows: bool) -> torch.Tensor:
    """(h, w, 3) -> (h + 2, w + 2, 3): a one-texel border, wrapped (or repeated for rows) for bilinear lookups."""
    tex = torch.cat([tex[:, -1:], tex, tex[:, :1]], dim=1)
    top, bottom = (tex[-1:], tex[:1]) if wrap_rows else (tex[:1], tex[-1:])
    return torch.cat([top, tex, bottom], dim=0)


def _scene(seed: int, index: int, views: int, decorations: int) -> dict[str, torch.Tensor]:
    g = split_generator(seed, "scene", index)
    u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    light_az, light_el = 2 * math.pi * u(1), math.radians(35) + math.radians(40) * u(1)
    light = torch.cat(
        [torch.cos(light_el) * torch.cos(light_az), torch.cos(light_el) * torch.sin(light_az), torch.sin(light_el)]
    )
    light_color = 0.9 + 0.2 * u(3)
    ambient, diffuse = float(0.35 + 0.2 * u(1)), float(0.45 + 0.25 * u(1))
    height = float(3000 + 1500 * u(1))
    azimuth = (
        2 * math.pi * u(1)
        + torch.arange(views) * (2 * math.pi / views)
        + math.radians(8) * torch.randn(views, generator=g)
    )
    rig = {
        "cam_azimuth": azimuth,
        "cam_height": 1000 + 1200 * u(views),
        "cam_distance": 4000 + 1500 * u(views),
        "cam_focal": 1145 * (0.95 + 0.1 * u(views)),
        "cam_center": torch.tensor(FULL_FRAME, dtype=torch.float32) / 2 + 8 * (u(views, 2) - 0.5),
        "target_height": (800 + 300 * u(1)).squeeze(0),
    }
    floor = _floor_texture(g, index, (ambient + diffuse * light[2]) * light_color)
    wall = _wall_texture(g, light, ambient, diffuse, height, decorations) * light_color
    ceiling = ((0.6 + 0.35 * u(3)) * (ambient + 0.15) * light_color).clamp(0, 1)
    atlas = torch.zeros(_ROW, _CEIL_X + 3, 3)
    atlas[:, :_WALL_X] = _pad_wrap(floor, wrap_rows=True)
    atlas[: WALL_TEXELS[1] + 2, _WALL_X:_CEIL_X] = _pad_wrap(wall, wrap_rows=False)
    coarse = torch.nn.functional.avg_pool2d(floor.permute(2, 0, 1), MIP_FACTOR).permute(1, 2, 0)
    atlas[_MIP_Y : _MIP_Y + coarse.shape[0] + 2, _WALL_X : _WALL_X + coarse.shape[1] + 2] = _pad_wrap(coarse, True)
    atlas[:3, _CEIL_X:] = ceiling
    return {"atlas": atlas, "wall_height": torch.tensor(height), "light": light, "light_color": light_color,
            "ambient": torch.tensor(ambient), "diffuse": torch.tensor(diffuse), **rig}  # fmt: skip


@functools.lru_cache(maxsize=8)
def make_scenes(num_scenes: int, views: int, seed: int, decorations: int = 8) -> Scenes:
    """``num_scenes`` random scenes with ``views`` cameras each; scene i depends only on (seed, i).

    Memoised (building the textures takes a moment): treat the returned tensors as read-only.
    """
    if num_scenes < 1 or views < 1:
        raise ValueError(f"make_scenes: num_scenes ({num_scenes}) and views ({views}) must be >= 1")
    rows = [_scene(seed, i, views, decorations) for i in range(num_scenes)]
    fields = {k: torch.stack([r[k] for r in rows]).float() for k in rows[0]}
    fields["atlas"] = fields["atlas"].flatten(0, 1).permute(2, 0, 1).contiguous()
    return Scenes(**fields)


def rig_cameras(scenes: Scenes, scene: torch.Tensor, view: torch.Tensor, target_xy: torch.Tensor, floor_z: torch.Tensor,
                distance_scale: torch.Tensor, azimuth_offset: torch.Tensor) -> dict[str, torch.Tensor]:  # fmt: skip
    """Full-frame cameras of rig ``view`` (M,) in scenes ``scene`` (M,).

    The rig aims at ``target_xy`` (M, 2) mm at the scene's target height above the floor
    ``floor_z`` (M,) mm; camera distances are multiplied by ``distance_scale`` (M,) and azimuths
    shifted by ``azimuth_offset`` (M,) rad (an orbiting camera). Returns ``K`` (M, 3, 3) on
    :data:`FULL_FRAME`, ``R`` (M, 3, 3), ``t`` (M, 3) mm and ``eye`` (M, 3) camera centres, mm.
    """
    az = scenes.cam_azimuth[scene, view] + azimuth_offset
    dist = scenes.cam_distance[scene, view] * distance_scale
    eye = torch.stack([target_xy[:, 0] + dist * torch.cos(az), target_xy[:, 1] + dist * torch.sin(az),
                       floor_z + scenes.cam_height[scene, view]], dim=-1)  # fmt: skip
    target = torch.cat([target_xy, (floor_z + scenes.target_height[scene]).unsqueeze(-1)], dim=-1)
    R, _ = look_at(eye, target)
    t = -matvec(R, eye)
    f, c = scenes.cam_focal[scene, view], scenes.cam_center[scene, view]
    K = torch.zeros(len(scene), 3, 3)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = f, f, c[:, 0], c[:, 1], 1.0
    return {"K": K, "R": R, "t": t, "eye": eye}


def background(scenes: Scenes, scene: torch.Tensor, K: torch.Tensor, R: torch.Tensor, eye: torch.Tensor, width: int,
               height: int, room_xy: torch.Tensor, floor_z: torch.Tensor, wall_radius: torch.Tensor,
               with_points: bool = True, chunk: int = 8
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """Colour, floor position and world point of the room behind every pixel centre of M views.

    Args:
        scene: (M,) scene index. K, R: (M, 3, 3) cameras; eye: (M, 3) camera centres, mm.
        width, height: image size, px.
        room_xy: (M, 2) centre of the round room, mm; floor_z: (M,) floor height, mm.
        wall_radius: (M,) room radius, mm (larger than every camera's distance to ``room_xy``).
        with_points: also return the points (for the flow of a moving camera).
        chunk: views per block; blocks keep the per-pixel temporaries in cache (a speed knob only).

    Returns:
        rgb (M, 3, H, W) in [0, 1] (lit, without the person's shadow); ground (M, 2, H, W) floor x, y
        in mm where the pixel sees the floor and far away elsewhere (see :func:`contact_shadow`);
        points (M, 3, H, W) world, mm (None unless ``with_points``).
    """
    M = len(scene)
    rgb = torch.empty(M, 3, height, width)
    ground = torch.empty(M, 2, height, width)
    points = torch.empty(M, 3, height, width) if with_points else None
    rays = matmul(R.transpose(-1, -2), invert_intrinsics(K))  # direction = rays @ (x, y, 1), z_cam = 1
    xs, ys = torch.arange(width) + 0.5, (torch.arange(height) + 0.5).unsqueeze(-1)
    atlas = scenes.atlas.unsqueeze(0)
    for lo in range(0, M, chunk):
        v = slice(lo, min(lo + chunk, M))
        col = lambda x, v=v: x[v].view(-1, 1, 1)  # noqa: E731  per-view constant against (m, H, W) planes
        d = [col(rays[:, k, 0]) * xs + (col(rays[:, k, 1]) * ys + col(rays[:, k, 2])) for k in range(3)]
        o = [col(eye[:, k]) for k in range(3)]
        fz = col(floor_z)
        top = fz + col(scenes.wall_height[scene])
        # Floor below the horizon, ceiling above it (the eye is between them).
        s_plane = (torch.where(d[2] < 0, fz - o[2], top - o[2]) / d[2]).abs()
        # The round wall: the far root of |o + s d - c|^2 = r^2 from inside.
        rx, ry = o[0] - col(room_xy[:, 0]), o[1] - col(room_xy[:, 1])
        a = d[0] * d[0] + d[1] * d[1]
        b = rx * d[0] + ry * d[1]
        c = rx * rx + ry * ry - col(wall_radius) ** 2
        s_wall = (torch.sqrt(b * b - a * c) - b) / a
        on_wall = s_wall <= s_plane
        on_floor = ~on_wall & (d[2] < 0)
        s = torch.minimum(s_plane, s_wall)
        p = [o[k] + s * d[k] for k in range(3)]
        if with_points:
            for k in range(3):
                points[v, k] = p[k]
        # Texel coordinates in the atlas (texel centres at integers), then one bilinear lookup.
        row0 = col(scene).float() * _ROW + 1
        fx, fy = p[0] * (1 / FLOOR_PERIOD), p[1] * (1 / FLOOR_PERIOD)
        fx, fy = fx - torch.floor(fx), fy - torch.floor(fy)  # position in the texture's period, [0, 1)
        # Floor footprint of the pixel (distance / focal, stretched at grazing angles) picks the level.
        length2 = a + d[2] * d[2]
        coarse = (s * s) * (length2 * length2.sqrt()) > (MIP_SWITCH_MM**2) * col(K[:, 0, 0] ** 2) * d[2].abs()
        level = torch.where(coarse, FLOOR_TEXELS / MIP_FACTOR, float(FLOOR_TEXELS))
        fx = fx * level + torch.where(coarse, float(_WALL_X + 0.5), 0.5)
        fy = fy * level + (row0 - 0.5) + torch.where(coarse, float(_MIP_Y), 0.0)
        theta = torch.atan2(p[1] - col(room_xy[:, 1]), p[0] - col(room_xy[:, 0]))
        wx = theta * (WALL_TEXELS[0] / (2 * math.pi)) + (WALL_TEXELS[0] / 2 + _WALL_X + 0.5)
        wy = ((p[2] - fz) * (WALL_TEXELS[1] / (top - fz)) - 0.5).clamp(-0.5, WALL_TEXELS[1] - 0.5) + row0
        tx = torch.where(on_floor, fx, torch.where(on_wall, wx, float(_CEIL_X + 1)))
        ty = torch.where(on_floor, fy, torch.where(on_wall, wy, row0))
        grid = torch.stack([tx * (2.0 / atlas.shape[-1]) + (1.0 / atlas.shape[-1] - 1),
                            ty * (2.0 / atlas.shape[-2]) + (1.0 / atlas.shape[-2] - 1)], dim=-1)  # fmt: skip
        color = torch.nn.functional.grid_sample(atlas, grid.view(1, 1, -1, 2), mode="bilinear", padding_mode="border",
                                                align_corners=False)  # fmt: skip
        rgb[v] = color.view(3, -1, height, width).transpose(0, 1)
        for k in range(2):
            ground[v, k] = torch.where(on_floor, p[k], _FAR)
    return rgb, ground, points


def contact_shadow(ground: torch.Tensor, shadow_xy: torch.Tensor) -> torch.Tensor:
    """(M, 1, H, W) darkening factor of a soft round shadow centred at ``shadow_xy`` (M, 2) mm on the floor.

    ``ground`` (M, 2, H, W) are the floor positions from :func:`background`. The falloff has compact
    support (:data:`SHADOW_RADIUS`), so the rest of a static background stays exactly static.
    """
    dx = ground[:, 0:1] - shadow_xy[:, 0].view(-1, 1, 1, 1)
    dy = ground[:, 1:2] - shadow_xy[:, 1].view(-1, 1, 1, 1)
    falloff = (1 - (dx * dx + dy * dy) * (1 / SHADOW_RADIUS**2)).clamp(min=0)
    return 1 - 0.5 * falloff * falloff
