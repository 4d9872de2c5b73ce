"""Outlier frames of the hand fit (pre-fit jumps, post-fit reprojection rule) and SLERP/lerp re-filling."""
from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from hold.geometry.rotations import interpolate_linear, interpolate_rotations
from preprocess.hand_fit_observations import hand_size_px
from preprocess.hand_fit_types import HandParams


def impulse_frames(
    kp2d: Float[Tensor, "T 21 3"], detected: Bool[Tensor, " T"], window: int = 2, threshold: float = 0.35
) -> Bool[Tensor, " T"]:
    """Detected frames whose 2D hand jumps away from its neighbours while the neighbours agree.

    For each detected frame: the median centroid and size of up to `window` detected frames on
    each side (at most 3 * window frames away); the frame is suspect when its centroid is farther
    than threshold x its hand size from that median and more than 3x the neighbours' own spread,
    or when its size differs from theirs by more than 1.5x.
    """
    w = (kp2d[..., 2] > 0).to(kp2d.dtype)
    centre = (kp2d[..., :2] * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1)
    size = hand_size_px(kp2d)
    idx = torch.nonzero(detected).flatten().tolist()
    suspect = torch.zeros_like(detected)
    for i, t in enumerate(idx):
        neigh = [n for n in idx[max(0, i - window): i] + idx[i + 1: i + 1 + window] if abs(n - t) <= 3 * window]
        if len(neigh) < 2:
            continue
        med = centre[neigh].median(0).values
        spread = float((centre[neigh] - med).norm(dim=-1).median())
        dev = float((centre[t] - med).norm())
        ratio = float(size[t] / size[neigh].median())
        jump = dev > threshold * float(size[t]) and dev > 3.0 * spread
        suspect[t] = jump or not (1 / 1.5 <= ratio <= 1.5)
    return suspect


def flag_outliers(
    errors_px: Float[Tensor, " T"], detected: Bool[Tensor, " T"], factor: float = 3.0, min_px: float = 15.0
) -> tuple[Bool[Tensor, " T"], float]:
    """Detected frames whose error exceeds max(factor * median over detected frames, min_px)."""
    if not bool(detected.any()):
        return torch.zeros_like(detected), float(min_px)
    med = float(errors_px[detected].median())
    threshold = max(factor * med, min_px)
    return detected & (errors_px > threshold), threshold


def fill_invalid(params: HandParams, valid: Bool[Tensor, " T"]) -> HandParams:
    """Re-fill invalid frames: SLERP of the global and every joint rotation, lerp of translations."""
    T = params.global_orient.shape[0]
    go = interpolate_rotations(params.global_orient[:, None], valid)[:, 0]
    hp = interpolate_rotations(params.hand_pose.reshape(T, -1, 3), valid).reshape(T, -1)
    tr = interpolate_linear(params.transl, valid)
    return HandParams(global_orient=go, hand_pose=hp, betas=params.betas, transl=tr)
