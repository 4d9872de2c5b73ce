"""2D keypoint observations: hand size, detected frames, closed-form translation, reprojection errors."""
from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from hold.geometry.camera import project_with_depth


def hand_size_px(kp2d: Float[Tensor, "T 21 3"]) -> Float[Tensor, " T"]:
    """Diagonal of the bounding box of the keypoints with positive confidence (pixels; 1 when none)."""
    ok = kp2d[..., 2] > 0
    big = torch.finfo(kp2d.dtype).max
    lo = torch.where(ok[..., None], kp2d[..., :2], torch.full_like(kp2d[..., :2], big)).amin(1)
    hi = torch.where(ok[..., None], kp2d[..., :2], torch.full_like(kp2d[..., :2], -big)).amax(1)
    d = (hi - lo).norm(dim=-1)
    return torch.where(ok.any(1) & (d > 0), d, torch.ones_like(d))


def detected_frames(kp2d: Float[Tensor, "T 21 3"], min_keypoints: int) -> Bool[Tensor, " T"]:
    return (kp2d[..., 2] > 0).sum(1) >= min_keypoints


def bbox_translation(
    K: Float[Tensor, "3 3"], kp2d: Float[Tensor, "T 21 3"], template: Float[Tensor, "21 3"]
) -> Float[Tensor, "T 3"]:
    """Translation guess from the 2D box: depth z = f * hand_size / pixel_size, centre on the box centre.

    `template` is the rest hand (model frame); its 3D box diagonal times 0.8 (typical
    foreshortening) stands for the hand size seen in the image.
    """
    size_m = 0.8 * float((template.amax(0) - template.amin(0)).norm())
    s_px = hand_size_px(kp2d)
    f = 0.5 * (K[0, 0] + K[1, 1])
    z = f * size_m / s_px
    w = (kp2d[..., 2] > 0).to(kp2d.dtype)
    centre = (kp2d[..., :2] * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1)
    x = (centre[:, 0] - K[0, 2]) / K[0, 0] * z
    y = (centre[:, 1] - K[1, 2]) / K[1, 1] * z
    # the (unrotated) template's centroid lands on the box centre at that depth
    return torch.stack([x, y, z], -1) - template.mean(0)


def solve_translation(
    K: Float[Tensor, "3 3"],
    points: Float[Tensor, "*B 21 3"],
    kp2d: Float[Tensor, "*B 21 3"],
    t_prior: Float[Tensor, "*B 3"],
    prior_weight: float = 1e-4,
) -> Float[Tensor, "*B 3"]:
    """Translation t minimizing the (depth-normalized, algebraic) reprojection error of points + t.

    For a pixel u of a point X: (K[0] - u e3) . X = 0 is linear in t; rows are divided by the prior
    depth so they read in pixels, and a weak pull to `t_prior` keeps the system well posed.
    """
    u, v, c = kp2d[..., 0], kp2d[..., 1], kp2d[..., 2]
    zero = torch.zeros_like(u)
    row_u = torch.stack([K[0, 0] + zero, K[0, 1] + zero, K[0, 2] - u], -1)
    row_v = torch.stack([zero, K[1, 1] + zero, K[1, 2] - v], -1)
    A = torch.cat([row_u, row_v], -2)  # (*B, 42, 3)
    b = -torch.cat([(row_u * points).sum(-1), (row_v * points).sum(-1)], -1)
    w = torch.cat([c, c], -1) / t_prior[..., 2:3].clamp_min(1e-3) ** 2
    AtA = (A * w[..., None]).transpose(-1, -2) @ A
    Atb = ((A * w[..., None]) * b[..., None]).sum(-2)
    lam = prior_weight * (0.5 * (K[0, 0] + K[1, 1]) / t_prior[..., 2].clamp_min(1e-3)) ** 2 * c.sum(-1).clamp_min(1.0)
    eye = torch.eye(3, dtype=A.dtype, device=A.device)
    return torch.linalg.solve(AtA + lam[..., None, None] * eye, Atb + lam[..., None] * t_prior)


def reprojection_errors(
    K: Float[Tensor, "3 3"], keypoints: Float[Tensor, "T 21 3"], kp2d: Float[Tensor, "T 21 3"]
) -> Float[Tensor, " T"]:
    """Confidence-weighted mean pixel distance per frame (NaN when no keypoint has confidence)."""
    uv, _ = project_with_depth(K, keypoints)
    d = (uv - kp2d[..., :2]).norm(dim=-1)
    c = kp2d[..., 2]
    csum = c.sum(1)
    return torch.where(csum > 0, (d * c).sum(1) / csum.clamp_min(1e-12), torch.full_like(csum, float("nan")))
