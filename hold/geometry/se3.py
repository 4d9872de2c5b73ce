"""Rigid transforms as 4x4 matrices `T_a_from_b` (applied as T_a_from_b @ x_b), the SE(3)
exponential/logarithm used to parametrize per-frame poses, and Umeyama similarity alignment.

All functions broadcast over leading batch dims and are differentiable.
"""
from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from hold.geometry.rotations import (
    _check_shape,
    _one_minus_cos_over_x2,
    _safe_angle,
    _sin_over_x,
    matrix_to_axis_angle,
    skew,
)


def make_transform(R: Float[Tensor, "... 3 3"], t: Float[Tensor, "... 3"]) -> Float[Tensor, "... 4 4"]:
    """[[R, t], [0, 1]]; batch dims of R and t broadcast."""
    _check_shape(R, (3, 3), "R", "make_transform")
    _check_shape(t, (3,), "t", "make_transform")
    batch = torch.broadcast_shapes(R.shape[:-2], t.shape[:-1])
    top = torch.cat([R.expand(batch + (3, 3)), t.expand(batch + (3,))[..., None]], dim=-1)
    bottom = torch.zeros(batch + (1, 4), dtype=top.dtype, device=top.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def invert_transform(T: Float[Tensor, "... 4 4"]) -> Float[Tensor, "... 4 4"]:
    """Closed-form inverse of a RIGID transform: [[R^T, -R^T t], [0, 1]] (exact and cheaper than
    torch.inverse; not valid when the 3x3 block carries a scale or shear)."""
    _check_shape(T, (4, 4), "T", "invert_transform")
    Rt = T[..., :3, :3].transpose(-1, -2)
    t = T[..., :3, 3]
    return make_transform(Rt, -(Rt @ t[..., None])[..., 0])


def compose(T_a_from_b: Float[Tensor, "... 4 4"], T_b_from_c: Float[Tensor, "... 4 4"]) -> Float[Tensor, "... 4 4"]:
    """T_a_from_c = T_a_from_b @ T_b_from_c (batch dims broadcast)."""
    _check_shape(T_a_from_b, (4, 4), "T_a_from_b", "compose")
    _check_shape(T_b_from_c, (4, 4), "T_b_from_c", "compose")
    return T_a_from_b @ T_b_from_c


def transform_points(T: Float[Tensor, "... 4 4"], x: Float[Tensor, "... N 3"]) -> Float[Tensor, "... N 3"]:
    """R x + t for each of the N points; T's batch dims broadcast against x's (without N)."""
    _check_shape(T, (4, 4), "T", "transform_points")
    _check_shape(x, (3,), "x", "transform_points")
    return x @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def transform_directions(T: Float[Tensor, "... 4 4"], d: Float[Tensor, "... N 3"]) -> Float[Tensor, "... N 3"]:
    """R d (rotation only: directions and normals of rigid transforms)."""
    _check_shape(T, (4, 4), "T", "transform_directions")
    _check_shape(d, (3,), "d", "transform_directions")
    return d @ T[..., :3, :3].transpose(-1, -2)


def _third_order_coeff(theta2: Tensor, small: Tensor, theta: Tensor) -> Tensor:
    """(t - sin t) / t^3."""
    t2 = theta2
    taylor = 1.0 / 6.0 - t2 / 120.0 + t2 * t2 / 5040.0 - t2 * t2 * t2 / 362880.0
    return torch.where(small, taylor, (theta - torch.sin(theta)) / theta**3)


def se3_exp(xi: Float[Tensor, "... 6"]) -> Float[Tensor, "... 4 4"]:
    """SE(3) exponential of xi = (rho, phi): rho (first 3) the translation part, phi (last 3) the
    rotation axis-angle. Returns [[exp(phi), V rho], [0, 1]] with the left Jacobian
    V = I + (1 - cos t)/t^2 K + (t - sin t)/t^3 K^2, K = skew(phi), t = |phi|.
    xi = 0 is the identity; gradients are finite there."""
    _check_shape(xi, (6,), "xi", "se3_exp")
    rho, phi = xi[..., :3], xi[..., 3:]
    theta2 = (phi * phi).sum(-1)
    small, theta = _safe_angle(theta2)
    K = skew(phi)
    K2 = K @ K
    eye = torch.eye(3, dtype=xi.dtype, device=xi.device)
    b = _one_minus_cos_over_x2(theta2, small, theta)[..., None, None]
    c = _third_order_coeff(theta2, small, theta)[..., None, None]
    R = eye + _sin_over_x(theta2, small, theta)[..., None, None] * K + b * K2
    V = eye + b * K + c * K2
    return make_transform(R, (V @ rho[..., None])[..., 0])


def se3_log(T: Float[Tensor, "... 4 4"]) -> Float[Tensor, "... 6"]:
    """Inverse of se3_exp for rigid T: xi = (rho, phi), |phi| in [0, pi],
    rho = V^-1 t with V^-1 = I - K/2 + (1 - (t/2) cot(t/2)) / t^2 K^2."""
    _check_shape(T, (4, 4), "T", "se3_log")
    phi = matrix_to_axis_angle(T[..., :3, :3])
    theta2 = (phi * phi).sum(-1)
    small, theta = _safe_angle(theta2)
    t2 = theta2
    half = 0.5 * theta
    d_taylor = 1.0 / 12.0 + t2 / 720.0 + t2 * t2 / 30240.0 + t2 * t2 * t2 / 1209600.0
    d = torch.where(small, d_taylor, (1.0 - half * torch.cos(half) / torch.sin(half)) / (theta * theta))
    K = skew(phi)
    eye = torch.eye(3, dtype=T.dtype, device=T.device)
    V_inv = eye - 0.5 * K + d[..., None, None] * (K @ K)
    rho = (V_inv @ T[..., :3, 3:])[..., 0]
    return torch.cat([rho, phi], dim=-1)


def umeyama(
    src: Float[Tensor, "... N 3"],
    dst: Float[Tensor, "... N 3"],
    with_scale: bool = True,
    weights: Float[Tensor, "... N"] | None = None,
) -> tuple[Float[Tensor, "..."], Float[Tensor, "... 3 3"], Float[Tensor, "... 3"]]:
    """Least-squares similarity dst ~ s R src + t (Umeyama 1991), optionally weighted.

    Returns (s, R, t) with det(R) = +1 (reflections are excluded) and s = 1 when with_scale is
    False. Needs >= 3 non-collinear points with positive weight.
    """
    _check_shape(src, (3,), "src", "umeyama")
    _check_shape(dst, (3,), "dst", "umeyama")
    if src.shape[-2] != dst.shape[-2] or src.shape[-2] < 3:
        raise ValueError(f"umeyama: 'src' and 'dst' need the same number N >= 3 of points, found "
                         f"src {tuple(src.shape)} and dst {tuple(dst.shape)}.")
    if weights is None:
        weights = torch.ones(src.shape[:-1], dtype=src.dtype, device=src.device)
    elif weights.shape[-1] != src.shape[-2]:
        raise ValueError(f"umeyama: 'weights' must have shape (..., N) with N = {src.shape[-2]}, "
                         f"found {tuple(weights.shape)}.")
    w = weights / weights.sum(-1, keepdim=True)
    mu_src = (w[..., None] * src).sum(-2)
    mu_dst = (w[..., None] * dst).sum(-2)
    xs = src - mu_src[..., None, :]
    xd = dst - mu_dst[..., None, :]
    cov = (w[..., None] * xd).transpose(-1, -2) @ xs  # (..., 3, 3) = sum_i w_i xd_i xs_i^T
    U, S, Vh = torch.linalg.svd(cov)
    # Flip the smallest singular direction when U Vh would be a reflection.
    sign = torch.sign(torch.linalg.det(U) * torch.linalg.det(Vh))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    diag = torch.stack([torch.ones_like(sign), torch.ones_like(sign), sign], dim=-1)
    R = U @ (diag[..., None] * Vh)
    if with_scale:
        var_src = (w * (xs * xs).sum(-1)).sum(-1)
        s = (S * diag).sum(-1) / var_src
    else:
        s = torch.ones(R.shape[:-2], dtype=R.dtype, device=R.device)
    t = mu_dst - s[..., None] * (R @ mu_src[..., None])[..., 0]
    return s, R, t
