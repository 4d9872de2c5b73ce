"""The fit loop: Adam over rotations, finger pose, shape and translations, with a rigid warm-up and an annealed
robust scale."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from hold.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from preprocess.hand_fit_kinematics import KeypointKinematics
from preprocess.hand_fit_objective import FitProblem, objective_terms
from preprocess.hand_fit_types import HandFitConfig


def _cosine(i: int, n: int, final: float) -> float:
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(i / max(n, 1), 1.0)))


def optimize(
    kin: KeypointKinematics,
    prob: FitProblem,
    cfg: HandFitConfig,
    R_init: Tensor,
    pose: Tensor,
    betas: Tensor,
    transl: Tensor,
    steps: int,
    rigid_steps: int,
    exact: bool,
    on_step: Callable[[int, int], None] | None,
    anneal_robust: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, float]]:
    """Adam over (rotation residual, finger pose, betas, translation); returns the optimum and final terms."""
    omega = torch.zeros_like(transl, requires_grad=True)
    pose = pose.clone().requires_grad_(True)
    betas = betas.clone().requires_grad_(True)
    transl = transl.clone().requires_grad_(True)
    depth = float(transl[:, 2].detach().median().clamp_min(0.05))
    groups = [
        {"params": [omega], "lr": cfg.lr, "base": cfg.lr, "rigid": True},
        {"params": [transl], "lr": cfg.lr_transl * depth, "base": cfg.lr_transl * depth, "rigid": True},
        {"params": [pose], "lr": 0.0, "base": cfg.lr, "rigid": False},
        {"params": [betas], "lr": 0.0, "base": cfg.lr, "rigid": False},
    ]
    opt = torch.optim.Adam(groups)
    offset = kin.pose_offset.to(pose)
    terms: dict[str, Tensor] = {}

    def evaluate(scale: float) -> tuple[Tensor, dict[str, Tensor]]:
        R = axis_angle_to_matrix(omega) @ R_init
        if exact:
            kp = kin.model(matrix_to_axis_angle(R), pose, betas[None].expand(pose.shape[0], -1), transl).keypoints
        else:
            rest, root = kin.rest(betas)
            kp = kin.pose(rest, root, R, pose, transl)
        return R, objective_terms(prob, cfg, kp, R, pose, betas, transl, offset, scale)

    for i in range(steps):
        decay = _cosine(i, steps, cfg.lr_final_fraction)
        for g in opt.param_groups:
            g["lr"] = g["base"] * decay if (g["rigid"] or i >= rigid_steps) else 0.0
        anneal = min(i / max(0.5 * steps, 1), 1.0) if anneal_robust else 1.0
        scale = math.exp((1 - anneal) * math.log(cfg.robust_scale_start) + anneal * math.log(cfg.robust_scale))
        _, terms = evaluate(scale)
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(i, steps)
    with torch.no_grad():
        R, terms = evaluate(cfg.robust_scale)
    return R.detach(), pose.detach(), betas.detach(), transl.detach(), {k: float(v) for k, v in terms.items()}
