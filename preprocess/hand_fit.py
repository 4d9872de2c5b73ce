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
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from hold.geometry.camera import project_with_depth
from hold.geometry.rotations import (
    axis_angle_to_matrix, interpolate_linear, interpolate_rotations, matrix_to_axis_angle, quaternion_to_matrix,
    rotation_angle_between,
)
from hold.geometry.se3 import umeyama
from hold.hands.base import HandModel
from hold.hands.kinematics import flexion_axes

NUM_FINGERS = 5
FINGER_BASES = (1, 5, 9, 13, 17)
"""First keypoint of each finger (thumb, index, middle, ring, little); its 4 keypoints follow."""


@dataclass
class HandFitConfig:
    """Hand fitting: loss weights, robust losses, optimizer schedule, initialization and outlier rules."""

    steps: int = 300
    """Adam steps of the joint fit over all frames."""
    rigid_fraction: float = 0.25
    """Fraction of the steps at the start that move only the global rotation and translation."""
    lr: float = 0.02
    """Adam learning rate of rotations, finger pose (radians per step) and betas."""
    lr_transl: float = 0.01
    """Adam learning rate of translations, as a fraction of the median initial depth per step."""
    lr_final_fraction: float = 0.05
    """The learning rate decays (cosine) to this fraction of its start."""
    robust: str = "gmof"
    """Robust loss of the keypoint residuals: 'gmof' (Geman-McClure) or 'huber'."""
    robust_scale: float = 0.08
    """Scale of the robust loss (fraction of the hand size: 2D bounding-box diagonal, 3D model size)."""
    robust_scale_start: float = 0.5
    """The robust scale starts here and shrinks to robust_scale over the first half of the steps
    (graduated non-convexity: far-off keypoints still pull early on, outliers are ignored later)."""
    w_2d: float = 1.0
    """Weight of the 2D reprojection term."""
    w_3d: float = 1.0
    """Weight of the root-relative 3D keypoint term."""
    w_pose: float = 0.003
    """Weight of the anatomical pose prior (its per-joint terms are in radians squared)."""
    w_shape: float = 0.002
    """Weight of the shape prior sum(betas^2)."""
    w_accel: float = 2.0
    """Weight of the keypoint acceleration (second difference over frames, in hand sizes)."""
    w_vel_pose: float = 0.2
    """Weight of the finger-pose velocity (radians squared per frame)."""
    w_vel_rot: float = 0.002
    """Weight of the global-rotation velocity (squared Frobenius norm of R_t+1 - R_t)."""
    w_vel_transl: float = 0.002
    """Weight of the translation velocity (in hand sizes)."""
    natural_flexion_rad: tuple[float, float, float] = (0.25, 0.3, 0.2)
    """Natural curl of a finger's base, middle and distal joint (radians), the prior's mean and the
    initial pose (the thumb's mean is 0)."""
    init_hypotheses: int = 64
    """Number of global-rotation hypotheses tried per frame when only 2D keypoints are known."""
    init_steps: int = 60
    """Adam steps refining each rotation hypothesis."""
    init_switch_weight: float = 0.05
    """Viterbi cost per squared radian of rotation change between consecutive detected frames."""
    min_keypoints: int = 6
    """A frame with fewer keypoints of positive confidence counts as not detected."""
    outlier_factor: float = 3.0
    """A frame is an outlier when its mean reprojection error exceeds outlier_factor x the median..."""
    outlier_min_px: float = 15.0
    """...and this many pixels."""
    impulse_window: int = 2
    """Detected neighbours on each side compared with a frame by the pre-fit jump check."""
    impulse_threshold: float = 0.35
    """A frame whose 2D keypoint centroid jumps away from its agreeing neighbours by more than this
    fraction of the hand size (or whose size changes by more than 1.5x) is left out of the first
    fit, so the fit cannot follow it; the reprojection rule then decides whether it is an outlier."""
    warn_relative_error: float = 0.04
    """Median reprojection error / 2D hand size above which the result carries a warning
    (keypoints in another order still fit a contorted hand with ~4-8 %; clean detections ~1-2 %)."""
    fail_relative_error: float = 0.15
    """...and above which the fit is refused: the keypoints are not a hand in hold's order."""
    refit_steps: int = 100
    """Adam steps of a second pass without the outlier frames (0: no second pass)."""
    surrogate_tolerance_m: float = 1e-4
    """Max deviation of the keypoint surrogate from the real model before falling back to the model."""
    curl_levels: int = 8
    """Flexion levels per joint group in the finger-curl search (levels^2 candidates per finger)."""
    distal_ratio: float = 0.7
    """Flexion of a finger's distal joint relative to its middle joint in the curl search."""
    seed: int = 0
    """Seed of the rotation hypotheses."""

    def __post_init__(self):
        if self.robust not in ("gmof", "huber"):
            raise ValueError(f"HandFitConfig.robust must be 'gmof' or 'huber', got {self.robust!r}")


