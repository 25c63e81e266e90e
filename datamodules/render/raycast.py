"""Analytic ray casting of ellipsoids in torch: silhouettes, depth, part ids and surface coordinates.

A scene is a batch of ``M`` views, each with ``P`` ellipsoids (the body primitives of
``datamodules.render.bodies``) and a pinhole camera ``K, R, t`` (conventions of ``datamodules.cameras``:
``X_cam = R @ X_world + t``, pixel origin at the image's top-left corner, so pixel ``(row i, col j)``
has its centre at ``(j + 0.5, i + 0.5)``).

Casting is vectorised over views, pixels and primitives without testing every ray against every
primitive: each ellipsoid's exact screen-space bounding box (from its dual image conic) selects the
``tile x tile`` pixel tiles it can cover, and only those (tile, primitive) pairs are intersected.
Per pixel the nearest hit wins (one ``scatter_reduce`` over depth-ordered integer keys).

Everything in a ray test is written in the ellipsoid's *unit-sphere coordinates*
``u = diag(1/radii) @ axes^T @ (x - center)``. They double as material coordinates: the hit point's
``u`` on the same primitive one frame later gives its new position, hence optical flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_INT64_MAX = torch.iinfo(torch.int64).max


def matvec(A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) @ (..., 3) -> (..., 3), written out elementwise.

    Small batched matmuls may take different BLAS paths for different batch sizes; the explicit
    sum keeps every result bit-identical however the batch is composed (same seed, same pixels).
    """
    return A[..., 0] * v[..., 0:1] + A[..., 1] * v[..., 1:2] + A[..., 2] * v[..., 2:3]


