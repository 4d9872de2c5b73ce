"""Where to put samples along rays: stratified, inverse-CDF importance, and SDF-guided.

All samplers return distances t (R, n) sorted along each ray, detached (sample positions are not
optimized; gradients flow through what is evaluated at them).
"""
from __future__ import annotations

from typing import Callable

import torch
from jaxtyping import Float
from torch import Tensor

from hold.rendering.composite import weights_from_optical_depth
from hold.rendering.density import laplace_interval_density


def _check_rays(t_near: Tensor, t_far: Tensor, fn: str) -> None:
    for name, x in (("t_near", t_near), ("t_far", t_far)):
        if not isinstance(x, Tensor) or x.dim() != 1:
            found = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{fn}: argument '{name}' must have shape (R,), found {found}.")
    if t_near.shape != t_far.shape:
        raise ValueError(f"{fn}: 't_near' {tuple(t_near.shape)} and 't_far' {tuple(t_far.shape)} must match.")


def _unit_offsets(R: int, n: int, random: bool, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """(i + u_i) / n, u_i ~ U[0,1) per ray and bin (stratified) or 0.5 (bin midpoints): sorted in [0,1)."""
    i = torch.arange(n, dtype=like.dtype, device=like.device)
    if random:
        u = torch.rand(R, n, dtype=like.dtype, device=like.device, generator=generator)
    else:
        u = torch.full((R, n), 0.5, dtype=like.dtype, device=like.device)
    return (i + u) / n


def stratified_samples(
    t_near: Float[Tensor, "R"], t_far: Float[Tensor, "R"], n: int, perturb: bool,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "R n"]:
    """n samples in [t_near, t_far], one per equal bin: uniformly jittered inside its bin when
    perturb, else at the bin's midpoint. Sorted when t_far >= t_near."""
    _check_rays(t_near, t_far, "stratified_samples")
    if n < 1:
        raise ValueError(f"stratified_samples: 'n' must be >= 1, found {n}.")
    u = _unit_offsets(t_near.shape[0], n, perturb, t_near, generator)
    t_near, t_far = t_near.detach(), t_far.detach()
    return t_near[:, None] + (t_far - t_near)[:, None] * u


def sample_pdf(
    bins: Float[Tensor, "R B+1"], weights: Float[Tensor, "R B"], n: int, deterministic: bool,
    generator: torch.Generator | None = None, uniform_mix: float = 1e-3,
) -> Float[Tensor, "R n"]:
    """Inverse-CDF samples of the piecewise-constant density that puts mass weights[b] uniformly on
    [bins[b], bins[b+1]] (bins sorted). Stratified in CDF space (deterministic: bin midpoints in
    CDF space), so the output is sorted.

    Weights are normalized per ray (their scale does not matter) and mixed with a uniform_mix
    share of 'uniform over the bins'; negative weights count as 0 and all-zero rays sample
    uniformly, so no NaN ever appears.
    """
    if bins.dim() != 2 or weights.dim() != 2 or bins.shape != (weights.shape[0], weights.shape[1] + 1):
        raise ValueError(f"sample_pdf: need bins (R, B+1) and weights (R, B), found bins {tuple(bins.shape)} "
                         f"and weights {tuple(weights.shape)}.")
    if n < 1:
        raise ValueError(f"sample_pdf: 'n' must be >= 1, found {n}.")
    bins, weights = bins.detach(), weights.detach()
    R, B = weights.shape
    w = weights.clamp_min(0.0)
    w = torch.nan_to_num(w, nan=0.0, posinf=0.0)
    total = w.sum(dim=1, keepdim=True)
    pdf = torch.where(total > 0, w / torch.where(total > 0, total, torch.ones_like(total)), torch.zeros_like(w))
    pdf = (1.0 - uniform_mix) * pdf + uniform_mix / B
    pdf = torch.where(total > 0, pdf, torch.full_like(pdf, 1.0 / B))
    cdf = torch.cumsum(pdf, dim=1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf / cdf[:, -1:]], dim=1).contiguous()  # (R, B+1), ends 0 and 1

    u = _unit_offsets(R, n, not deterministic, weights, generator).contiguous()
    idx = torch.searchsorted(cdf, u, right=True)  # cdf[idx-1] <= u < cdf[idx]
    below = (idx - 1).clamp(0, B)
    above = idx.clamp(0, B)
    cdf_lo, cdf_hi = torch.gather(cdf, 1, below), torch.gather(cdf, 1, above)
    t_lo, t_hi = torch.gather(bins, 1, below), torch.gather(bins, 1, above)
    span = cdf_hi - cdf_lo
    frac = torch.where(span > 0, (u - cdf_lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(u))
    return t_lo + frac.clamp(0.0, 1.0) * (t_hi - t_lo)


def _extend_to_bounds(t: Tensor, sdf: Tensor, t_near: Tensor, t_far: Tensor) -> tuple[Tensor, Tensor]:
    """Add t_near and t_far as knots, their sdf extrapolated linearly from the nearest two samples
    with the slope clamped to [-1, 1] (an SDF is 1-Lipschitz along a unit ray)."""
    if t.shape[1] >= 2:
        dt0, dt1 = t[:, 1] - t[:, 0], t[:, -1] - t[:, -2]
        k0 = torch.where(dt0 > 0, (sdf[:, 1] - sdf[:, 0]) / torch.where(dt0 > 0, dt0, torch.ones_like(dt0)), 0.0)
        k1 = torch.where(dt1 > 0, (sdf[:, -1] - sdf[:, -2]) / torch.where(dt1 > 0, dt1, torch.ones_like(dt1)), 0.0)
    else:
        k0 = k1 = torch.zeros_like(t[:, 0])
    s_near = sdf[:, 0] + k0.clamp(-1.0, 1.0) * (t_near - t[:, 0])
    s_far = sdf[:, -1] + k1.clamp(-1.0, 1.0) * (t_far - t[:, -1])
    t_ext = torch.cat([t_near[:, None], t, t_far[:, None]], dim=1)
    s_ext = torch.cat([s_near[:, None], sdf, s_far[:, None]], dim=1)
    return t_ext, s_ext


def laplace_guide_weights(
    t: Float[Tensor, "R S"], sdf: Float[Tensor, "R S"], beta: float, n_subdivisions: int = 8
) -> tuple[Float[Tensor, "R B+1"], Float[Tensor, "R B"]]:
    """(bins, weights) of the volume-rendering termination distribution along rays whose sdf is
    known at sorted knots t and taken linear in between: each gap is cut into n_subdivisions
    bins whose Laplace optical depth is integrated exactly (laplace_interval_density), so the
    weight lands at the zero crossing even when knots are much farther apart than beta."""
    S = t.shape[1]
    frac = torch.arange(n_subdivisions, dtype=t.dtype, device=t.device) / n_subdivisions

    def refine(x: Tensor) -> Tensor:
        fine = x[:, :-1, None] + (x[:, 1:] - x[:, :-1])[..., None] * frac  # (R, S-1, n_sub)
        return torch.cat([fine.reshape(x.shape[0], (S - 1) * n_subdivisions), x[:, -1:]], dim=1)

    bins, s = refine(t), refine(sdf)
    tau = laplace_interval_density(s[:, :-1], s[:, 1:], beta) * (bins[:, 1:] - bins[:, :-1]).clamp_min(0.0)
    return bins, weights_from_optical_depth(tau)[0]


def sdf_guided_samples(
    t_near: Float[Tensor, "R"],
    t_far: Float[Tensor, "R"],
    sdf_fn: Callable[[Tensor], Tensor],
    n_coarse: int,
    n_importance: int,
    beta: float,
    n_rounds: int = 1,
    perturb: bool = True,
    generator: torch.Generator | None = None,
    n_subdivisions: int = 8,
) -> Float[Tensor, "R n_coarse+n_importance"]:
    """Coarse stratified samples plus importance samples near the SDF's zero crossing, sorted.

    sdf_fn maps distances t (R, S) to sdf (R, S) in the same units as beta (metres); it runs
    under torch.no_grad. Each round turns the sdf at all samples so far into Laplace
    termination weights (sdf linear between samples, t_near / t_far included as extrapolated
    knots), draws its share of n_importance from them, and evaluates sdf_fn there. With several
    rounds beta starts at beta * 2^(n_rounds-1) and halves each round (coarse to fine, ending at
    beta). The total budget n_coarse + n_importance per ray is fixed.
    """
    fn = "sdf_guided_samples"
    _check_rays(t_near, t_far, fn)
    if n_coarse < 1 or n_importance < 0 or n_rounds < 1:
        raise ValueError(f"{fn}: need n_coarse >= 1, n_importance >= 0, n_rounds >= 1; found "
                         f"{n_coarse}, {n_importance}, {n_rounds}.")
    if not float(beta) > 0:
        raise ValueError(f"{fn}: 'beta' must be > 0 (metres), found {beta}.")
    t_near, t_far = t_near.detach(), t_far.detach()
    with torch.no_grad():
        t = stratified_samples(t_near, t_far, n_coarse, perturb, generator)
        if n_importance == 0:
            return t
        sdf = sdf_fn(t)
        if not isinstance(sdf, Tensor) or sdf.shape != t.shape:
            found = tuple(sdf.shape) if isinstance(sdf, Tensor) else type(sdf).__name__
            raise ValueError(f"{fn}: sdf_fn must map t {tuple(t.shape)} to sdf of the same shape, found {found}.")
        shares = [n_importance // n_rounds] * n_rounds
        shares[-1] += n_importance - sum(shares)
        for r, k in enumerate(shares):
            if k == 0:
                continue
            beta_r = float(beta) * 2.0 ** (n_rounds - 1 - r)
            t_ext, s_ext = _extend_to_bounds(t, sdf, t_near, t_far)
            bins, w = laplace_guide_weights(t_ext, s_ext, beta_r, n_subdivisions)
            t_new = sample_pdf(bins, w, k, deterministic=not perturb, generator=generator)
            if r == n_rounds - 1:  # the last round's sdf would go unused: skip the evaluation
                t = torch.sort(torch.cat([t, t_new], dim=1), dim=1)[0]
                break
            t, order = torch.sort(torch.cat([t, t_new], dim=1), dim=1)
            sdf = torch.take_along_dim(torch.cat([sdf, sdf_fn(t_new)], dim=1), order, dim=1)
    return t
