import math

import pytest
import torch

import hold  # noqa: F401  (import-order side effects)
from hold.rendering import (
    LaplaceDensity,
    NeusDensity,
    alpha_to_density,
    laplace_density,
    laplace_interval_density,
    neus_alpha,
)

F64 = torch.float64


@pytest.mark.parametrize("beta", [1e-3, 1e-2, 0.1])
def test_laplace_symmetry_identity_and_known_values(beta):
    s = torch.linspace(-1.0, 1.0, 2001, dtype=F64)
    sig = laplace_density(s, beta)
    torch.testing.assert_close(sig + laplace_density(-s, beta), torch.full_like(s, 1 / beta), rtol=1e-14, atol=0)
    # the surface is at half the interior density; outside is 0.5/beta exp(-s/beta)
    assert laplace_density(torch.zeros((), dtype=F64), beta).item() == pytest.approx(0.5 / beta, rel=1e-14)
    out = s > 0
    torch.testing.assert_close(sig[out], 0.5 / beta * torch.exp(-s[out] / beta), rtol=1e-12, atol=1e-300)
    # inside is dense: density never increases with the sdf
    assert (sig[1:] <= sig[:-1]).all()


def test_laplace_approaches_indicator_as_beta_goes_to_zero():
    s = torch.tensor([-0.05, -0.01, 0.01, 0.05])
    indicator = (s < 0).float()
    errors = [(b * laplace_density(s, b) - indicator).abs().max().item() for b in (1e-2, 3e-3, 1e-3)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4  # 0.5 exp(-10) = 2.3e-5
    # fp32 stays finite for extreme sdf / beta (only exp of non-positive numbers)
    big = laplace_density(torch.tensor([-1e6, -1.0, 0.0, 1.0, 1e6]), 1e-6)
    assert torch.isfinite(big).all()
    assert big[0].item() == pytest.approx(1e6) and big[-1].item() == 0.0


def test_laplace_gradients_including_on_the_surface():
    s = torch.zeros(1, dtype=F64, requires_grad=True)
    beta = 0.02
    laplace_density(s, beta).sum().backward()
    # d/ds (1/beta) Psi(-s) = -1/(2 beta^2) at s = 0 (abs() would give 0 there)
    assert s.grad.item() == pytest.approx(-0.5 / beta**2, rel=1e-12)
    x = torch.tensor([-0.03, -0.004, 0.002, 0.05], dtype=F64, requires_grad=True)
    b = torch.tensor(0.01, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(laplace_density, (x, b))


def _quadrature_mean(s0, s1, beta, n=200001):
    u = torch.linspace(0, 1, n, dtype=F64)
    vals = laplace_density(s0 + (s1 - s0) * u, beta)
    return torch.trapezoid(vals, u).item()


@pytest.mark.parametrize("s0,s1", [(0.05, 0.02), (0.03, -0.04), (-0.01, -0.03), (-0.02, 0.01),
                                   (0.004, 0.00400001), (-0.2, 0.3), (-0.5, -0.49)])
def test_interval_density_matches_quadrature(s0, s1):
    beta = 0.01
    got = laplace_interval_density(torch.tensor(s0, dtype=F64), torch.tensor(s1, dtype=F64), beta).item()
    assert got == pytest.approx(_quadrature_mean(s0, s1, beta), rel=1e-7)


def test_interval_density_catches_a_crossing_that_point_samples_miss():
    # knots 10 cm apart straddling a surface, beta 1 mm: point densities are ~0 (outside) and
    # 1/beta (inside); the exact mean is the inside fraction / beta
    beta = 1e-3
    mean = laplace_interval_density(torch.tensor(0.07), torch.tensor(-0.03), beta)
    assert mean.item() == pytest.approx(0.3 / beta, rel=1e-3)
    assert laplace_density(torch.tensor(0.07), beta).item() < 1e-20


def test_laplace_module_beta_parametrization():
    m = LaplaceDensity(beta_init=0.005, beta_min=1e-4)
    assert m.beta.item() == pytest.approx(0.005, rel=1e-6)
    s = torch.linspace(-0.02, 0.02, 9)
    torch.testing.assert_close(m(s), laplace_density(s, 0.005))
    # gradients reach the raw parameter; beta never drops below beta_min
    m(s).sum().backward()
    assert m.raw_beta.grad is not None and m.raw_beta.grad.abs() > 0
    with torch.no_grad():
        m.raw_beta.fill_(-200.0)
    assert m.beta.item() == pytest.approx(1e-4, rel=1e-6) and torch.isfinite(m(s)).all()
    with pytest.raises(ValueError, match="beta_init"):
        LaplaceDensity(beta_init=1e-4, beta_min=1e-3)


def _neus_reference(sdf, cos, dists, inv_s):
    """NeuS's published formula (true cosine, clipped to <= 0)."""
    c = -torch.relu(-cos)
    prev_cdf = torch.sigmoid((sdf - c * dists * 0.5) * inv_s)
    next_cdf = torch.sigmoid((sdf + c * dists * 0.5) * inv_s)
    return ((prev_cdf - next_cdf) / prev_cdf).clip(0.0, 1.0)


def test_neus_alpha_matches_formula_and_is_bounded():
    g = torch.Generator().manual_seed(0)
    sdf = (torch.rand(64, 16, generator=g, dtype=F64) - 0.3) * 0.05
    cos = torch.rand(64, 16, generator=g, dtype=F64) * 2 - 1
    dists = torch.rand(64, 16, generator=g, dtype=F64) * 0.01
    a = neus_alpha(sdf, cos, dists, 200.0)
    torch.testing.assert_close(a, _neus_reference(sdf, cos, dists, 200.0), rtol=1e-9, atol=1e-12)
    # back-facing sections (cos > 0) are transparent; deep inside stays finite (no 0/0)
    assert (a[cos > 0] == 0).all()
    extreme = neus_alpha(torch.tensor([-1e3, 1e3, 0.0]), torch.full((3,), -1.0), torch.full((3,), 0.01), 1e4)
    assert torch.isfinite(extreme).all() and ((extreme >= 0) & (extreme <= 1)).all()
    assert extreme[0].item() == pytest.approx(1.0) and extreme[1].item() == 0.0


def test_alpha_to_density_round_trip():
    alpha = torch.tensor([0.0, 1e-6, 0.3, 0.9, 0.999, 1.0], dtype=F64)
    dists = torch.tensor([0.01, 0.02, 0.005, 0.01, 0.1, 0.01], dtype=F64)
    sigma = alpha_to_density(alpha, dists)
    assert torch.isfinite(sigma).all()
    torch.testing.assert_close(1 - torch.exp(-sigma[:-1] * dists[:-1]), alpha[:-1], rtol=1e-9, atol=1e-15)
    assert 1 - math.exp(-sigma[-1].item() * 0.01) > 1 - 1e-12  # alpha = 1 stays (numerically) opaque


def test_neus_module():
    m = NeusDensity(inv_s_init=200.0)
    assert m.inv_s.item() == pytest.approx(200.0, rel=1e-6)
    sdf = torch.linspace(-0.01, 0.01, 8)[None]
    cos, dists = -torch.ones_like(sdf), torch.full_like(sdf, 0.002)
    sigma = m(sdf, cos, dists)
    torch.testing.assert_close(sigma, alpha_to_density(neus_alpha(sdf, cos, dists, 200.0), dists))
    sigma.sum().backward()
    assert m.log_inv_s.grad is not None and torch.isfinite(m.log_inv_s.grad) and m.log_inv_s.grad != 0
