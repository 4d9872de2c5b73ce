"""The fit's objective: robust 2D / 3D data terms, pose and shape priors, temporal smoothness."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from hold.geometry.camera import project_with_depth
from preprocess.hand_fit_losses import JointPrior, pose_prior, robust
from preprocess.hand_fit_types import HandFitConfig


@dataclass
class FitProblem:
    """Everything the objective needs, on one device and dtype."""

    K: Tensor
    kp2d: Tensor
    w2d: Tensor  # per-frame weight of the 2D term (0: not detected / excluded)
    size_px: Tensor
    kp3d: Tensor | None
    w3d_kp: Tensor | None  # (T, 21) per-keypoint weight of the 3D term
    metric_3d: bool
    size_m: float
    prior: JointPrior


def data_cost_per_frame(prob: FitProblem, cfg: HandFitConfig, kp: Float[Tensor, "*C T 21 3"], scale: float
                    ) -> Float[Tensor, "*C T"]:
    """Weighted 2D (+ 3D) data cost of each frame; leading dims broadcast (candidate batches)."""
    uv, z = project_with_depth(prob.K, kp, eps=1e-6)
    r2 = ((uv - prob.kp2d[..., :2]) ** 2).sum(-1) / prob.size_px[:, None] ** 2
    c = prob.kp2d[..., 2]
    per = (robust(r2, cfg.robust, scale) * c).sum(-1) / c.sum(-1).clamp_min(1e-9)
    behind = torch.relu(0.01 - z).sum(-1)  # keypoints must stay in front of the camera
    cost = cfg.w_2d * (per * prob.w2d + behind)
    if prob.kp3d is not None:
        pred = kp - kp[..., :1, :]
        obs = prob.kp3d - prob.kp3d[:, :1]
        w = prob.w3d_kp
        if not prob.metric_3d:  # best scale of the observation onto the prediction (per frame)
            num = (w[..., None] * pred.detach() * obs).sum((-1, -2))
            s = num / (w[..., None] * obs * obs).sum((-1, -2)).clamp_min(1e-12)
            obs = obs * s[..., None, None]
        r2_3d = ((pred - obs) ** 2).sum(-1) / prob.size_m**2
        cost = cost + cfg.w_3d * (robust(r2_3d, cfg.robust, scale) * w).sum(-1) / w.sum(-1).clamp_min(1e-9)
    return cost


def objective_terms(prob: FitProblem, cfg: HandFitConfig, kp: Tensor, R: Tensor, pose: Tensor, betas: Tensor,
               transl: Tensor, offset: Tensor, scale: float) -> dict[str, Tensor]:
    T = kp.shape[0]
    terms: dict[str, Tensor] = {"data": data_cost_per_frame(prob, cfg, kp, scale).mean()}
    terms["pose"] = cfg.w_pose * pose_prior(pose + offset, prob.prior).mean()
    terms["shape"] = cfg.w_shape * (betas**2).sum()
    if T >= 3:
        acc = kp[2:] - 2 * kp[1:-1] + kp[:-2]
        terms["accel"] = cfg.w_accel * ((acc**2).sum(-1).mean(-1) / prob.size_m**2).sum() / T
    if T >= 2:
        terms["vel_pose"] = cfg.w_vel_pose * ((pose[1:] - pose[:-1]) ** 2).sum(-1).sum() / T
        terms["vel_rot"] = cfg.w_vel_rot * ((R[1:] - R[:-1]) ** 2).sum((-1, -2)).sum() / T
        terms["vel_transl"] = cfg.w_vel_transl * ((transl[1:] - transl[:-1]) ** 2).sum(-1).sum() / prob.size_m**2 / T
    return terms
