"""Initialization searches of the hand fit: global rotation hypotheses and finger curls, chained over time
by Viterbi; Kabsch from 3D keypoints; SLERP of the frames left out."""
from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from hold.geometry.camera import project_with_depth
from hold.geometry.rotations import (
    axis_angle_to_matrix, interpolate_rotations, matrix_to_axis_angle, quaternion_to_matrix, rotation_angle_between,
)
from hold.geometry.se3 import umeyama
from preprocess.hand_fit_kinematics import KeypointKinematics
from preprocess.hand_fit_losses import pose_prior, robust
from preprocess.hand_fit_objective import FitProblem, data_cost_per_frame
from preprocess.hand_fit_observations import hand_size_px, solve_translation
from preprocess.hand_fit_types import HandFitConfig


def rotation_hypotheses(n: int, seed: int, dtype, device) -> Float[Tensor, "H 3 3"]:
    """n rotations spread over SO(3): the identity plus uniform random quaternions (seeded)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    q[0] = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    return quaternion_to_matrix(q / q.norm(dim=-1, keepdim=True)).to(dtype=dtype, device=device)


def viterbi(unary: Float[Tensor, "N H"], pairwise: Float[Tensor, "N-1 H H"]) -> Tensor:
    """Minimum-cost path: argmin over h_1..N of sum unary[i, h_i] + sum pairwise[i, h_i, h_i+1]."""
    N, H = unary.shape
    cost = unary[0].clone()
    back = []
    for i in range(1, N):
        total = cost[:, None] + pairwise[i - 1]  # (H prev, H next)
        best, arg = total.min(0)
        back.append(arg)
        cost = best + unary[i]
    path = [int(cost.argmin())]
    for arg in reversed(back):
        path.append(int(arg[path[-1]]))
    return torch.tensor(path[::-1], dtype=torch.long, device=unary.device)


def search_rotations(
    K: Float[Tensor, "3 3"],
    template: Float[Tensor, "21 3"],
    root: Float[Tensor, " 3"],
    kp2d: Float[Tensor, "N 21 3"],
    t_prior: Float[Tensor, "N 3"],
    cfg: HandFitConfig,
) -> tuple[Float[Tensor, "N 3 3"], Float[Tensor, " N"]]:
    """Global rotation per frame (N frames, in time order) from 2D keypoints of a rigid template.

    Each of H hypotheses is refined by Adam (translation solved in closed form at every step);
    Viterbi then picks one per frame, trading the reprojection cost against rotation changes
    between consecutive frames. Returns the rotations and their costs (normalized robust 2D).
    """
    N, H = kp2d.shape[0], cfg.init_hypotheses
    R0 = rotation_hypotheses(H, cfg.seed, template.dtype, template.device)
    size = hand_size_px(kp2d)
    omega = torch.zeros(N, H, 3, dtype=template.dtype, device=template.device, requires_grad=True)
    opt = torch.optim.Adam([omega], lr=0.15)
    kp = kp2d[:, None].expand(N, H, 21, 3)
    tp = t_prior[:, None].expand(N, H, 3)
    c = kp[..., 2]

    def cost_of(R: Tensor) -> Tensor:
        P = (template - root) @ R.transpose(-1, -2) + root
        t = solve_translation(K, P, kp, tp)
        uv, z = project_with_depth(K, P + t[..., None, :], eps=1e-6)
        r2 = ((uv - kp[..., :2]) ** 2).sum(-1) / size[:, None, None] ** 2
        per = (robust(r2, cfg.robust, cfg.robust_scale) * c).sum(-1) / c.sum(-1).clamp_min(1e-9)
        behind = torch.relu(0.05 * tp[..., 2:3] - z).sum(-1)  # points must stay in front of the camera
        return per + behind

    for i in range(cfg.init_steps):
        for group in opt.param_groups:
            group["lr"] = 0.15 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * i / max(cfg.init_steps, 1))))
        R = axis_angle_to_matrix(omega) @ R0
        loss = cost_of(R).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        R = axis_angle_to_matrix(omega) @ R0
        unary = cost_of(R)
        if N > 1:
            ang = rotation_angle_between(R[:-1, :, None], R[1:, None, :])  # (N-1, H, H)
            pairwise = cfg.init_switch_weight * ang**2
        else:
            pairwise = unary.new_zeros(0, H, H)
        path = viterbi(unary, pairwise)
        idx = torch.arange(N, device=R.device)
        return R[idx, path], unary[idx, path]


def kabsch_rotations(
    template: Float[Tensor, "21 3"], kp3d: Float[Tensor, "N 21 3"], mask: Float[Tensor, "N 21"]
) -> Float[Tensor, "N 3 3"]:
    """Rotation of the root-relative template onto root-relative 3D keypoints (scale allowed)."""
    src = (template - template[0]).expand_as(kp3d)
    dst = kp3d - kp3d[:, :1]
    _, R, _ = umeyama(src, dst, with_scale=True, weights=mask.clamp_min(1e-6))
    return R


def slerp_missing_rotations(R: Tensor, known: Tensor) -> Tensor:
    """Fill rotations of frames not `known` by SLERP between known neighbours."""
    aa = interpolate_rotations(matrix_to_axis_angle(R)[:, None], known)[:, 0]
    return axis_angle_to_matrix(aa)


def search_finger_curls(
    kin: KeypointKinematics,
    prob: FitProblem,
    cfg: HandFitConfig,
    R: Float[Tensor, "T 3 3"],
    pose: Float[Tensor, "T 45"],
    betas: Float[Tensor, " NB"],
    transl: Float[Tensor, "T 3"],
    keep: Bool[Tensor, " T"],
) -> Float[Tensor, "T 45"]:
    """Per finger, pick a curl from a grid (base joint x the two distal joints), chained over time.

    A strongly curled finger seen in 2D is a deep local minimum for gradient descent from a
    natural pose (the fingertip's residual saturates the robust loss before the finger can fold),
    so each finger's curl is chosen by exhaustive search first: candidates are the current pose
    and a grid of flexions about the joints' flexion axes; the cost is the frame's data term +
    the pose prior; Viterbi over frames with the pose-velocity cost keeps the choice smooth.
    Frames in `keep` (given initial poses) keep their current pose.
    """
    T = pose.shape[0]
    dtype, device = pose.dtype, pose.device
    levels = torch.linspace(-0.2, 1.8, cfg.curl_levels, dtype=dtype, device=device)
    # (C - 1, 2): flexion of the base joint, flexion of the two distal joints
    grid = torch.stack(torch.meshgrid(levels, levels, indexing="ij"), -1).reshape(-1, 2)
    C = grid.shape[0] + 1
    offset = kin.pose_offset.to(pose)
    flex_axes = prob.prior.axes[:, 0]  # (15, 3)
    rest, root = kin.rest(betas)
    pose = pose.clone()
    for js in kin.chains:
        art = (pose + offset).reshape(T, 15, 3)
        cand = art[None].repeat(C, 1, 1, 1)  # candidate 0 = the current pose
        flex = torch.stack([grid[:, 0], grid[:, 1], cfg.distal_ratio * grid[:, 1]], 1)  # (C-1, 3)
        cand[1:, :, js] = flex[:, None, :, None] * flex_axes[js][None, None]
        cand_pose = cand.reshape(C, T, 45) - offset
        kp = kin.pose(rest, root, R.repeat(C, 1, 1), cand_pose.reshape(C * T, 45), transl.repeat(C, 1))
        unary = data_cost_per_frame(prob, cfg, kp.reshape(C, T, 21, 3), cfg.robust_scale)
        unary = unary + cfg.w_pose * pose_prior(cand.reshape(C * T, 45), prob.prior).reshape(C, T)
        unary = unary.T.contiguous()  # (T, C)
        unary[keep, 1:] = float("inf")
        if T > 1:
            d = cand_pose.reshape(C, T, 15, 3)[:, :, js].reshape(C, T, 9)
            pairwise = cfg.w_vel_pose * ((d[:, None, 1:] - d[None, :, :-1]) ** 2).sum(-1)  # (C next, C prev, T-1)
            pairwise = pairwise.permute(2, 1, 0)  # (T-1, prev, next)
        else:
            pairwise = unary.new_zeros(0, C, C)
        path = viterbi(unary, pairwise)
        pose = cand_pose[path, torch.arange(T, device=device)]
    return pose