@dataclass
class HandParams:
    """Per-frame hand-model parameters (camera frame), torch."""

    global_orient: Float[Tensor, "T 3"]
    """Axis-angle rotation about the root joint (radians)."""
    hand_pose: Float[Tensor, "T P"]
    """Finger joints, axis-angle (radians), the model's order."""
    betas: Float[Tensor, " NB"]
    """Shape, shared by all frames."""
    transl: Float[Tensor, "T 3"]
    """Translation (metres)."""

    def detach(self) -> HandParams:
        return HandParams(*(x.detach().clone() for x in (self.global_orient, self.hand_pose, self.betas, self.transl)))


@dataclass
class HandFitResult:
    """Fitted hand track and its diagnostics."""

    params: HandParams
    """Fitted parameters, invalid frames re-filled by interpolation."""
    keypoints: Float[Tensor, "T 21 3"]
    """Model keypoints of `params` in the camera frame (metres)."""
    keypoints_2d: Float[Tensor, "T 21 2"]
    """`keypoints` projected through K (pixels)."""
    reproj_px: Float[Tensor, " T"]
    """Confidence-weighted mean reprojection error of the fit before re-filling (pixels; NaN when not detected)."""
    detected: Bool[Tensor, " T"]
    """Frames with a usable detection."""
    outlier: Bool[Tensor, " T"]
    """Detected frames rejected as outliers."""
    valid: Bool[Tensor, " T"]
    """detected and not outlier: the frames whose parameters come from their own observation."""
    threshold_px: float
    """The outlier threshold that was applied (pixels)."""
    init_method: list[str]
    """How each frame's global orientation was initialized ('given', '3d', '2d-search', 'interpolated')."""
    stats: dict = field(default_factory=dict)
    """Timings, final loss terms, whether the surrogate or the full model was used."""


class FitError(ValueError):
    """The observations cannot be fitted (no detection at all, nothing consistent)."""


# ----------------------------------------------------------------------------------------------
# Robust losses (normalized: ~ (r / scale)^2 near zero)


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
# Keypoint kinematics


