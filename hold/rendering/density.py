"""SDF -> volume density: VolSDF's Laplace density and NeuS's logistic section opacity.

Sign convention: sdf < 0 inside, > 0 outside, in metres. Inside is dense.

- VolSDF (Yariv et al. 2021): sigma = (1/beta) * Psi_beta(-sdf), Psi_beta the CDF of a zero-mean
  Laplace distribution with scale beta. sigma -> 1/beta deep inside, 0 far outside,
  1/(2 beta) on the surface.
- NeuS (Wang et al. 2021): opacity of a section from the logistic CDF of the SDF estimated at the
  section's two ends; `alpha_to_density` turns it into a density so NeuS nodes composite with others.
"""
from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn
from torch.nn import functional as F


def _exp_neg_abs_over(sdf: Tensor, beta: float | Tensor) -> Tensor:
    """exp(-|sdf| / beta), never overflowing. |sdf| is written as a branch so that its derivative
    at sdf == 0 is -1 (the inside branch) instead of torch.abs's 0, which would zero the
    density's gradient exactly on the surface."""
    a = torch.where(sdf > 0, sdf, -sdf)
    return torch.exp(-a / beta)


def laplace_density(sdf: Float[Tensor, "*shape"], beta: float | Tensor) -> Float[Tensor, "*shape"]:
    """VolSDF density (1/beta) * Psi_beta(-sdf): (1/beta) * 0.5 exp(-sdf/beta) outside (sdf > 0),
    (1/beta) * (1 - 0.5 exp(sdf/beta)) inside. Stable for any sdf and beta > 0 (only exp of
    non-positive numbers), and sigma(s) + sigma(-s) = 1/beta exactly."""
    e = _exp_neg_abs_over(sdf, beta)
    return torch.where(sdf > 0, 0.5 * e, 1.0 - 0.5 * e) / beta


def _laplace_antiderivative_parts(sdf: Tensor, beta: float | Tensor) -> tuple[Tensor, Tensor]:
    """G(s) = int sigma ds = min(s, 0)/beta - 0.5 exp(-|s|/beta), returned as its two parts so
    differences of the linear part stay exact deep inside the surface."""
    return torch.clamp(sdf, max=0.0) / beta, -0.5 * _exp_neg_abs_over(sdf, beta)


def laplace_interval_density(
    sdf0: Float[Tensor, "*shape"], sdf1: Float[Tensor, "*shape"], beta: float | Tensor
) -> Float[Tensor, "*shape"]:
    """Mean Laplace density over a segment along which the sdf is linear from sdf0 to sdf1.

    Exact for linear sdf (so a surface crossing between two samples far apart is not missed):
    mean = (G(sdf1) - G(sdf0)) / (sdf1 - sdf0) with G' = sigma; the optical depth of the segment
    is mean * length. Nearly equal ends use the midpoint density (error O((dsdf/beta)^2)).
    """
    ds = sdf1 - sdf0
    lin0, exp0 = _laplace_antiderivative_parts(sdf0, beta)
    lin1, exp1 = _laplace_antiderivative_parts(sdf1, beta)
    small = ds.abs() < 1e-2 * beta
    safe_ds = torch.where(small, torch.ones_like(ds), ds)
    mean = ((lin1 - lin0) + (exp1 - exp0)) / safe_ds
    mid = laplace_density(0.5 * (sdf0 + sdf1), beta)
    return torch.where(small, mid, mean).clamp_min(0.0)


