"""The Gaussian-volume ray marcher (methods/nn/gaussian_render.py) against closed forms."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from methods.nn.gaussian_render import pixel_rays, render_gaussians, whitening, working_set_bytes

ROOT = Path(__file__).resolve().parents[1]


def _one_gaussian(centre, sigma, occupancy, colour=(0.2, 0.6, 1.0)):
    means = torch.tensor([[centre]], dtype=torch.float32)
    whiten = whitening(torch.eye(3).expand(1, 1, 3, 3), torch.ones(1, 1, 3), torch.full((1, 1, 3), sigma))
    return means, whiten, torch.tensor([occupancy]), torch.tensor([colour])


def _intrinsics(f, cx, cy):
    return torch.tensor([[[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]]])


def _dense_limit_opacity(occupancy, sigma, offset, ray_norm, dz):
    """1 - T through one isotropic Gaussian, with -log T = f0 exp(-offset^2 / 2 sigma^2) sqrt(2 pi) sigma / (|d| dz)
    (dense samples, low occupancy: log(1 - f) ~ -f, the sum over samples ~ the integral along the ray)."""
    return 1 - math.exp(-occupancy * math.exp(-0.5 * (offset / sigma) ** 2) * math.sqrt(2 * math.pi) * sigma
                        / (ray_norm * dz))  # fmt: skip


@pytest.mark.parametrize("pixel_dir, centre", [((0.0, 0.0), (0.08, 0.0, 3.0)), ((0.2, -0.1), (0.5, -0.35, 2.8))])
def test_transmittance_through_one_gaussian_matches_the_closed_form(pixel_dir, centre):
    # one pixel whose centre (0.5, 0.5) looks along d = (dx, dy, 1): cx = 0.5 - f dx
    f = 200.0
    K = _intrinsics(f, 0.5 - f * pixel_dir[0], 0.5 - f * pixel_dir[1])
    d = torch.tensor([pixel_dir[0], pixel_dir[1], 1.0])
    assert torch.allclose(pixel_rays(K, 1, 1)[0, 0], d)
    sigma, occ, samples, near, far = 0.1, 2e-3, 4000, 1.5, 4.5
    means, whiten, o, c = _one_gaussian(centre, sigma, occ)
    _, alpha = render_gaussians(means, whiten, o, c, K, (1, 1), near, far, samples)
    mu = torch.tensor(centre)
    offset = float(torch.linalg.cross(mu, d).norm() / d.norm())
    expected = _dense_limit_opacity(occ, sigma, offset, float(d.norm()), (far - near) / samples)
    assert 0.05 < expected < 0.9
    assert float(alpha) == pytest.approx(expected, rel=2e-3)
    # the discrete product of Eq. 4 itself, sample by sample
    z = near + (torch.arange(samples, dtype=torch.float64) + 0.5) * (far - near) / samples
    p = z[:, None] * d.double()
    fj = occ * torch.exp(-0.5 * (p - mu.double()).square().sum(-1) / sigma**2)
    assert float(alpha) == pytest.approx(float(1 - torch.prod(1 - fj)), rel=1e-4)


def test_an_empty_volume_renders_the_background():
    K = _intrinsics(50.0, 8.0, 6.0)
    means, whiten, _, c = _one_gaussian((0.0, 0.0, 3.0), 0.3, 0.0)
    bg = torch.tensor([0.25, 0.5, 0.75])
    feat, alpha = render_gaussians(means, whiten, torch.tensor([0.0]), c, K, (12, 16), 1.0, 5.0, 32, background=bg)
    assert feat.shape == (1, 3, 12, 16) and alpha.shape == (1, 1, 12, 16)
    assert torch.all(alpha == 0) and torch.allclose(feat, bg.view(1, 3, 1, 1).expand_as(feat))
    # an opaque Gaussian behind the far plane is outside the samples: background too
    means, whiten, o, c = _one_gaussian((0.0, 0.0, 9.0), 0.3, 1.0)
    feat, alpha = render_gaussians(means, whiten, o, c, K, (12, 16), 1.0, 5.0, 32, background=bg)
    assert float(alpha.max()) < 1e-6 and torch.allclose(feat, bg.view(1, 3, 1, 1).expand_as(feat), atol=1e-6)
    # and in front of it, the same Gaussian covers the middle pixels with its colour
    feat, alpha = render_gaussians(means, whiten, o, c, K, (12, 16), 7.0, 11.0, 64, background=bg)
    assert float(alpha[0, 0, 6, 8]) > 0.99 and torch.allclose(feat[0, :, 6, 8], c[0], atol=0.02)
    # the literal sum of Eq. 6 darkens it: the ray stops on the rim, where the Gaussian (and its colour) is small
    feat, _ = render_gaussians(means, whiten, o, c, K, (12, 16), 7.0, 11.0, 64, background=bg, colour_mode="sum")
    assert torch.all(feat[0, :, 6, 8] < 0.5 * c[0])


def test_a_spheres_silhouette_radius():
    """An isotropic Gaussian on the optical axis: the opacity-0.5 silhouette is a disc whose radius follows from the
    closed form of the transmittance along each ray (offset Z sin(theta), |d| = 1 / cos(theta), tan(theta) = r / f)."""
    f, size, Z, sigma, occ, near, far, samples = 150.0, 64, 3.0, 0.3, 0.01, 1.5, 4.5, 1200
    dz = (far - near) / samples
    K = _intrinsics(f, size / 2, size / 2)
    means, whiten, o, c = _one_gaussian((0.0, 0.0, Z), sigma, occ)
    _, alpha = render_gaussians(means, whiten, o, c, K, (size, size), near, far, samples)

    def opacity(r):
        theta = math.atan(r / f)
        return _dense_limit_opacity(occ, sigma, Z * math.sin(theta), 1 / math.cos(theta), dz)

    lo, hi = 0.0, size / 2
    for _ in range(60):  # bisection: opacity falls with r
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if opacity(mid) > 0.5 else (lo, mid)
    expected = (lo + hi) / 2
    assert 15 < expected < 30
    measured = math.sqrt(float((alpha > 0.5).sum()) / math.pi)
    assert measured == pytest.approx(expected, abs=0.3)
    # the disc is centred on the principal point
    ys, xs = torch.nonzero(alpha[0, 0] > 0.5, as_tuple=True)
    assert float(xs.float().mean() + 0.5) == pytest.approx(size / 2, abs=0.05)
    assert float(ys.float().mean() + 0.5) == pytest.approx(size / 2, abs=0.05)


def _template_scene():
    """The 16-part template with random rotations (gradients on), and a camera that frames it in a 24 px image."""
    from methods.neural_rendering import GaussianTemplate

    torch.manual_seed(0)
    tpl = GaussianTemplate()
    B, size = 2, 24
    rot = (0.3 * torch.randn(B, 16, 3)).requires_grad_()
    K = _intrinsics(size * 2.2, size / 2, size / 2).expand(B, 3, 3)
    return tpl, rot, K, B, size


def test_culling_parts_per_ray_is_exact_with_all_parts_and_close_with_the_nearest():
    tpl, rot, K, B, size = _template_scene()
    out = {}
    for k in (None, 16, 6):
        posed = tpl.pose(rot, torch.ones(B, 16, 3), torch.tensor([0.0, 0.0, 4.5]).expand(B, 3))
        feat, alpha = render_gaussians(posed["centres"], posed["whiten"], tpl.occupancy, tpl.colours, K, (size, size),
                                       3.3, 5.7, 24, background=1.0, parts_per_ray=k)  # fmt: skip
        out[k] = (feat, torch.autograd.grad(feat.sum(), rot)[0])
    assert torch.allclose(out[16][0], out[None][0], atol=1e-6)
    assert (out[16][1] - out[None][1]).abs().max() <= 1e-4 * out[None][1].abs().max()
    assert (out[6][0] - out[None][0]).abs().max() < 0.03  # colours in [0, 1]
    assert (out[6][1] - out[None][1]).abs().max() < 0.05 * out[None][1].abs().max()


def test_the_grid_path_converges_to_the_analytic_render_with_gradients():
    tpl, rot, K, B, size = _template_scene()
    posed = tpl.pose(rot, torch.ones(B, 16, 3), torch.tensor([0.0, 0.0, 4.5]).expand(B, 3))
    args = (posed["centres"], posed["whiten"], tpl.occupancy, tpl.colours, K, (size, size), 3.3, 5.7, 32)
    ref = torch.cat(render_gaussians(*args, background=1.0), dim=1)
    err = {}
    for g in (16, 96):
        out = torch.cat(render_gaussians(*args, background=1.0, field="grid", grid_size=g), dim=1)
        err[g] = (out - ref).abs()
    # measured: mean 0.0052 / 0.00028, max 0.155 / 0.015 at 16 / 96 cells (colours and opacity in [0, 1])
    assert err[96].mean() < 1e-3 and err[96].max() < 0.05
    assert err[96].mean() < 0.1 * err[16].mean()
    grad = torch.autograd.grad(render_gaussians(*args, field="grid", grid_size=32)[1].sum(), rot)[0]
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_chunking_and_recomputation_do_not_change_the_image_or_its_gradients():
    torch.manual_seed(0)
    B, K_parts = 2, 5
    means = (torch.randn(B, K_parts, 3) * 0.3 + torch.tensor([0.0, 0.0, 3.0])).requires_grad_()
    rot = torch.linalg.qr(torch.randn(B, K_parts, 3, 3))[0]
    sig = (torch.rand(B, K_parts, 3) * 0.2 + 0.05).requires_grad_()
    occ = torch.rand(K_parts).requires_grad_()
    col = torch.rand(K_parts, 3).requires_grad_()
    K = _intrinsics(40.0, 10.0, 8.0).expand(B, 3, 3)
    outs = []
    for chunk, rec in ((10_000, False), (37, True)):
        feat, alpha = render_gaussians(means, whitening(rot, torch.ones_like(sig), sig), occ, col, K, (16, 20),
                                       2.0, 4.0, 24, background=0.5, chunk_rays=chunk, recompute=rec)  # fmt: skip
        grads = torch.autograd.grad(
            (feat * torch.linspace(0, 1, 20)).sum() + alpha.square().sum(), (means, sig, occ, col)
        )
        outs.append((feat, alpha, grads))
    (f1, a1, g1), (f2, a2, g2) = outs
    assert torch.allclose(f1, f2, atol=1e-6) and torch.allclose(a1, a2, atol=1e-6)
    for x, y in zip(g1, g2):
        assert (x - y).abs().max() <= 1e-3 * x.abs().max() and x.abs().sum() > 0  # float32 sums in another order


_MEMORY_PROBE = """
import resource, torch
from methods.nn.gaussian_render import render_gaussians
torch.manual_seed(0)
B, K = 1, 16
means = (torch.randn(B, K, 3) * 0.3 + torch.tensor([0, 0, 3.0])).requires_grad_()
whiten = (torch.eye(3) * 10).expand(B, K, 3, 3).clone().requires_grad_()
occ = torch.full((K,), 0.8, requires_grad=True)
col = torch.rand(K, 3, requires_grad=True)
Kin = torch.tensor([[150.0, 0, 64], [0, 150.0, 64], [0, 0, 1]]).expand(B, 3, 3)
def run(size, chunk):
    f, a = render_gaussians(means, whiten, occ, col, Kin, size, 2.0, 4.0, 64, chunk_rays=chunk)
    (f.sum() + a.sum()).backward()
