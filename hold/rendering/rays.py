"""Rays: points along them, ray / bounding-sphere intersection, change of frame.

A ray is `origins (R,3)` + t * `directions (R,3)` with unit directions, so t is a distance in the
frame's units (metres in the camera frame). Camera rays through pixel centres come from
`hold.geometry.camera.pixel_rays`.
"""
from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor


def _check_last(x: Tensor, size: int, name: str, fn: str) -> None:
    """One clear error when `x` is not a tensor with last dim `size`."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: argument '{name}' must be a torch.Tensor, found {type(x).__name__}.")
    if x.dim() < 1 or x.shape[-1] != size:
        raise ValueError(f"{fn}: argument '{name}' must have shape (..., {size}), found {tuple(x.shape)}; "
                         f"pass one {size}-vector per ray in the last dim.")


def ray_points(
    origins: Float[Tensor, "R 3"], directions: Float[Tensor, "R 3"], t: Float[Tensor, "R S"]
) -> Float[Tensor, "R S 3"]:
    """Points o + t d at the S distances of each ray."""
    return origins[..., None, :] + t[..., None] * directions[..., None, :]


def ray_sphere_intersect(
    origins: Float[Tensor, "R 3"],
    directions: Float[Tensor, "R 3"],
    center: Float[Tensor, "3"] | Float[Tensor, "R 3"],
    radius: float | Float[Tensor, ""] | Float[Tensor, "R"],
) -> tuple[Float[Tensor, "R"], Float[Tensor, "R"], Bool[Tensor, "R"]]:
    """(t_near, t_far, hit) of each ray with a sphere.

    Directions need not be unit (t is then in units of |d|). t_near is clamped to 0 when the
    origin is inside the sphere. Misses (including spheres entirely behind the origin and
    tangent rays) get t_near = t_far = 0 and hit = False, never NaN, in values or gradients.

    The half-chord comes from the perpendicular distance of the centre to the ray rather than
    from the quadratic's discriminant b^2 - 4ac, which cancels catastrophically for far spheres.
    """
    fn = "ray_sphere_intersect"
    _check_last(origins, 3, "origins", fn)
    _check_last(directions, 3, "directions", fn)
    _check_last(center, 3, "center", fn)
    radius = torch.as_tensor(radius, dtype=origins.dtype, device=origins.device)
    oc = origins - center  # centre -> origin
    dd = (directions * directions).sum(-1).clamp_min(1e-30)
    t_mid = -(oc * directions).sum(-1) / dd  # closest approach of the line to the centre
    perp = oc + t_mid[..., None] * directions
    h2 = radius * radius - (perp * perp).sum(-1)  # squared half-chord (in length units)
    with torch.no_grad():  # hit is a mask: no gradient, and none through sqrt at 0
        hit = (h2 > 0) & (t_mid + torch.sqrt(h2.clamp_min(0.0) / dd) > 0)
    # sqrt'(0) is inf: feed misses a safe 1 so their (discarded) gradients stay finite
    half = torch.sqrt(torch.where(hit, h2, torch.ones_like(h2)) / dd)
    zero = torch.zeros_like(t_mid)
    t_near = torch.where(hit, (t_mid - half).clamp_min(0.0), zero)
    t_far = torch.where(hit, t_mid + half, zero)
    return t_near, t_far, hit


def transform_rays(
    T_b_from_a: Float[Tensor, "4 4"] | Float[Tensor, "R 4 4"],
    origins: Float[Tensor, "R 3"],
    directions: Float[Tensor, "R 3"],
) -> tuple[Float[Tensor, "R 3"], Float[Tensor, "R 3"], Float[Tensor, "R"]]:
    """Rays of frame a expressed in frame b: (origins_b, unit directions_b, t_scale).

    T_b_from_a may carry a scale (similarity, or any affine map): the mapped direction A d_a has
    length t_scale = |A d_a|, which is returned so that distances convert exactly along each
    ray: the point at t_a in frame a is at t_b = t_a * t_scale in frame b. Rigid T gives
    t_scale = 1 and unit directions.
    """
    fn = "transform_rays"
    if not isinstance(T_b_from_a, Tensor) or T_b_from_a.shape[-2:] != (4, 4):
        found = tuple(T_b_from_a.shape) if isinstance(T_b_from_a, Tensor) else type(T_b_from_a).__name__
        raise ValueError(f"{fn}: argument 'T_b_from_a' must be a (4, 4) or (R, 4, 4) tensor, found {found}.")
    _check_last(origins, 3, "origins", fn)
    _check_last(directions, 3, "directions", fn)
    A, b = T_b_from_a[..., :3, :3], T_b_from_a[..., :3, 3]
    origins_b = torch.einsum("...ij,...j->...i", A, origins) + b
    d = torch.einsum("...ij,...j->...i", A, directions)
    t_scale = torch.linalg.norm(d, dim=-1)
    return origins_b, d / t_scale.clamp_min(1e-30)[..., None], t_scale
