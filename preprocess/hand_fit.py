"""Fit a parametric hand (any `HandModel`) to per-frame 2D / 3D keypoints, all frames at once (pure torch).

Unknowns: per frame `global_orient`, `hand_pose`, `transl`; one `betas` shared by all frames.
Objective (each term a per-frame mean, averaged over frames):

- 2D: robust (Geman-McClure or Huber) confidence-weighted reprojection error through K. Residuals
  are measured in units of the detected 2D hand size (bounding-box diagonal), so the weights do not
  depend on the image resolution or on how far the hand is.
- 3D (when given): robust root-relative keypoint error; metric inputs are compared as they are,
  scale-free ones after the best scale. Residuals in units of the model hand's size.
- pose prior: each finger joint's rotation split into flexion (about `flexion_axes`), abduction and
  twist (about the bone); flexion stays near a natural curl, abduction and twist near zero,
  hyper-extension and over-flexion are penalized hard.
- shape prior: betas ~ N(0, 1).
- temporal smoothness: keypoint acceleration, plus velocities of every parameter.

Initialization (what makes a 2D-only fit converge): depth from the 2D hand size
(z ~ f * hand_size / pixel_size); the global orientation by a search over many rotation hypotheses
of the naturally curled template (each refined by a few Adam steps with the translation solved in
closed form), chained over time by Viterbi so the choice does not flip between frames; Kabsch on
the 3D keypoints where they are given; or the imported parameters. After a rigid stage, each
finger's curl is picked from a grid (Viterbi over time again): strongly curled fingers are a deep
local minimum for gradient descent started from a natural pose. The robust scale is annealed from
wide to narrow during the joint stage (graduated non-convexity).

The optimization runs on a 21-keypoint forward-kinematics surrogate of the model (exact for the
MANO-like kinematics every backend shares, checked against the real model at the start), which is
~100x cheaper than posing the full mesh.

Outliers: frames whose 2D hand jumps away from agreeing neighbours are left out of the first fit
(so the temporal terms cannot be bent toward them); after the fit, frames whose mean reprojection
error exceeds max(factor * median, min_px) are outliers; they (and frames without a detection) are
invalid, a second pass refits without them, and they are re-filled by SLERP of the joint rotations
and lerp of the translations between the neighbouring valid frames.

The pieces live in small files, re-exported here (this module's names are the public API):
hand_fit_types (config, parameters, result, error), hand_fit_losses (robust losses, pose prior),
hand_fit_kinematics (keypoint surrogate), hand_fit_observations (2D helpers, closed-form translation),
hand_fit_objective (the energy), hand_fit_init (rotation / curl searches, Viterbi), hand_fit_optimize
(the Adam loop), hand_fit_outliers (outliers, gap filling).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from hold.geometry.camera import project_with_depth
from hold.geometry.rotations import axis_angle_to_matrix, interpolate_linear, matrix_to_axis_angle
from hold.hands.base import HandModel
from preprocess.hand_fit_init import (
    kabsch_rotations, rotation_hypotheses, search_finger_curls, search_rotations, slerp_missing_rotations, viterbi,
)
from preprocess.hand_fit_kinematics import FINGER_BASES, NUM_FINGERS, KeypointKinematics
from preprocess.hand_fit_losses import JointPrior, gmof, huber, joint_prior, natural_pose, pose_prior, robust
from preprocess.hand_fit_objective import FitProblem, data_cost_per_frame, objective_terms
from preprocess.hand_fit_observations import (
    bbox_translation, detected_frames, hand_size_px, reprojection_errors, solve_translation,
)
from preprocess.hand_fit_optimize import optimize
from preprocess.hand_fit_outliers import fill_invalid, flag_outliers, impulse_frames
from preprocess.hand_fit_types import FitError, HandFitConfig, HandFitResult, HandParams

__all__ = [
    "FINGER_BASES", "NUM_FINGERS", "FitError", "FitProblem", "HandFitConfig", "HandFitResult", "HandParams",
    "JointPrior", "KeypointKinematics", "bbox_translation", "data_cost_per_frame", "detected_frames", "fill_invalid",
    "fit_hand", "flag_outliers", "gmof", "hand_size_px", "huber", "impulse_frames", "joint_prior", "kabsch_rotations",
    "natural_pose", "objective_terms", "optimize", "pose_prior", "reprojection_errors", "robust",
    "rotation_hypotheses", "search_finger_curls", "search_rotations", "slerp_missing_rotations", "solve_translation",
    "torch_threads", "viterbi",
]


@contextlib.contextmanager
def torch_threads(n: int):
    """Run torch on `n` (at least 1) intra-op threads, restored after. Small fits are thousands of tiny ops, for
    which extra threads only add synchronization (and spin-waiting, badly so on a busy machine: 10x slower
    measured on 2 cores)."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def fit_hand(
    model: HandModel,
    K: Float[Tensor, "3 3"],
    keypoints_2d: Float[Tensor, "T 21 3"],
    keypoints_3d: Float[Tensor, "T 21 3"] | None = None,
    has_3d: Bool[Tensor, " T"] | None = None,
    metric_3d: bool = True,
    init: HandParams | None = None,
    init_valid: Bool[Tensor, " T"] | None = None,
    cfg: HandFitConfig | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> HandFitResult:
    """Fit `model` to per-frame keypoints, reject outliers and re-fill the gaps.

    keypoints_2d: (u, v, confidence) in pixels (hold's convention: pixel centres at +0.5);
    confidence 0 = missing. keypoints_3d: camera-axis-aligned 3D keypoints of the frames in
    `has_3d` (only their offsets from the wrist are used; NaN = missing); `metric_3d` False
    compares them up to scale. `init` / `init_valid`: parameters of the same model to start from
    (e.g. an imported estimate) on the frames where they are valid. Raises FitError when no frame
    has a detection.
    """
    with torch_threads(1):
        return _fit_hand(model, K, keypoints_2d, keypoints_3d, has_3d, metric_3d, init, init_valid,
                         cfg or HandFitConfig(), on_step)