class LaplaceDensity(nn.Module):
    """VolSDF Laplace density with one learnable beta (metres), kept above beta_min.

    beta = beta_min + exp(raw_beta): a log parametrization, so a step changes beta by a relative
    amount whatever its scale (beta is millimetres here, not the unit-sphere 0.1 of VolSDF).
    """

    def __init__(self, beta_init: float = 0.005, beta_min: float = 1e-4):
        super().__init__()
        if not (beta_min >= 0.0 and beta_init > beta_min):
            raise ValueError(f"LaplaceDensity: need beta_init > beta_min >= 0 (metres), found beta_init="
                             f"{beta_init}, beta_min={beta_min}; raise beta_init or lower beta_min.")
        self.beta_min = float(beta_min)
        self.raw_beta = nn.Parameter(torch.tensor(math.log(beta_init - beta_min), dtype=torch.float32))

    @property
    def beta(self) -> Float[Tensor, ""]:
        """Current beta (metres), a 0-dim tensor carrying gradients."""
        return self.beta_min + torch.exp(self.raw_beta)

    def forward(self, sdf: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """Density (1/m) of sdf values in metres."""
        return laplace_density(sdf, self.beta)

    def extra_repr(self) -> str:
        return f"beta={float(self.beta.detach()):.5g} m, beta_min={self.beta_min:g} m"


def neus_alpha(
    sdf: Float[Tensor, "R S"],
    cos: Float[Tensor, "R S"],
    dists: Float[Tensor, "R S"],
    inv_s: float | Tensor,
    cos_anneal_ratio: float = 1.0,
) -> Float[Tensor, "R S"]:
    """NeuS opacity of each section from the SDF at its midpoint, cos = dot(ray dir, normal) and
    its length: the SDF at the section ends is estimated as sdf -/+ cos * dist / 2 and
    alpha = (Phi(sdf_prev) - Phi(sdf_next)) / Phi(sdf_prev), Phi(x) = sigmoid(inv_s * x).

    cos is first made non-positive (a ray only ever enters the surface), blended with
    cos_anneal_ratio in [0, 1] as NeuS anneals it from 'half-cosine' (0) to the true cosine (1).
    Computed as 1 - exp(logsigmoid(next) - logsigmoid(prev)): no 0/0 deep inside, result in [0, 1].
    """
    r = cos_anneal_ratio
    iter_cos = -(F.relu(-cos * 0.5 + 0.5) * (1.0 - r) + F.relu(-cos) * r)  # <= 0
    half = iter_cos * dists * 0.5
    log_prev = F.logsigmoid((sdf - half) * inv_s)
    log_next = F.logsigmoid((sdf + half) * inv_s)
    return (-torch.expm1(log_next - log_prev)).clamp(0.0, 1.0)


def alpha_to_density(alpha: Float[Tensor, "*shape"], dists: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """Density sigma with 1 - exp(-sigma * dist) = alpha, i.e. -log(1 - alpha) / dist (alpha is
    capped just below 1 so sigma stays finite; zero-length sections get a safe divisor)."""
    one_minus = (1.0 - alpha).clamp_min(torch.finfo(alpha.dtype).eps)
    return -torch.log(one_minus) / dists.clamp_min(1e-10)


class NeusDensity(nn.Module):
    """NeuS logistic density with one learnable sharpness inv_s (1/metres; 1/inv_s is the
    surface's width), stored as log(inv_s) and capped at inv_s_max."""

    def __init__(self, inv_s_init: float = 200.0, inv_s_max: float = 1e6):
        super().__init__()
        if not (0.0 < inv_s_init <= inv_s_max):
            raise ValueError(f"NeusDensity: need 0 < inv_s_init <= inv_s_max (1/metres), found inv_s_init="
                             f"{inv_s_init}, inv_s_max={inv_s_max}.")
        self.inv_s_max = float(inv_s_max)
        self.log_inv_s = nn.Parameter(torch.tensor(math.log(inv_s_init), dtype=torch.float32))

    @property
    def inv_s(self) -> Float[Tensor, ""]:
        """Current sharpness (1/metres), a 0-dim tensor carrying gradients."""
        return torch.exp(self.log_inv_s).clamp(max=self.inv_s_max)

    def alpha(self, sdf: Tensor, cos: Tensor, dists: Tensor, cos_anneal_ratio: float = 1.0) -> Tensor:
        """Section opacity (see neus_alpha)."""
        return neus_alpha(sdf, cos, dists, self.inv_s, cos_anneal_ratio)

    def forward(
        self, sdf: Float[Tensor, "R S"], cos: Float[Tensor, "R S"], dists: Float[Tensor, "R S"],
        cos_anneal_ratio: float = 1.0,
    ) -> Float[Tensor, "R S"]:
        """Density (1/m) equivalent to the NeuS section opacity over each section's length, so NeuS
        nodes merge with Laplace nodes (pass dists as the NodeSamples' delta for an exact match)."""
        return alpha_to_density(self.alpha(sdf, cos, dists, cos_anneal_ratio), dists)

    def extra_repr(self) -> str:
        return f"inv_s={float(self.inv_s.detach()):.5g} 1/m"
