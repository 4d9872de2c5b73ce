"""The hand fit's configuration, parameters, result and error (preprocess.hand_fit)."""
from __future__ import annotations

from dataclasses import dataclass, field

from jaxtyping import Bool, Float
from torch import Tensor


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