run((8, 8), 64)  # warm-up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run((128, 128), 1024)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_memory_at_128px_with_64_samples_stays_under_the_stated_bound():
    """Forward + backward of a 128 x 128 render, 64 samples per ray, 16 parts, chunks of 1024 rays recomputed in the
    backward: the process's peak memory grows by less than 64 MB (the whole (rays, samples, parts) tensor alone would
    be 64 MB, and unchunked autograd keeps several: ~270 MB measured). Measured in a fresh process (peak RSS)."""
    bound_mb = 64
    assert working_set_bytes(1, 1024, 64, 16) < bound_mb * 2**20
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=1800, check=True)  # fmt: skip
    grew_mb = float(out.stdout.strip().splitlines()[-1])
    assert grew_mb < bound_mb, f"peak memory grew by {grew_mb:.1f} MB"


def test_bad_shapes_fail_with_clear_messages():
    means, whiten, o, c = _one_gaussian((0.0, 0.0, 3.0), 0.3, 0.5)
    K = _intrinsics(50.0, 4.0, 4.0)
    with pytest.raises(ValueError, match="means must be"):
        render_gaussians(means[0], whiten, o, c, K, (8, 8), 1.0, 5.0)
    with pytest.raises(ValueError, match="whiten must be"):
        render_gaussians(means, whiten[:, :, :2], o, c, K, (8, 8), 1.0, 5.0)
    with pytest.raises(ValueError, match="field must be"):
        render_gaussians(means, whiten, o, c, K, (8, 8), 1.0, 5.0, field="voxels")
    with pytest.raises(ValueError, match="K must be"):
        render_gaussians(means, whiten, o, c, K[0], (8, 8), 1.0, 5.0)
