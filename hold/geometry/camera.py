"""Pinhole camera maths in the OpenCV frame (x right, y down, z forward), pixels as continuous
coordinates: pixel (i, j) covers u in [j, j+1), v in [i, i+1), its centre is (j + 0.5, i + 0.5).

K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]] (s = skew, normally 0). "depth" is the camera-frame z,
not the distance along the ray. Everything broadcasts over leading batch dims and is differentiable.
"""
from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from hold.geometry.rotations import _check_shape


def make_intrinsics(
    fx: float | Tensor,
    fy: float | Tensor,
    cx: float | Tensor,
    cy: float | Tensor,
    skew: float | Tensor = 0.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Float[Tensor, "... 3 3"]:
    """K from focal lengths and principal point (pixels); tensor arguments broadcast to (..., 3, 3).
    dtype defaults to that of the first tensor argument, else float32."""
    args = (fx, fy, cx, cy, skew)
    if dtype is None:
        dtype = next((a.dtype for a in args if isinstance(a, Tensor) and a.is_floating_point()), torch.float32)
    if device is None:
        device = next((a.device for a in args if isinstance(a, Tensor)), None)
    fx, fy, cx, cy, skew = torch.broadcast_tensors(*(torch.as_tensor(a, dtype=dtype, device=device) for a in args))
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    return torch.stack([fx, skew, cx, zero, fy, cy, zero, zero, one], dim=-1).unflatten(-1, (3, 3))


def _safe_depth(z: Tensor, eps: float) -> Tensor:
    """z with |z| >= eps, sign kept (z == 0 -> +eps): no inf/NaN at the camera plane."""
    sign = torch.where(z < 0, -torch.ones_like(z), torch.ones_like(z))
    return torch.where(z.abs() < eps, sign * eps, z)


def project_with_depth(
    K: Float[Tensor, "... 3 3"], x_cam: Float[Tensor, "... N 3"], eps: float = 1e-8
) -> tuple[Float[Tensor, "... N 2"], Float[Tensor, "... N"]]:
    """(uv pixels, z) of camera-frame points. Points with |z| < eps are projected as if at
    z = +-eps; points behind the camera (z < 0) are projected through the pinhole too: mask them
    with z > 0."""
    _check_shape(K, (3, 3), "K", "project")
    _check_shape(x_cam, (3,), "x_cam", "project")
    z = x_cam[..., 2]
    p = x_cam @ K[..., :2, :].transpose(-1, -2)  # (..., N, 2) = (fx x + s y + cx z, fy y + cy z)
    return p / _safe_depth(z, eps)[..., None], z


def project(K: Float[Tensor, "... 3 3"], x_cam: Float[Tensor, "... N 3"], eps: float = 1e-8) -> Float[Tensor, "... N 2"]:
    """Pixel coordinates uv of camera-frame points (see project_with_depth)."""
    return project_with_depth(K, x_cam, eps)[0]


def _normalized_coords(K: Tensor, uv: Tensor) -> Tensor:
    """K^-1 [u, v, 1] in closed form (K upper triangular). K's batch dims broadcast with uv's."""
    fx, fy = K[..., 0, 0], K[..., 1, 1]
    s, cx, cy = K[..., 0, 1], K[..., 0, 2], K[..., 1, 2]
    y = (uv[..., 1] - cy) / fy
    x = (uv[..., 0] - cx - s * y) / fx
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def unproject(K: Float[Tensor, "... 3 3"], uv: Float[Tensor, "... N 2"], depth: Float[Tensor, "... N"]) -> Float[Tensor, "... N 3"]:
    """Camera-frame points at pixels uv with camera-frame z = depth (inverse of project_with_depth)."""
    _check_shape(K, (3, 3), "K", "unproject")
    _check_shape(uv, (2,), "uv", "unproject")
    if uv.shape[:-1] != depth.shape:
        raise ValueError(f"unproject: 'depth' must have shape uv.shape[:-1] = {tuple(uv.shape[:-1])}, "
                         f"found {tuple(depth.shape)}.")
    return _normalized_coords(K[..., None, :, :], uv) * depth[..., None]


def pixel_centers(
    H: int, W: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Float[Tensor, "H W 2"]:
    """uv of all pixel centres: [i, j] -> (j + 0.5, i + 0.5)."""
    v, u = torch.meshgrid(
        torch.arange(H, dtype=dtype, device=device) + 0.5,
        torch.arange(W, dtype=dtype, device=device) + 0.5,
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def pixel_rays(K: Float[Tensor, "... 3 3"], uv: Float[Tensor, "... 2"]) -> tuple[Float[Tensor, "... 3"], Float[Tensor, "... 3"]]:
    """Camera-frame rays through pixels uv: (origins = 0, unit directions). K is (3, 3), or
    batched with batch dims that broadcast (right-aligned) against uv.shape[:-1]."""
    _check_shape(K, (3, 3), "K", "pixel_rays")
    _check_shape(uv, (2,), "uv", "pixel_rays")
    d = _normalized_coords(K, uv)
    d = d / torch.linalg.norm(d, dim=-1, keepdim=True)
    return torch.zeros_like(d), d


def image_rays(K: Float[Tensor, "3 3"], H: int, W: int) -> Float[Tensor, "H W 3"]:
    """Unit camera-frame directions through every pixel centre of an H x W image."""
    _check_shape(K, (3, 3), "K", "image_rays")
    return pixel_rays(K, pixel_centers(H, W, dtype=K.dtype, device=K.device))[1]


def scale_intrinsics(K: Float[Tensor, "... 3 3"], sx: float, sy: float) -> Float[Tensor, "... 3 3"]:
    """K for an image resized by (sx, sy) (new_W = sx W, new_H = sy H). With pixel corners at
    integers, resizing scales continuous coordinates, so fx' = sx fx, cx' = sx cx (no +-0.5 terms)."""
    _check_shape(K, (3, 3), "K", "scale_intrinsics")
    S = torch.tensor([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]], dtype=K.dtype, device=K.device)
    return S @ K