class KeypointKinematics:
    """The model's 21 keypoints as forward kinematics of the keypoint skeleton.

    Every backend follows MANO's convention: a `hand_pose` joint rotates its descendants about the
    joint's rest position, relative to its parent, in the rest frame's axes; keypoints are joint
    positions plus fingertips rigid with the distal bone. So posing the 21 rest keypoints along the
    five finger chains reproduces the model's keypoints without posing its mesh.
    """

    def __init__(self, model: HandModel):
        self.model = model
        param = next(iter(model.buffers()), None)
        self.device = param.device if param is not None else torch.device("cpu")
        offset = getattr(model, "hand_mean", None)  # MANO with flat_hand_mean=False adds its mean pose
        self.pose_offset = (torch.zeros(model.num_pose_params, device=self.device) if offset is None
                            else offset.detach().reshape(-1).float())
        joint_of_kp = [-1] * 21
        for j, k in enumerate(model.pose_joint_keypoints):
            joint_of_kp[k] = j
        chains = []
        for b in FINGER_BASES:
            js = [joint_of_kp[b + i] for i in range(3)]
            if min(js) < 0 or model.num_pose_params != 45:
                raise ValueError(f"hand model {model.name!r}: keypoints {b}..{b + 2} are not all articulated "
                                 f"joints; the keypoint fit needs 3 joints per finger (45 pose parameters)")
            chains.append(js)
        self.chains = chains
        self._basis: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
        self._chain_index = torch.tensor(chains, dtype=torch.long, device=self.device)
        self._finger_kp = torch.tensor([[b + i for i in range(4)] for b in FINGER_BASES], device=self.device)

    def _rest_from_model(self, betas: Float[Tensor, " NB"]) -> tuple[Float[Tensor, "21 3"], Float[Tensor, " 3"]]:
        z = torch.zeros(1, 3, dtype=betas.dtype, device=betas.device)
        out = self.model(z, -self.pose_offset.to(betas)[None], betas[None], z)
        return out.keypoints[0], out.joints[0, 0]

    def rest(self, betas: Float[Tensor, " NB"]) -> tuple[Float[Tensor, "21 3"], Float[Tensor, " 3"]]:
        """Rest-pose keypoints and root joint (the global rotation's pivot) for shape `betas`.

        Both are affine in betas for every backend (blend shapes, a joint regressor, no pose
        correctives at the rest pose), so they are tabulated once from NB + 1 model evaluations;
        `check` verifies the affinity on a random shape.
        """
        if self._basis is None:
            with torch.no_grad():
                nb = self.model.num_betas
                zero = torch.zeros(nb, device=self.device)
                kp0, root0 = self._rest_from_model(zero)
                eye = torch.eye(nb, device=self.device)
                cols = [self._rest_from_model(eye[i]) for i in range(nb)]
                dkp = torch.stack([c[0] - kp0 for c in cols], -1)  # (21, 3, NB)
                droot = torch.stack([c[1] - root0 for c in cols], -1)  # (3, NB)
            self._basis = (kp0, dkp, root0, droot)
        kp0, dkp, root0, droot = (x.to(betas) for x in self._basis)
        return kp0 + dkp @ betas, root0 + droot @ betas

    def pose(
        self,
        rest: Float[Tensor, "21 3"],
        root: Float[Tensor, " 3"],
        R: Float[Tensor, "T 3 3"],
        hand_pose: Float[Tensor, "T 45"],
        transl: Float[Tensor, "T 3"],
    ) -> Float[Tensor, "T 21 3"]:
        """Camera-frame keypoints: posed = R (x - root) + root + transl, fingers by FK."""
        T = hand_pose.shape[0]
        Rj = axis_angle_to_matrix((hand_pose + self.pose_offset.to(hand_pose)).reshape(T, 15, 3))
        Rf = Rj[:, self._chain_index]  # (T, 5 fingers, 3 joints, 3, 3)
        finger = rest[self._finger_kp]  # (5, 4, 3): the 4 keypoints of each finger
        bones = finger[:, 1:] - finger[:, :-1]  # (5, 3, 3)
        G = Rf[:, :, 0]
        p = finger[:, 0].expand(T, 5, 3)
        pts = [p]
        for i in range(3):  # one level of all five fingers at a time
            if i > 0:
                G = G @ Rf[:, :, i]
            p = p + (G @ bones[:, i, :, None])[..., 0]
            pts.append(p)
        local = torch.cat([rest[0].expand(T, 1, 3), torch.stack(pts, 2).reshape(T, 20, 3)], 1)
        return (local - root) @ R.transpose(-1, -2) + root + transl[:, None]

    def check(self, tolerance_m: float, seed: int = 0) -> float:
        """Max deviation (metres) from the real model on random natural poses."""
        g = torch.Generator().manual_seed(seed)
        B = 4
        go = (torch.randn(B, 3, generator=g) * 0.8).to(self.device)
        hp = (torch.randn(B, 45, generator=g) * 0.3).to(self.device)
        betas = (torch.randn(self.model.num_betas, generator=g) * 0.5).to(self.device)
        tr = (torch.randn(B, 3, generator=g) * 0.1).to(self.device)
        with torch.no_grad():
            ref = self.model(go, hp, betas[None].expand(B, -1), tr).keypoints
            rest, root = self.rest(betas)
            kp = self.pose(rest, root, axis_angle_to_matrix(go), hp, tr)
        return float((kp - ref).norm(dim=-1).max())


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


