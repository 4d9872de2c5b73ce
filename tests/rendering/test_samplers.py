import pytest
import torch

import hold  # noqa: F401  (import-order side effects)
from hold.rendering import (
    composite,
    laplace_density,
    laplace_guide_weights,
    ray_sphere_intersect,
    sample_pdf,
    sdf_guided_samples,
    stratified_samples,
)


def is_sorted(t):
    return bool((t[:, 1:] >= t[:, :-1]).all())


def test_stratified_midpoints_and_jitter_stay_in_their_bins():
    near = torch.tensor([0.0, 1.0, 2.5, 0.0])
    far = torch.tensor([1.0, 3.0, 2.75, 0.0])  # the last ray is a miss (near = far = 0)
    n = 8
    t = stratified_samples(near, far, n, perturb=False)
    expected = near[:, None] + (far - near)[:, None] * (torch.arange(n) + 0.5) / n
    torch.testing.assert_close(t, expected)
    g = torch.Generator().manual_seed(0)
    tj = stratified_samples(near, far, n, perturb=True, generator=g)
    width = (far - near)[:, None] / n
    lo = near[:, None] + width * torch.arange(n)
    assert ((tj >= lo - 1e-6) & (tj <= lo + width + 1e-6)).all() and is_sorted(tj)
    assert not torch.allclose(tj[:3], t[:3])  # actually jittered
    assert torch.equal(tj[3], torch.zeros(n))
    again = stratified_samples(near, far, n, perturb=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tj, again)


def _histogram(t, edges):
    return torch.histogram(t.flatten().double(), bins=edges.double())[0] / t.numel()


def test_sample_pdf_concentrates_where_the_weights_are():
    R, B = 64, 10
    bins = torch.linspace(0.0, 10.0, B + 1).expand(R, B + 1)
    w = torch.zeros(R, B)
    w[:, 3], w[:, 7] = 0.1, 0.3  # 1 : 3, scale irrelevant
    for deterministic, tol in ((True, 2e-3), (False, 2e-2)):
        t = sample_pdf(bins, w, 64, deterministic=deterministic, generator=torch.Generator().manual_seed(1))
        assert t.shape == (R, 64) and is_sorted(t)
        h = _histogram(t, bins[0])
        assert h[3].item() == pytest.approx(0.25, abs=tol) and h[7].item() == pytest.approx(0.75, abs=tol)
        assert h.sum() == pytest.approx(1.0) and (h[[0, 1, 2, 4, 5, 6, 8, 9]] < 0.01).all()
    # within a bin the samples are spread uniformly: deterministic ones at the CDF midpoints
    t = sample_pdf(bins[:1], torch.tensor([[0, 0, 0, 1.0, 0, 0, 0, 0, 0, 0]]), 4, deterministic=True, uniform_mix=0.0)
    torch.testing.assert_close(t, torch.tensor([[3.125, 3.375, 3.625, 3.875]]))


def test_sample_pdf_is_deterministic_and_survives_degenerate_weights():
    g = torch.Generator().manual_seed(2)
    bins = torch.sort(torch.rand(16, 33, generator=g), dim=1)[0]
    w = torch.rand(16, 32, generator=g)
    torch.manual_seed(0)
    a = sample_pdf(bins, w, 24, deterministic=True)
    torch.manual_seed(123)
    b = sample_pdf(bins, w, 24, deterministic=True)
    assert torch.equal(a, b)
    # all-zero, negative and NaN weights, zero-length bins: finite, sorted, inside the bins
    w_bad = torch.zeros(4, 32)
    w_bad[1] = -1.0
    w_bad[2, 5] = float("nan")
    bins_bad = bins[:4].clone()
    bins_bad[3] = 0.5
    t = sample_pdf(bins_bad, w_bad, 16, deterministic=True)
    assert torch.isfinite(t).all() and is_sorted(t)
    assert ((t >= bins_bad[:, :1]) & (t <= bins_bad[:, -1:])).all()
    uniform = sample_pdf(torch.linspace(0, 1, 5)[None], torch.zeros(1, 4), 4, deterministic=True)
    torch.testing.assert_close(uniform, torch.tensor([[0.125, 0.375, 0.625, 0.875]]))


