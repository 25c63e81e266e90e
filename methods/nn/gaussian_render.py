"""Differentiable emission-absorption ray marching of a sum of analytic 3D Gaussians (Schmidtke et al., Eq. 1-4, 6).

A volume of K anisotropic Gaussians, part k with mean ``mu_k``, a whitening matrix ``A_k`` (so that
``q_k(x) = |A_k (x - mu_k)|^2`` is its Mahalanobis distance; ``A_k^T A_k`` is the precision), an
occupancy ``f_k`` and a colour ``c_k``, is seen by a pinhole camera at the origin of its frame (OpenCV:
x right, y down, z forward) with intrinsics ``K``. Every ray through a pixel centre is sampled at
``num_samples`` depths (Eq. 1: ``p_j = d_i z_j``, ``z_j = near + (j + 1/2) dz``, with the ray direction
``d_i = K^-1 (u, v, 1)`` scaled to unit depth, so the samples of all rays lie on the same planes
``z = z_j``). At every sample:

* occupancy (Eq. 6): ``f(p) = min(1, sum_k f_k g_k(p))`` with ``g_k(p) = exp(-q_k(p) / 2)``;
* colour (Eq. 6), ``colour_mode="normalised"`` (default): ``c(p) = sum_k f_k g_k(p) c_k / sum_k f_k g_k(p)``,
  the occupancy-weighted mean colour of the parts at p. The literal reading of Eq. 6, ``"sum"``:
  ``c(p) = min(1, sum_k c_k g_k(p))`` (each part's colour carried by its Gaussian profile), makes an opaque
  part's silhouette dark: a ray stops on the part's rim, where g_k and so the colour are small (a part of
  occupancy 1 and colour c renders as ~0.3 c). Both agree at a lone part's centre;
* weights (Eq. 3-4): ``w_j = f(p_j) T_j`` with the transmittance ``T_j = prod_{i<j} (1 - f(p_i))``
  (exclusive product, as PyTorch3D's ``EmissionAbsorptionRaymarcher`` that the paper used);
* pixel (Eq. 2): ``C = sum_j w_j c_j``, opacity ``alpha = sum_j w_j = 1 - T_final``; with a background
  colour the image is ``C + (1 - alpha) * background``.

The Gaussians are evaluated *analytically at the samples*. Along one ray ``q_k`` is a quadratic in the
depth: with ``b = A_k d`` and ``a = -A_k mu_k``, ``q_k(z) = |b|^2 (z - z0)^2 + q_min``, ``z0 = -(a.b)/|b|^2``,
``q_min = |a|^2 - (a.b)^2/|b|^2``; three numbers per (ray, part) give the exact value at every sample, so
the (rays, samples, parts) tensors hold scalars, not 3-vectors. Everything is vectorised over batch, rays,
samples and parts; rays are processed in chunks of ``chunk_rays`` and, when gradients are needed, each
chunk is recomputed in the backward pass (``torch.utils.checkpoint``), so memory is bounded by one chunk's
(B, chunk, samples, parts) working set plus the output, whatever the image size (see
:func:`working_set_bytes`). Rendering runs in float32 even under autocast (the transmittance is a long
product).

The paper rasterises the Gaussians onto a regular grid and ray-marches it with PyTorch3D's volume
renderer (trilinear ``grid_sample`` at the samples). ``field="grid"`` does the same in plain torch (no
PyTorch3D): the summed fields ``sum_k f_k g_k`` and ``sum_k (f_k) c_k g_k`` are evaluated at the centres of a
``grid_size``^3 grid spanning the Gaussians' 3-sigma box (per batch element, per axis; the box is detached, a
discretisation choice), and every sample reads them with trilinear ``F.grid_sample`` (zero outside the box);
clipping and normalisation (Eq. 6) then act on the interpolated sums. The grid costs O(grid_size^3 K) once per
template instead of O(rays samples K); its interpolation error shrinks as the cells shrink below the parts'
standard deviations (tested against the analytic path).
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def whitening(rotation: torch.Tensor, scale: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``A = diag(1 / (s * sigma)) R^T``: the whitening matrix of an axis-aligned Gaussian with standard deviations
    ``sigma`` (..., 3), scaled per axis by ``scale`` (..., 3) and then rotated by ``rotation`` (..., 3, 3).

    The Gaussian's covariance is ``H diag(sigma^2) H^T`` with ``H = R diag(s)``; ``q = |A (x - mu)|^2``.
    """
    return rotation.transpose(-1, -2) / (scale * sigma).unsqueeze(-1)


