"""Robust losses of keypoint residuals and the anatomical finger-pose prior (pure torch)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from hold.hands.base import HandModel
from hold.hands.kinematics import flexion_axes


def gmof(r2: Tensor, scale: float) -> Tensor:
    """Geman-McClure of a squared residual, divided by scale^2: r2 / (r2 + scale^2), saturates at 1."""
    return r2 / (r2 + scale * scale)


def huber(r2: Tensor, scale: float) -> Tensor:
    """Huber of a residual given squared, divided by scale^2: quadratic below `scale`, linear above."""
    r = torch.sqrt(r2 + 1e-18)
    return torch.where(r <= scale, r2, 2.0 * scale * r - scale * scale) / (scale * scale)


def robust(r2: Tensor, kind: str, scale: float) -> Tensor:
    return gmof(r2, scale) if kind == "gmof" else huber(r2, scale)


# ----------------------------------------------------------------------------------------------
# Pose prior


@dataclass
class JointPrior:
    """Per articulated joint (model order): anatomical axes, means and weights of the pose prior."""

    axes: Float[Tensor, "15 3 3"]
    """Rows: flexion axis, abduction axis, twist axis (bone direction) in the rest frame."""
    flex_mean: Float[Tensor, " 15"]
    w_flex: Float[Tensor, " 15"]
    w_abd: Float[Tensor, " 15"]
    w_twist: Float[Tensor, " 15"]
    hyper_limit: Float[Tensor, " 15"]
    """Flexion below -hyper_limit is hyper-extension (radians)."""
    max_flex: float = 2.0
    """Flexion above this is over-flexion (radians)."""
    w_limit: float = 20.0
    """Weight of the squared excess beyond the limits."""


def joint_prior(model: HandModel, rest_keypoints: Float[Tensor, "21 3"], natural_flexion: tuple[float, float, float]
                ) -> JointPrior:
    """Anatomical axes and weights for each of the model's 15 finger joints."""
    flex = flexion_axes(model, rest_keypoints)
    base = torch.as_tensor(model.pose_joint_keypoints, device=rest_keypoints.device)
    d = rest_keypoints[base + 1] - rest_keypoints[base]
    d = d / d.norm(dim=-1, keepdim=True)
    abd = torch.linalg.cross(flex, d)  # ~ the palm normal, orthogonal to the bone
    abd = abd / abd.norm(dim=-1, keepdim=True)
    axes = torch.stack([flex, abd, d], 1)
    finger = (base - 1) // 4  # 0 thumb ... 4 little
    pos = (base - 1) % 4  # 0 base, 1 middle, 2 distal
    thumb = finger == 0
    t = lambda *v: torch.tensor(v, dtype=rest_keypoints.dtype, device=rest_keypoints.device)  # noqa: E731
    flex_mean = torch.where(thumb, t(0.0), t(*natural_flexion)[pos])
    w_flex = torch.where(thumb, t(0.2), t(0.5))
    w_abd = torch.where(thumb, t(0.3), t(0.5, 4.0, 4.0)[pos])
    w_twist = torch.where(thumb, t(0.5, 2.0, 2.0)[pos], t(2.0, 4.0, 4.0)[pos])
    hyper = torch.where(thumb, t(1.0, 0.5, 0.4)[pos], t(0.4, 0.1, 0.15)[pos])
    return JointPrior(axes=axes, flex_mean=flex_mean, w_flex=w_flex, w_abd=w_abd, w_twist=w_twist, hyper_limit=hyper)


def pose_prior(articulation: Float[Tensor, "T 45"], prior: JointPrior) -> Float[Tensor, " T"]:
    """Anatomical prior per frame (radians squared, weighted) of the joint rotations (axis-angle)."""
    T = articulation.shape[0]
    c = torch.einsum("tjk,jmk->tjm", articulation.reshape(T, 15, 3), prior.axes)
    fl, ab, tw = c[..., 0], c[..., 1], c[..., 2]
    loss = prior.w_flex * (fl - prior.flex_mean) ** 2 + prior.w_abd * ab**2 + prior.w_twist * tw**2
    excess = torch.relu(-fl - prior.hyper_limit) + torch.relu(fl - prior.max_flex)
    return (loss + prior.w_limit * excess**2).sum(-1)


def natural_pose(prior: JointPrior) -> Float[Tensor, "15 3"]:
    """The prior's mean articulation: each joint curled by its mean flexion about its axis."""
    return prior.flex_mean[:, None] * prior.axes[:, 0]