def test_guide_weights_find_a_crossing_between_far_apart_knots():
    # plane at t = 1.234 (sdf = z - t), knots every 10 cm, beta 1 mm: the guide's expected
    # termination is within one sub-bin (1.25 cm) of the plane; point-sampled Laplace weights
    # put it at the first knot inside (up to 10 cm off)
    z, beta = 1.234, 1e-3
    t = torch.linspace(0.0, 3.0, 31)[None]
    bins, w = laplace_guide_weights(t, z - t, beta, n_subdivisions=8)
    assert bins.shape == (1, 30 * 8 + 1) and w.sum().item() == pytest.approx(1.0, abs=1e-5)
    mid = 0.5 * (bins[:, 1:] + bins[:, :-1])
    assert abs((w * mid).sum().item() - z) < 0.0125
    w_point, _ = composite(t, laplace_density(z - t, beta))
    assert abs((w_point * t).sum().item() - z) > 0.05


def _sphere_rays(R=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(R, 3, generator=g) * 0.06
    d[:, 2] = 1.0
    d = d / d.norm(dim=-1, keepdim=True)
    o = torch.zeros(R, 3)
    c, r = torch.tensor([0.0, 0.0, 1.0]), 0.1

    def sdf(t):
        return (o[:, None] + t[..., None] * d[:, None] - c).norm(dim=-1) - r

    def sdf_fn(t):  # what the sampler gets: records that it runs without autograd
        calls.append(torch.is_grad_enabled())
        return sdf(t)

    calls = []
    t_near, t_far, _ = ray_sphere_intersect(o, d, c, 2 * r)  # node bounding sphere
    hit = ray_sphere_intersect(o, d, c, r)[2]  # rays that hit the surface
    return t_near, t_far, sdf_fn, calls, hit, sdf


@pytest.mark.parametrize("perturb,n_rounds", [(False, 1), (True, 1), (True, 2)])
def test_sdf_guided_samples_concentrate_near_a_sphere(perturb, n_rounds):
    t_near, t_far, sdf_fn, calls, hit, sdf = _sphere_rays()
    assert 50 < hit.sum() < 256
    n_c, n_i, beta = 32, 32, 0.003
    t = sdf_guided_samples(t_near, t_far, sdf_fn, n_c, n_i, beta, n_rounds=n_rounds, perturb=perturb,
                           generator=torch.Generator().manual_seed(5))
    assert t.shape == (256, n_c + n_i) and is_sorted(t) and not t.requires_grad
    assert ((t >= t_near[:, None] - 1e-6) & (t <= t_far[:, None] + 1e-6)).all()
    # sdf_fn runs under no_grad, once per round that still needs it (coarse + n_rounds - 1)
    assert calls == [False] * n_rounds
    coarse = stratified_samples(t_near, t_far, n_c, perturb, generator=torch.Generator().manual_seed(5))
    near_surface = (sdf(t).abs() < 3 * beta)[hit].sum(1)
    near_coarse = (sdf(coarse).abs() < 3 * beta)[hit].sum(1)
    importance_near = (near_surface - near_coarse).float()
    assert importance_near.mean() > 0.8 * n_i  # most importance samples within 3 beta
    # the same budget without guidance (all stratified) puts less than half as many there,
    # counting both the entry and the exit surface
    plain = stratified_samples(t_near, t_far, n_c + n_i, perturb=False)
    assert (sdf(plain).abs() < 3 * beta)[hit].sum(1).float().mean() < 0.5 * near_surface.float().mean()


def test_sdf_guided_samples_deterministic_and_misses():
    t_near, t_far, sdf_fn, _, _, _ = _sphere_rays(64, seed=1)
    a = sdf_guided_samples(t_near, t_far, sdf_fn, 16, 16, 0.005, perturb=False)
    b = sdf_guided_samples(t_near, t_far, sdf_fn, 16, 16, 0.005, perturb=False)
    assert torch.equal(a, b)
    zeros = torch.zeros(3)
    t = sdf_guided_samples(zeros, zeros, lambda t: torch.ones_like(t), 8, 8, 0.005, perturb=True)
    assert torch.equal(t, torch.zeros(3, 16))
    with pytest.raises(ValueError, match="sdf_fn"):
        sdf_guided_samples(t_near, t_far, lambda t: t[:, :1], 8, 8, 0.005)