def matmul(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) @ (..., 3, 3), elementwise for the same reason as :func:`matvec`."""
    return torch.stack([matvec(A, B[..., :, j]) for j in range(3)], dim=-1)


def transpose(A: torch.Tensor) -> torch.Tensor:
    return A.transpose(-1, -2)


def invert_intrinsics(K: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) inverse of pinhole intrinsics ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in closed form."""
    fx, s, cx = K[..., 0, 0], K[..., 0, 1], K[..., 0, 2]
    fy, cy = K[..., 1, 1], K[..., 1, 2]
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = (
        (1 / fx, -s / (fx * fy), (s * cy - cx * fy) / (fx * fy)),
        (zero, 1 / fy, -cy / fy),
        (zero, zero, one),
    )
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def project_points(
    points: torch.Tensor, K: torch.Tensor, R: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """World points (..., 3) mm with cameras broadcastable to (..., 3, 3) -> pixels (..., 2), depth (...) mm."""
    cam = matvec(R, points) + t
    uvw = matvec(K, cam)
    z = cam[..., 2]
    return uvw[..., :2] / uvw[..., 2:].clamp(min=1e-6), z


@dataclass
class Ellipsoids:
    """``P`` ellipsoids in each of ``M`` views (world frame, mm).

    Attributes:
        center: (M, P, 3) centres.
        axes: (M, P, 3, 3) rotations whose columns are the ellipsoid's local axes in the world.
        radii: (M, P, 3) semi-axis lengths along those columns.
    """

    center: torch.Tensor
    axes: torch.Tensor
    radii: torch.Tensor

    def __post_init__(self) -> None:
        M, P = self.center.shape[:2]
        if self.axes.shape != (M, P, 3, 3) or self.radii.shape != (M, P, 3):
            raise ValueError(f"Ellipsoids: center {tuple(self.center.shape)}, axes {tuple(self.axes.shape)} and radii "
                             f"{tuple(self.radii.shape)} must be (M, P, 3), (M, P, 3, 3), (M, P, 3)")  # fmt: skip

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.center.shape[:2])

    def split(self, m: int) -> tuple[Ellipsoids, Ellipsoids]:
        """The first ``m`` views and the rest."""
        head = Ellipsoids(self.center[:m], self.axes[:m], self.radii[:m])
        return head, Ellipsoids(self.center[m:], self.axes[m:], self.radii[m:])

    def take(self, view: torch.Tensor, prim: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Centres (n, 3), axes (n, 3, 3) and radii (n, 3) of primitives ``prim`` (n,) in views ``view`` (n,).

        One gather from a packed table: per-hit lookups are a large share of the shading time.
        """
        M, P = self.shape
        packed = torch.cat([self.center, self.axes.flatten(-2), self.radii], dim=-1).view(M * P, 15)
        rows = packed.index_select(0, view * P + prim)
        return rows[:, :3], rows[:, 3:12].view(-1, 3, 3), rows[:, 12:]

    def to_world(self, unit: torch.Tensor, view: torch.Tensor, prim: torch.Tensor) -> torch.Tensor:
        """Unit-sphere coordinates (n, 3) of primitives ``prim`` (n,) in views ``view`` (n,) -> world (n, 3) mm."""
        center, axes, radii = self.take(view, prim)
        return center + matvec(axes, unit * radii)

    def to_unit(self, points: torch.Tensor, view: torch.Tensor, prim: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_world`."""
        center, axes, radii = self.take(view, prim)
        return matvec(transpose(axes), points - center) / radii

    def normals(self, unit: torch.Tensor, view: torch.Tensor, prim: torch.Tensor) -> torch.Tensor:
        """Outward unit normals (n, 3) in the world at unit-sphere points (n, 3) (gradient of the implicit form)."""
        _, axes, radii = self.take(view, prim)
        return surface_normals(axes, radii, unit)

    def lowest_z(self) -> torch.Tensor:
        """(M, P) world Z of each ellipsoid's lowest point, mm (the support function along -Z)."""
        reach = (self.axes[..., 2, :] * self.radii).norm(dim=-1)
        return self.center[..., 2] - reach


def surface_normals(axes: torch.Tensor, radii: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """World unit normals (n, 3) at unit-sphere points (n, 3) of ellipsoids with axes (n, 3, 3) and radii (n, 3)."""
    return torch.nn.functional.normalize(matvec(axes, unit / radii), dim=-1)


def ellipsoid_bboxes(
    ell: Ellipsoids, K: torch.Tensor, R: torch.Tensor, t: torch.Tensor, near: float = 10.0
) -> torch.Tensor:
    """Exact screen-space bounding boxes (M, P, 4) ``x0, y0, x1, y1`` px of each ellipsoid's silhouette.

    The silhouette's dual conic is ``C* = K (A A^T - c c^T) K^T`` with ``A = R axes diag(radii)`` and
    ``c`` the camera-frame centre; its vertical tangents ``x = (C*02 +- sqrt(C*02^2 - C*00 C*22)) / C*22``
    bound it (same for y). An ellipsoid reaching behind the plane ``z = near`` gets an infinite box.

    Args:
        K, R: (M, 3, 3) intrinsics and world-to-camera rotations; t: (M, 3) mm.
    """
    Rm, Km = R.unsqueeze(1), K.unsqueeze(1)
    c = matvec(Rm, ell.center) + t.unsqueeze(1)  # (M, P, 3) camera frame
    A = matmul(Rm, ell.axes) * ell.radii.unsqueeze(-2)  # columns scaled by radii
    AAt = matmul(A, transpose(A))
    Q = AAt - c.unsqueeze(-1) * c.unsqueeze(-2)
    C = matmul(matmul(Km, Q), transpose(Km))
    in_front = c[..., 2] - AAt[..., 2, 2].clamp(min=0).sqrt() > near
    c22 = C[..., 2, 2]
    bounds = []
    for i in (0, 1):
        root = (C[..., i, 2] ** 2 - C[..., i, i] * c22).clamp(min=0).sqrt()
        a, b = (C[..., i, 2] + root) / c22, (C[..., i, 2] - root) / c22
        bounds.append((torch.minimum(a, b), torch.maximum(a, b)))
    box = torch.stack([bounds[0][0], bounds[1][0], bounds[0][1], bounds[1][1]], dim=-1)
    infinite = torch.tensor([-torch.inf, -torch.inf, torch.inf, torch.inf])
    return torch.where(in_front.unsqueeze(-1), box, infinite)


@dataclass
class Hits:
    """The visible surface point of every pixel a primitive covers (sparse, one row per covered pixel).

    Attributes:
        pixel: (n,) flat index into ``(M, H, W)``, ascending.
        view: (n,) view index ``m``.
        prim: (n,) primitive index.
        depth: (n,) distance along the optical axis, mm.
        unit: (n, 3) hit point in the primitive's unit-sphere coordinates.
        xy: (n, 2) pixel-centre coordinates, px.
    """

    pixel: torch.Tensor
    view: torch.Tensor
    prim: torch.Tensor
    depth: torch.Tensor
    unit: torch.Tensor
    xy: torch.Tensor


def cast(ell: Ellipsoids, K: torch.Tensor, R: torch.Tensor, t: torch.Tensor, width: int, height: int,
         tile: int = 8, near: float = 10.0, boxes: torch.Tensor | None = None) -> Hits:  # fmt: skip
    """Cast one ray through every pixel centre and keep the nearest ellipsoid hit.

    Args:
        ell: (M, P) ellipsoids in the world, mm.
        K, R: (M, 3, 3); t: (M, 3) mm — one camera per view.
        width, height: image size in px.
        tile: tile edge in px for the bounding-box culling.
        near: hits closer than this depth (mm) are ignored.
        boxes: precomputed :func:`ellipsoid_bboxes` (M, P, 4), to save recomputing them.

    Returns:
        :class:`Hits` for the covered pixels; pixels not listed see the background.
    """
    M, P = ell.shape
    if boxes is None:
        boxes = ellipsoid_bboxes(ell, K, R, t, near)
    # The only rays worth testing: pixel centres in tiles that overlap a primitive's box.
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    edges_x = torch.arange(tiles_x) * tile
    edges_y = torch.arange(tiles_y) * tile
    # A pixel centre x+0.5 lies in [x0, x1] for some pixel of a tile [e, e+tile) iff e+0.5 <= x1 and e+tile-0.5 >= x0.
    over_x = (edges_x + 0.5 <= boxes[..., 2:3]) & (edges_x + tile - 0.5 >= boxes[..., 0:1])  # (M, P, Tx)
    over_y = (edges_y + 0.5 <= boxes[..., 3:4]) & (edges_y + tile - 0.5 >= boxes[..., 1:2])  # (M, P, Ty)
    pairs = (over_y.unsqueeze(-1) & over_x.unsqueeze(-2)).nonzero()  # (n_pairs, 4): m, p, ty, tx
    m, p, ty, tx = pairs.unbind(-1)

    # Per (view, primitive): ray origin and the map from pixel (x, y, 1) to ray direction, both in
    # unit-sphere coordinates, so that |o + s G (x, y, 1)|^2 = 1 is the intersection and s the depth.
    Rm = R.unsqueeze(1)
    cam_center = -matvec(transpose(R), t)  # (M, 3) world
    inv_r = 1.0 / ell.radii
    to_unit = transpose(ell.axes) * inv_r.unsqueeze(-1)  # (M, P, 3, 3) rows scaled
    origin = matvec(to_unit, cam_center.unsqueeze(1) - ell.center)  # (M, P, 3)
    G = matmul(matmul(to_unit, transpose(Rm)), invert_intrinsics(K).unsqueeze(1))  # (M, P, 3, 3)
    Q = matmul(transpose(G), G)  # quadratic form of |G p|^2
    g = matvec(transpose(G), origin)  # linear form of o . G p
    c = (origin * origin).sum(-1) - 1.0  # > 0 when the camera is outside

    Qp, gp, cp = Q[m, p], g[m, p], c[m, p]  # (n_pairs, ...)
    offsets = torch.arange(tile, dtype=torch.float32) + 0.5
    x = (tx * tile).to(torch.float32).unsqueeze(-1) + offsets.repeat(tile)  # (n_pairs, tile*tile), row-major tile
    y = (ty * tile).to(torch.float32).unsqueeze(-1) + offsets.repeat_interleave(tile)
    q = lambda i, j: Qp[:, i, j].unsqueeze(-1)  # noqa: E731
    a = x * (q(0, 0) * x + 2 * (q(0, 1) * y + q(0, 2))) + y * (q(1, 1) * y + 2 * q(1, 2)) + q(2, 2)
    h = gp[:, 0:1] * x + gp[:, 1:2] * y + gp[:, 2:3]  # half the linear coefficient
    disc = h * h - a * cp.unsqueeze(-1)
    # Near root in the cancellation-free form s = c / (-h + sqrt(disc)) (h < 0 when the ray approaches).
    s = cp.unsqueeze(-1) / (-h + disc.clamp(min=0).sqrt())
    hit = (disc >= 0) & (h < 0) & (s > near) & (cp > 0).unsqueeze(-1) & (x < width) & (y < height)
    pair_idx, pix_idx = hit.nonzero().unbind(-1)
    s = s[pair_idx, pix_idx]
    xh, yh = x[pair_idx, pix_idx], y[pair_idx, pix_idx]
    flat = m[pair_idx] * (height * width) + yh.long() * width + xh.long()

    # Nearest hit per pixel: positive float32 bit patterns sort like the floats, so the depth goes in
    # the high 32 bits of an int64 key and the candidate's index in the low bits breaks ties stably.
    key = (s.view(torch.int32).to(torch.int64) << 32) | torch.arange(s.shape[0])
    best = torch.full((M * height * width,), _INT64_MAX, dtype=torch.int64)
    best.scatter_reduce_(0, flat, key, reduce="amin")
    pixel = (best != _INT64_MAX).nonzero().squeeze(-1)
    win = best[pixel] & 0xFFFFFFFF
    pair = pair_idx[win]
    view, prim = m[pair], p[pair]
    depth = s[win]
    xy = torch.stack([xh[win], yh[win]], dim=-1)
    pvec = torch.cat([xy, torch.ones_like(depth).unsqueeze(-1)], dim=-1)
    ray = torch.cat([origin, G.flatten(-2)], dim=-1).view(M * P, 12).index_select(0, view * P + prim)
    unit = ray[:, :3] + depth.unsqueeze(-1) * matvec(ray[:, 3:].view(-1, 3, 3), pvec)
    return Hits(pixel=pixel, view=view, prim=prim, depth=depth, unit=unit, xy=xy)


def scatter_dense(hits: Hits, values: torch.Tensor, shape: tuple[int, int, int], fill: float | int = 0) -> torch.Tensor:
    """Sparse per-hit values (n, C) or (n,) -> dense (M, H, W, C) or (M, H, W) with ``fill`` elsewhere."""
    M, H, W = shape
    out = torch.full((M * H * W, *values.shape[1:]), fill, dtype=values.dtype)
    out[hits.pixel] = values
    return out.view(M, H, W, *values.shape[1:])


def pixel_grid(width: int, height: int) -> torch.Tensor:
    """(H, W, 3) homogeneous pixel-centre coordinates ``(x + 0.5, y + 0.5, 1)``."""
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    return torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)


def ray_directions(K: torch.Tensor, R: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """(M, H, W, 3) world-frame ray directions through every pixel centre, scaled to unit depth (z_cam = 1)."""
    M_dir = matmul(transpose(R), invert_intrinsics(K))  # (M, 3, 3)
    return matvec(M_dir[:, None, None], pixel_grid(width, height))