def _fit_hand(model, K, keypoints_2d, keypoints_3d, has_3d, metric_3d, init, init_valid, cfg, on_step
              ) -> HandFitResult:
    t_start = time.perf_counter()
    device = K.device
    dtype = torch.float32
    K = K.to(dtype)
    kp2d = torch.nan_to_num(keypoints_2d.to(dtype), nan=0.0)
    finite_uv = torch.isfinite(keypoints_2d[..., :2]).all(-1)
    kp2d[..., 2] = torch.where(finite_uv, kp2d[..., 2], torch.zeros_like(kp2d[..., 2]))
    T = kp2d.shape[0]
    detected = detected_frames(kp2d, cfg.min_keypoints)
    if not bool(detected.any()):
        raise FitError(f"no hand detected in any frame: none of the {T} frames has at least {cfg.min_keypoints} "
                       f"keypoints with positive confidence")
    kp2d[~detected, :, 2] = 0.0

    suspect = impulse_frames(kp2d, detected, cfg.impulse_window, cfg.impulse_threshold)
    fit_w = detected & ~suspect  # frames whose observations drive the first fit

    kin = KeypointKinematics(model)
    dev = kin.check(cfg.surrogate_tolerance_m, cfg.seed)
    exact = dev > cfg.surrogate_tolerance_m

    # 3D observations: per-keypoint weights on the frames that have them.
    kp3d, w3d = None, None
    if keypoints_3d is not None:
        has_3d = torch.ones(T, dtype=torch.bool, device=device) if has_3d is None else has_3d.to(device)
        finite = torch.isfinite(keypoints_3d).all(-1) & has_3d[:, None]
        finite &= finite[:, :1]  # root-relative: the wrist must be known
        if bool(finite.any()):
            kp3d = torch.nan_to_num(keypoints_3d.to(dtype), nan=0.0)
            w3d = finite.to(dtype)
    has3 = (w3d.sum(1) >= cfg.min_keypoints) if w3d is not None else torch.zeros(T, dtype=torch.bool, device=device)

    betas0 = init.betas.to(dtype) if init is not None else torch.zeros(model.num_betas, dtype=dtype, device=device)
    with torch.no_grad():
        rest0, root0 = kin.rest(torch.zeros(model.num_betas, dtype=dtype, device=device))
        prior = joint_prior(model, rest0, cfg.natural_flexion_rad)
        offset = kin.pose_offset.to(dtype)
        nat = natural_pose(prior).reshape(45) - offset
        rest_b, root_b = kin.rest(betas0)
        template = kin.pose(rest_b, root_b, torch.eye(3, dtype=dtype, device=device)[None], nat[None],
                            torch.zeros(1, 3, dtype=dtype, device=device))[0]
    size_m = float((rest0.amax(0) - rest0.amin(0)).norm())

    # --- initialization
    with torch.no_grad():
        t_box = bbox_translation(K, kp2d, template)
    R = torch.eye(3, dtype=dtype, device=device).repeat(T, 1, 1)
    pose = nat.repeat(T, 1)
    method = ["interpolated"] * T
    known = torch.zeros(T, dtype=torch.bool, device=device)
    if init is not None:
        iv = init_valid.to(device) if init_valid is not None else torch.ones(T, dtype=torch.bool, device=device)
        R = torch.where(iv[:, None, None], axis_angle_to_matrix(init.global_orient.to(dtype)), R)
        pose = torch.where(iv[:, None], init.hand_pose.to(dtype), pose)
        known |= iv
        for t in torch.nonzero(iv).flatten().tolist():
            method[t] = "given"
    use3 = has3 & ~known & fit_w
    if bool(use3.any()):
        R[use3] = kabsch_rotations(template, kp3d[use3], w3d[use3])
        known |= use3
        for t in torch.nonzero(use3).flatten().tolist():
            method[t] = "3d"
    search = fit_w & ~known
    if bool(search.any()):
        idx = torch.nonzero(search).flatten()
        R[idx], _ = search_rotations(K, template, root_b, kp2d[idx], t_box[idx], cfg)
        known |= search
        for t in idx.tolist():
            method[t] = "2d-search"
    known &= fit_w | torch.tensor([m == "given" for m in method], device=device)
    if not bool(known.all()):
        R = slerp_missing_rotations(R, known)
    with torch.no_grad():
        # translation given the rotation (and the finger pose), in closed form where observed
        P = kin.pose(rest_b, root_b, R, pose, torch.zeros(T, 3, dtype=dtype, device=device))
        transl = solve_translation(K, P, kp2d, t_box)
        transl = interpolate_linear(transl, fit_w)
    t_init = time.perf_counter()

    prob = FitProblem(K=K, kp2d=kp2d, w2d=fit_w.to(dtype), size_px=hand_size_px(kp2d), kp3d=kp3d,
                    w3d_kp=None if w3d is None else w3d * fit_w[:, None].to(dtype), metric_3d=metric_3d, size_m=size_m,
                    prior=prior)
    total_steps = cfg.steps + cfg.refit_steps
    step_cb = (lambda i, n: on_step(i, total_steps)) if on_step is not None else None
    rigid_steps = int(cfg.rigid_fraction * cfg.steps)
    R, pose, betas, transl, _ = optimize(kin, prob, cfg, R, pose, betas0, transl, rigid_steps, rigid_steps, exact,
                                          step_cb)
    with torch.no_grad():
        given = torch.tensor([m == "given" for m in method], device=device)
        pose = search_finger_curls(kin, prob, cfg, R, pose, betas, transl, given)
    cb = (lambda i, n: on_step(rigid_steps + i, total_steps)) if on_step is not None else None
    R, pose, betas, transl, terms = optimize(kin, prob, cfg, R, pose, betas, transl, cfg.steps - rigid_steps, 0,
                                              exact, cb)

    def exact_keypoints(R_, pose_, betas_, transl_) -> Tensor:
        with torch.no_grad():
            return model(matrix_to_axis_angle(R_), pose_, betas_[None].expand(T, -1), transl_).keypoints

    kp = exact_keypoints(R, pose, betas, transl)
    err = reprojection_errors(K, kp, kp2d)
    outlier, threshold = flag_outliers(err, detected, cfg.outlier_factor, cfg.outlier_min_px)
    valid = detected & ~outlier  # never empty: frames at or below the median error are never outliers
    rel = float(err[valid].median() / prob.size_px[detected].median())
    if rel > cfg.fail_relative_error:
        raise FitError(f"the hand model does not fit the keypoints: the median reprojection error is "
                       f"{float(err[valid].median()):.1f} px, {100 * rel:.0f} % of the hand's size in the image "
                       f"(refused above {100 * cfg.fail_relative_error:.0f} %); are they 21 hand keypoints in hold's "
                       f"order (wrist; thumb, index, middle, ring, little, each base -> tip)?")
    if not torch.equal(valid, fit_w) and cfg.refit_steps > 0:  # outliers out, cleared suspects back in
        prob = replace(prob, w2d=valid.to(dtype), w3d_kp=None if w3d is None else w3d * valid[:, None].to(dtype))
        cb = (lambda i, n: on_step(cfg.steps + i, total_steps)) if on_step is not None else None
        R, pose, betas, transl, terms = optimize(kin, prob, replace(cfg, lr=cfg.lr * 0.5), R, pose, betas, transl,
                                                  cfg.refit_steps, 0, exact, cb, anneal_robust=False)
        kp = exact_keypoints(R, pose, betas, transl)
        err = torch.where(valid, reprojection_errors(K, kp, kp2d), err)
    params = HandParams(global_orient=matrix_to_axis_angle(R), hand_pose=pose, betas=betas, transl=transl)
    params = fill_invalid(params, valid)
    kp = exact_keypoints(axis_angle_to_matrix(params.global_orient), params.hand_pose, params.betas, params.transl)
    uv, _ = project_with_depth(K, kp)
    stats = {"suspect_frames": torch.nonzero(suspect).flatten().tolist(), "init_s": t_init - t_start,
             "median_error_relative": rel, "warning": None if rel <= cfg.warn_relative_error else (
                 f"the fit is poor: median reprojection error {100 * rel:.1f} % of the hand's size (clean detections "
                 f"give 1-2 %); check the keypoint order (hold's: wrist; thumb, index, middle, ring, little)"),
             "fit_s": time.perf_counter() - t_init, "final_terms": terms,
             "kinematics": "model" if exact else "keypoint surrogate", "surrogate_deviation_m": dev,
             "hand_size_m": size_m}
    return HandFitResult(params=params, keypoints=kp, keypoints_2d=uv, reproj_px=err, detected=detected,
                         outlier=outlier, valid=valid, threshold_px=threshold, init_method=method, stats=stats)