# ----------------------------------------------------------------------------------------------
# Observations helpers


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


# ----------------------------------------------------------------------------------------------
# Initialization of the global orientation


def _rotation_hypotheses(n: int, seed: int, dtype, device) -> Float[Tensor, "H 3 3"]:
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
    R0 = _rotation_hypotheses(H, cfg.seed, template.dtype, template.device)
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


# ----------------------------------------------------------------------------------------------
# The fit


def _cosine(i: int, n: int, final: float) -> float:
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(i / max(n, 1), 1.0)))


def _lerp_missing_rotations(R: Tensor, known: Tensor) -> Tensor:
    """Fill rotations of frames not `known` by SLERP between known neighbours."""
    aa = interpolate_rotations(matrix_to_axis_angle(R)[:, None], known)[:, 0]
    return axis_angle_to_matrix(aa)


@dataclass
class _Problem:
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


def _data_per_frame(prob: _Problem, cfg: HandFitConfig, kp: Float[Tensor, "*C T 21 3"], scale: float
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


def _objective(prob: _Problem, cfg: HandFitConfig, kp: Tensor, R: Tensor, pose: Tensor, betas: Tensor,
               transl: Tensor, offset: Tensor, scale: float) -> dict[str, Tensor]:
    T = kp.shape[0]
    terms: dict[str, Tensor] = {"data": _data_per_frame(prob, cfg, kp, scale).mean()}
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


def _optimize(
    kin: KeypointKinematics,
    prob: _Problem,
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
        return R, _objective(prob, cfg, kp, R, pose, betas, transl, offset, scale)

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


def search_finger_curls(
    kin: KeypointKinematics,
    prob: _Problem,
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
        unary = _data_per_frame(prob, cfg, kp.reshape(C, T, 21, 3), cfg.robust_scale)
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


@contextlib.contextmanager
def _one_thread():
    """Run torch on one thread: the fit is thousands of tiny ops, for which intra-op threads only add
    synchronization (and spin-waiting, badly so on a busy machine: 10x slower measured on 2 cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


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
    with _one_thread():
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
        R = _lerp_missing_rotations(R, known)
    with torch.no_grad():
        # translation given the rotation (and the finger pose), in closed form where observed
        P = kin.pose(rest_b, root_b, R, pose, torch.zeros(T, 3, dtype=dtype, device=device))
        transl = solve_translation(K, P, kp2d, t_box)
        transl = interpolate_linear(transl, fit_w)
    t_init = time.perf_counter()

    prob = _Problem(K=K, kp2d=kp2d, w2d=fit_w.to(dtype), size_px=hand_size_px(kp2d), kp3d=kp3d,
                    w3d_kp=None if w3d is None else w3d * fit_w[:, None].to(dtype), metric_3d=metric_3d, size_m=size_m,
                    prior=prior)
    total_steps = cfg.steps + cfg.refit_steps
    step_cb = (lambda i, n: on_step(i, total_steps)) if on_step is not None else None
    rigid_steps = int(cfg.rigid_fraction * cfg.steps)
    R, pose, betas, transl, _ = _optimize(kin, prob, cfg, R, pose, betas0, transl, rigid_steps, rigid_steps, exact,
                                          step_cb)
    with torch.no_grad():
        given = torch.tensor([m == "given" for m in method], device=device)
        pose = search_finger_curls(kin, prob, cfg, R, pose, betas, transl, given)
    cb = (lambda i, n: on_step(rigid_steps + i, total_steps)) if on_step is not None else None
    R, pose, betas, transl, terms = _optimize(kin, prob, cfg, R, pose, betas, transl, cfg.steps - rigid_steps, 0,
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
        R, pose, betas, transl, terms = _optimize(kin, prob, replace(cfg, lr=cfg.lr * 0.5), R, pose, betas, transl,
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


# ----------------------------------------------------------------------------------------------
# Outliers and gap filling


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