def pixel_rays(K: torch.Tensor, height: int, width: int, image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, height*width, 3) unit-depth ray directions ``K^-1 (u, v, 1)`` through pixel centres, row-major.

    ``K`` (B, 3, 3) are the intrinsics of an image of ``image_size = (H, W)`` px (default: ``(height, width)``);
    rendering at another resolution samples the same field of view (pixel centres of the render grid in the
    image's pixel units).
    """
    if K.dim() != 3 or K.shape[-2:] != (3, 3):
        raise ValueError(f"pixel_rays: K must be (B, 3, 3) intrinsics, got {tuple(K.shape)}")
    H, W = image_size or (height, width)
    ys = (torch.arange(height, device=K.device, dtype=torch.float32) + 0.5) * (H / height)
    xs = (torch.arange(width, device=K.device, dtype=torch.float32) + 0.5) * (W / width)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pix = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(-1, 3)  # (R, 3)
    return pix @ torch.linalg.inv(K.float()).transpose(-1, -2)  # (B, R, 3)


def _march_chunk(dirs, a, A, depths, fields, normalised: bool, parts_per_ray: int | None = None):
    """One chunk of rays: (B, r, 3) dirs -> (B, r, C) features, (B, r) opacity. See the module docstring.

    ``fields`` (B, K, 1 + C) holds each part's occupancy and colour (times the occupancy when ``normalised``), so
    one batched matmul sums both fields. ``parts_per_ray``: keep only the parts each ray passes closest to.
    """
    b = torch.einsum("bkij,brj->brki", A, dirs)  # (B, r, K, 3)
    bb = b.square().sum(-1).clamp(min=1e-12)  # (B, r, K)
    ab = (b * a.unsqueeze(1)).sum(-1)  # (B, r, K)
    z0 = -ab / bb
    q_min = (a.square().sum(-1).unsqueeze(1) - ab.square() / bb).clamp(min=0)
    cull = parts_per_ray is not None and parts_per_ray < q_min.shape[-1]
    if cull:  # the parts with the smallest q_min along each ray; the others are below exp(-q_min / 2) everywhere
        idx = q_min.topk(parts_per_ray, dim=-1, largest=False).indices  # (B, r, k)
        bb, z0, q_min = bb.gather(-1, idx), z0.gather(-1, idx), q_min.gather(-1, idx)
        fields = fields.unsqueeze(1).expand(-1, idx.shape[1], -1, -1)
        fields = fields.gather(2, idx.unsqueeze(-1).expand(-1, -1, -1, fields.shape[-1]))  # (B, r, k, 1 + C)
    # (B, r, S, K): every part's Gaussian exp(-q / 2) at every sample of every ray
    diff = depths[:, None, :, None] - z0.unsqueeze(2)
    g = torch.exp(torch.addcmul((-0.5 * q_min).unsqueeze(2), (-0.5 * bb).unsqueeze(2), diff.square()))
    summed = g @ fields if cull else torch.einsum("brsk,bkc->brsc", g, fields)  # Eq. 6
    return _composite(summed, normalised)


def _composite(summed: torch.Tensor, normalised: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, r, S, 1 + C) summed occupancy and colour fields at the samples -> (B, r, C) features, (B, r) opacity."""
    f = summed[..., 0].clamp(max=1.0)  # (B, r, S)
    if normalised:
        c = summed[..., 1:] / summed[..., :1].clamp(min=1e-12)  # (B, r, S, C)
    else:
        c = summed[..., 1:].clamp(max=1.0)
    # Eq. 4: exclusive transmittance; Eq. 3: weights; Eq. 2: colour
    trans = torch.cumprod(torch.cat([torch.ones_like(f[..., :1]), 1.0 - f[..., :-1]], dim=-1), dim=-1)
    w = f * trans
    return torch.einsum("brs,brsc->brc", w, c), w.sum(-1)


def grid_volume(means: torch.Tensor, whiten: torch.Tensor, fields: torch.Tensor, grid_size: int):
    """The summed fields on a regular grid (``field="grid"``, module docstring).

    ``means`` (B, K, 3), ``whiten`` (B, K, 3, 3), ``fields`` (B, K, F) -> volume (B, F, G, G, G) (depth = z,
    height = y, width = x, as ``F.grid_sample`` reads it) and the box corners ``lo``, ``hi`` (B, 3).
    """
    B, G = means.shape[0], grid_size
    prec = whiten.transpose(-1, -2) @ whiten  # (B, K, 3, 3) precision
    sd = torch.linalg.inv(prec).diagonal(dim1=-2, dim2=-1).clamp(min=0).sqrt()
    lo, hi = (means - 3 * sd).amin(1).detach(), (means + 3 * sd).amax(1).detach()  # (B, 3)
    centre = (lo + hi) / 2
    t = (torch.arange(G, device=means.device, dtype=means.dtype) + 0.5) / G
    axes = (lo - centre)[:, None] + (hi - lo)[:, None] * t[None, :, None]  # (B, G, 3), box-centred
    x = axes[..., 0][:, None, None, :].expand(B, G, G, G)
    y = axes[..., 1][:, None, :, None].expand(B, G, G, G)
    z = axes[..., 2][:, :, None, None].expand(B, G, G, G)
    pts = torch.stack([x, y, z], dim=-1).reshape(B, -1, 3)  # (B, N, 3) in (z, y, x) raster order
    # q = p^T P p - 2 p^T P mu + mu^T P mu as three matmuls (no (N, K, 3) tensor)
    mu = means - centre[:, None]
    iu = torch.triu_indices(3, 3, device=means.device)
    pair = pts[..., iu[0]] * pts[..., iu[1]]  # (B, N, 6)
    sym = prec[..., iu[0], iu[1]] * (2.0 - (iu[0] == iu[1]).to(prec.dtype))  # off-diagonals twice
    Pmu = (prec @ mu.unsqueeze(-1)).squeeze(-1)  # (B, K, 3)
    q = pair @ sym.transpose(1, 2) - 2 * pts @ Pmu.transpose(1, 2) + (mu * Pmu).sum(-1).unsqueeze(1)
    summed = torch.exp(-0.5 * q.clamp(min=0)) @ fields  # (B, N, F)
    return summed.transpose(1, 2).reshape(B, -1, G, G, G), lo, hi


def _grid_chunk(dirs, volume, lo, hi, depths, normalised: bool):
    """One chunk of rays through a :func:`grid_volume`: trilinear samples, then :func:`_composite`."""
    p = dirs[:, :, None, :] * depths[:, None, :, None]  # (B, r, S, 3)  Eq. 1
    coords = 2 * (p - lo[:, None, None]) / (hi - lo)[:, None, None] - 1
    out = torch.nn.functional.grid_sample(volume, coords.unsqueeze(-2), mode="bilinear", padding_mode="zeros",
                                          align_corners=False)  # (B, F, r, S, 1)  # fmt: skip
    return _composite(out.squeeze(-1).permute(0, 2, 3, 1), normalised)


def render_gaussians(
    means: torch.Tensor,
    whiten: torch.Tensor,
    occupancy: torch.Tensor,
    colours: torch.Tensor,
    K: torch.Tensor,
    size: tuple[int, int],
    near: torch.Tensor | float,
    far: torch.Tensor | float,
    num_samples: int = 64,
    image_size: tuple[int, int] | None = None,
    background: torch.Tensor | float | None = None,
    chunk_rays: int = 1024,
    recompute: bool | None = None,
    colour_mode: str = "normalised",
    parts_per_ray: int | None = None,
    field: str = "analytic",
    grid_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render the Gaussians; see the module docstring for the equations.

    Args:
        means: (B, K, 3) centres in the camera frame (any length unit, the same as ``near``/``far``).
        whiten: (B, K, 3, 3) whitening matrices (:func:`whitening`).
        occupancy: (K,) or (B, K) peak occupancies f_k (>= 0; the summed field is clipped to 1).
        colours: (K, C) or (B, K, C) colours c_k (>= 0; the summed field is clipped to 1).
        K: (B, 3, 3) intrinsics of an image of ``image_size`` (default ``size``).
        size: (height, width) of the render.
        near, far: (B,) or scalar depth range of the samples (z along the optical axis).
        num_samples: samples per ray.
        background: colour behind the volume, scalar or (C,) or (B, C); None leaves it black (the features
            are then premultiplied by the opacity).
        chunk_rays: rays per chunk (bounds memory; see :func:`working_set_bytes`).
        colour_mode: ``"normalised"`` or ``"sum"`` (module docstring).
        parts_per_ray: evaluate, on each ray, only the parts with the smallest Mahalanobis distance to the ray's
            line (None: all, exact). A dropped part's Gaussian is at most exp(-q_min / 2) at every sample of
            that ray, q_min >= the largest kept one's; a speed knob for templates whose rays pass near few parts.
        field: ``"analytic"`` (the Gaussians evaluated exactly at the samples) or ``"grid"`` (rasterised on a
            ``grid_size``^3 grid and read with trilinear ``grid_sample``, as the paper does; ``parts_per_ray`` unused).
        recompute: recompute each chunk in the backward pass instead of storing its intermediates; default:
            when gradients are enabled.

    Returns:
        features (B, C, H, W) and opacity (B, 1, H, W).
    """
    if means.dim() != 3 or means.shape[-1] != 3:
        raise ValueError(f"render_gaussians: means must be (B, K, 3), got {tuple(means.shape)}")
    B, n_parts = means.shape[:2]
    if whiten.shape != (B, n_parts, 3, 3):
        raise ValueError(f"render_gaussians: whiten must be {(B, n_parts, 3, 3)}, got {tuple(whiten.shape)}")
    if num_samples < 1 or chunk_rays < 1:
        raise ValueError(f"render_gaussians: num_samples and chunk_rays must be >= 1, got {num_samples}, {chunk_rays}")
    if field not in ("analytic", "grid") or grid_size < 2:
        raise ValueError(f"render_gaussians: field must be 'analytic' or 'grid' and grid_size >= 2, got {field!r}, "
                         f"{grid_size}")  # fmt: skip
    if colour_mode not in ("normalised", "sum"):
        raise ValueError(f"render_gaussians: colour_mode must be 'normalised' or 'sum', got {colour_mode!r}")
    height, width = size
    with torch.autocast(means.device.type, enabled=False):
        means, whiten = means.float(), whiten.float()
        occupancy = occupancy.float().expand(B, n_parts)
        colours = colours.float()
        colours = colours.expand(B, *colours.shape[-2:]) if colours.dim() == 2 else colours
        if colours.shape[:2] != (B, n_parts):
            raise ValueError(f"render_gaussians: colours must be (K, C) or (B, K, C) with K={n_parts}, "
                             f"got {tuple(colours.shape)}")  # fmt: skip
        near = torch.as_tensor(near, dtype=torch.float32, device=means.device).expand(B)
        far = torch.as_tensor(far, dtype=torch.float32, device=means.device).expand(B)
        steps = (torch.arange(num_samples, device=means.device, dtype=torch.float32) + 0.5) / num_samples
        depths = near[:, None] + (far - near)[:, None] * steps  # (B, S)  Eq. 1
        dirs = pixel_rays(K, height, width, image_size)
        a = -(whiten @ means.unsqueeze(-1)).squeeze(-1)  # (B, K, 3)
        normalised = colour_mode == "normalised"
        fields = torch.cat([occupancy.unsqueeze(-1), colours * occupancy.unsqueeze(-1) if normalised else colours], -1)
        if recompute is None:
            recompute = torch.is_grad_enabled() and any(
                t.requires_grad for t in (means, whiten, occupancy, colours, near, far)
            )
        if field == "grid":
            volume, lo, hi = grid_volume(means, whiten, fields, grid_size)
            march, rest = _grid_chunk, (volume, lo, hi, depths, normalised)
        else:
            march, rest = _march_chunk, (a, whiten, depths, fields, normalised, parts_per_ray)
        feats, alphas = [], []
        for start in range(0, dirs.shape[1], chunk_rays):
            args = (dirs[:, start : start + chunk_rays], *rest)
            if recompute:
                feat, alpha = checkpoint(march, *args, use_reentrant=False)
            else:
                feat, alpha = march(*args)
            feats.append(feat)
            alphas.append(alpha)
        feat = torch.cat(feats, dim=1).transpose(1, 2).reshape(B, -1, height, width)
        alpha = torch.cat(alphas, dim=1).reshape(B, 1, height, width)
        if background is not None:
            bg = torch.as_tensor(background, dtype=feat.dtype, device=feat.device)
            bg = bg.reshape(-1, feat.shape[1], 1, 1) if bg.dim() >= 1 else bg
            feat = feat + (1.0 - alpha) * bg
    return feat, alpha


def working_set_bytes(batch: int, chunk_rays: int, num_samples: int, num_parts: int, channels: int = 3) -> int:
    """Upper bound (bytes) of the float32 intermediates :func:`_march_chunk` holds at once for one chunk.

    Per (ray, sample, part): q, g and their autograd buffers (4 tensors); per (ray, sample): f, 1 - f, the
    transmittance, the weights and C colour channels, twice for autograd; per (ray, part): the 3-vector b and
    4 scalars. A factor 2 covers the allocator's transient copies (cat, clamp). The full render adds only its
    outputs, (B, C + 1, H, W).
    """
    rsk = 4 * num_samples * num_parts
    rs = 2 * (4 + channels) * num_samples
    rk = 7 * num_parts
    return 2 * 4 * batch * chunk_rays * (rsk + rs + rk)


__all__ = ["grid_volume", "pixel_rays", "render_gaussians", "whitening", "working_set_bytes"]
