"""Hand-object alignment maths (pure torch): metric hand translations and the metric object scale.

SfM gives the object up to a similarity and with its own estimated intrinsics K; the hand fit gives a metric
hand (its size is the hand model's) but under another K. Three robust sub-problems, as in HOLD:

(h) per frame, the hand translation t_h (articulation and orientation kept) so that the hand model's 21
    keypoints reproject onto the 2D detections under the SfM K (confidence-weighted Geman-McClure); closed-form
    linear initialization, then L-BFGS. Frames without detections get their neighbours' translations lerped.

(o) the object's metric factor alpha (SfM units -> metres, one scalar: x_cam = alpha (R_t s_sfm x_obj + t_t),
    the similarity about the camera centre, so the object's translation scales with its size and every SfM
    point keeps its pixel) and a per-frame residual translation delta_t (metres):

        x_cam(t) = alpha (R_t s_sfm x_obj + t_t) + delta_t.

    delta_t lets the per-frame depth follow the hand where SfM's relative depths are slightly off; it is held
    by the 2D reprojection term (the SfM points must keep reprojecting where they were, which pins delta_t
    laterally and, through the object's apparent size, weakly in depth) and a small L2 prior. Terms:
    - contact: the k hand surface points (a subset of the hand model's vertices: finger pads and palm touch
      the object, not the keypoints, which are joint centres) nearest to the object surface sit
      `contact_offset_m` outside it. The distance is point-to-plane to the nearest object point's tangent plane
      (normals by PCA of the canonical cloud, oriented away from its centre): SfM clouds are sparse, a
      point-to-point distance would never reach zero. A hand point lying more than a few point spacings sideways
      of its nearest object point (a finger wrapped around an edge) is beyond that plane's patch and counts as
      outside at its point-to-point distance: without this rule, edges judge touching fingers "inside" and push
      the object toward the camera (-13 % scale on the synthetic end-to-end clip);
    - penetration: hand surface points inside the object (negative point-to-plane distance), Geman-McClure per
      point so that a few points misjudged by a noisy or partial cloud cannot dominate;
    - centroid: the centroid of the nearest hand's points within one object radius + `centroid_margin_m` of the
      object centre (a hinge: it only acts on a grossly wrong scale; another hand may be anywhere);
    - reprojection: Geman-McClure of the pixel displacement of the object points against their SfM projections.
    alpha is initialized by the depth ratio of hand and object, then by a 1-D search of the contact terms over
    a log-spaced grid around it (the energy is not convex in alpha), then refined with delta by L-BFGS.

(ho) jointly: hand translations, alpha and delta, with the (h) and (o) terms and temporal smoothness
    (acceleration) of the hand translations and the object translation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from hold.geometry.camera import project_with_depth
from hold.geometry.rotations import interpolate_linear
from hold.pose_losses import translation_acceleration
from preprocess.hand_fit import detected_frames, gmof, solve_translation

MIN_KEYPOINTS = 4
"""A frame's detection needs this many confident keypoints to fix a translation (2 equations each)."""


@dataclass
class AlignFitConfig:
    """Weights, robust scales and iteration counts of the three alignment sub-problems."""

    keypoint_scale_px: float = 8.0
    """Geman-McClure scale of the hand keypoint reprojection residuals (pixels)."""
    hand_iters: int = 60
    """L-BFGS iterations of the per-frame hand translation fit (h)."""
    contact_k: int = 5
    """Per frame, the contact term acts on this many hand surface points nearest to the object surface."""
    contact_offset_m: float = 0.002
    """Distance from a touching hand surface point to the nearest object point: about half the spacing of the
    object points (m)."""
    contact_scale_m: float = 0.005
    """Geman-McClure scale of the contact residuals (m)."""
    penetration_margin_m: float = 0.0
    """Hand surface points deeper than this inside the object surface are penalized (m)."""
    max_lateral_spacings: float = 3.0
    """A hand point more than this many point spacings sideways of its nearest object point is beyond the edge of
    that point's tangent plane: it counts as outside (point-to-point distance)."""
    centroid_margin_m: float = 0.03
    """The nearest hand's points' centroid may be up to (object radius + this) from the object centre (m)."""
    reprojection_scale_px: float = 2.0
    """Geman-McClure scale of the object points' displacement from their SfM projections (pixels)."""
    residual_translation: bool = True
    """Allow the per-frame residual object translation delta_t (else only the scale alpha is fitted)."""
    residual_prior_m: float = 0.01
    """Scale of the L2 prior on delta_t (m)."""
    w_contact: float = 1.0
    """Weight of the contact term."""
    w_penetration: float = 1.0
    """Weight of the penetration term (Geman-McClure per hand point, summed over the active points)."""
    w_centroid: float = 1.0
    """Weight of the centroid hinge (normalized by contact_scale_m)."""
    w_reprojection: float = 1.0
    """Weight of the object reprojection term."""
    w_residual: float = 0.1
    """Weight of the L2 prior on delta_t."""
    w_hand_2d: float = 1.0
    """Weight of the hand keypoint reprojection term in the joint fit (ho)."""
    w_smooth_hand: float = 1.0
    """Weight of the hand translation acceleration term in (ho) (normalized by `smooth_scale_m`)."""
    w_smooth_object: float = 1.0
    """Weight of the object translation acceleration term in (ho) (normalized by `smooth_scale_m`)."""
    smooth_scale_m: float = 0.01
    """Acceleration (m / frame^2) that costs as much as one unit of the other terms."""
    scale_search: int = 61
    """Grid size of the 1-D search of alpha (log-spaced)."""
    scale_search_range: float = 3.0
    """The search spans alpha0 / range .. alpha0 * range around the depth-ratio initialization."""
    object_iters: int = 80
    """L-BFGS iterations of the object fit (o)."""
    joint_iters: int = 80
    """L-BFGS iterations of the joint fit (ho)."""
    max_points: int = 1024
    """Object points used by the contact terms (evenly subsampled; pass it to ObjectProblem)."""
    active_points: int = 64
    """Per frame, the hand points nearest to the object after the scale search that the L-BFGS stages use (the
    others are too far to touch or penetrate it; the centroid hinge uses all of each hand's)."""
    search_frames: int = 60
    """Frames (evenly spaced among the observed ones) the 1-D scale search evaluates."""
    max_reprojection_points: int = 256
    """Object points used by the reprojection term (evenly subsampled)."""


# ----------------------------------------------------------------------------------------------
# Small pieces


def subsample(n: int, k: int) -> Tensor:
    """At most k evenly spaced indices out of n (deterministic)."""
    if n <= k:
        return torch.arange(n)
    return torch.linspace(0, n - 1, k).round().long()


def _lbfgs(params: list[Tensor], closure_loss, iters: int) -> float:
    """Minimize closure_loss() over params with L-BFGS (strong Wolfe); returns the final loss."""
    if iters <= 0:
        with torch.no_grad():
            return float(closure_loss())
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=iters, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = closure_loss()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(closure_loss())


# ----------------------------------------------------------------------------------------------
# (h) hand translation


def keypoint_reprojection(
    kp_cam: Float[Tensor, "T 21 3"], keypoints_2d: Float[Tensor, "T 21 3"], K: Float[Tensor, "3 3"], scale_px: float
) -> Float[Tensor, " T"]:
    """Per frame: confidence-weighted mean Geman-McClure of the keypoint reprojection error (0 without detections);
    keypoints behind the camera cost the maximum (1)."""
    uv, z = project_with_depth(K, kp_cam)
    r2 = ((uv - keypoints_2d[..., :2]) ** 2).sum(-1)
    rho = torch.where(z > 1e-4, gmof(r2, scale_px), torch.ones_like(r2))
    w = keypoints_2d[..., 2].clamp(min=0)
    return (w * rho).sum(-1) / w.sum(-1).clamp(min=1e-9)


def fit_hand_translation(
    kp_local: Float[Tensor, "T 21 3"],
    keypoints_2d: Float[Tensor, "T 21 3"],
    K: Float[Tensor, "3 3"],
    transl_init: Float[Tensor, "T 3"],
    cfg: AlignFitConfig,
) -> tuple[Float[Tensor, "T 3"], Bool[Tensor, " T"]]:
    """(h): per-frame hand translation so that kp_local + t reprojects onto the detections under K.

    kp_local are the posed keypoints without translation. Returns (translations, detected); frames without a
    usable detection get the translation lerped between their detected neighbours (held at the ends); when no
    frame has one, `transl_init` is returned unchanged.
    """
    det = detected_frames(keypoints_2d, MIN_KEYPOINTS)
    if not det.any():
        return transl_init.clone(), det
    kp, obs, prior = kp_local[det].double(), keypoints_2d[det].double(), transl_init[det].double()
    # closed form (L-BFGS below refines it); contiguous: L-BFGS views the gradient flat
    t0 = solve_translation(K.double(), kp, obs, prior).contiguous()
    bad = ~torch.isfinite(t0).all(-1) | (t0[:, 2] + kp[..., 2].mean(-1) <= 1e-3)
    t0[bad] = prior[bad]
    t = t0.clone().requires_grad_(True)
    _lbfgs([t], lambda: keypoint_reprojection(kp + t[:, None], obs, K.double(), cfg.keypoint_scale_px).sum(),
           cfg.hand_iters)
    out = torch.zeros_like(transl_init, dtype=torch.float64)
    out[det] = t.detach()
    return interpolate_linear(out, det).to(transl_init.dtype), det


# ----------------------------------------------------------------------------------------------
# (o) object scale and residual translation


@dataclass
class ObjectProblem:
    """The object side of the alignment, in SfM units."""

    R: Float[Tensor, "T 3 3"]
    """Object rotation per frame (camera from object)."""
    t_sfm: Float[Tensor, "T 3"]
    """Object translation per frame in SfM units."""
    s_sfm: float
    """SfM units per canonical unit (object.npz scale before alignment)."""
    x_obj: Float[Tensor, "N 3"]
    """Canonical object points (unit sphere)."""
    K: Float[Tensor, "3 3"]
    """Intrinsics the SfM points reproject with (pixels)."""
    frames: Bool[Tensor, " T"]
    """Frames whose object pose and a hand are both observed: the contact terms act there."""
    max_points: int
    """Object points the contact terms use (evenly subsampled: AlignFitConfig.max_points)."""
    idx: Tensor = field(init=False)
    """Indices of those points in x_obj."""
    normals: Float[Tensor, "N2 3"] = field(init=False)
    """Outward normals of the points `idx` (estimated from those points, canonical frame)."""
    spacing: float = field(init=False)
    """Sampling step of the points `idx` (canonical units)."""

    def __post_init__(self) -> None:  # one dtype (float64: metres and pixels mix, L-BFGS wants precision)
        for name in ("R", "t_sfm", "x_obj", "K"):
            setattr(self, name, torch.as_tensor(getattr(self, name), dtype=torch.float64))
        self.s_sfm = float(self.s_sfm)
        self.frames = torch.as_tensor(self.frames, dtype=torch.bool)
        self.idx = subsample(self.x_obj.shape[0], self.max_points)
        x = self.x_obj[self.idx]
        self.normals, self.spacing = estimate_normals(x), point_spacing(x)

    def points_cam(self, log_alpha: Tensor, delta: Float[Tensor, "F 3"], idx: Tensor, frames: Tensor
                   ) -> Float[Tensor, "F N 3"]:
        """x_cam = alpha (R_t s_sfm x_obj + t_t) + delta_t of the canonical points `idx` in `frames`."""
        x_sfm = torch.einsum("fij,nj->fni", self.R[frames], self.s_sfm * self.x_obj[idx]) + self.t_sfm[frames, None]
        return log_alpha.exp() * x_sfm + delta[:, None]

    def normals_cam(self, frames: Tensor) -> Float[Tensor, "F N2 3"]:
        """The outward normals of the points `idx` rotated into `frames`."""
        return torch.einsum("fij,nj->fni", self.R[frames], self.normals)

    def centre_cam(self, log_alpha: Tensor, delta: Float[Tensor, "F 3"], frames: Tensor) -> Float[Tensor, "F 3"]:
        """The object centre (canonical origin) in the camera frame."""
        return log_alpha.exp() * self.t_sfm[frames] + delta


def estimate_normals(x: Float[Tensor, "N 3"], k: int = 12) -> Float[Tensor, "N 3"]:
    """Unit normals of a point cloud around the origin: the least-variance direction of each point's k nearest
    neighbours (PCA), oriented away from the origin (outward for a star-shaped object centred there)."""
    x = x.double()
    k = min(k, x.shape[0])
    nn = torch.cdist(x, x).topk(k, dim=1, largest=False).indices
    nb = x[nn] - x[nn].mean(1, keepdim=True)
    _, vecs = torch.linalg.eigh(nb.transpose(1, 2) @ nb)
    n = vecs[..., 0]
    return torch.where(((n * x).sum(-1) < 0)[:, None], -n, n)


def point_spacing(x: Float[Tensor, "N 3"]) -> float:
    """Median distance from each point to its nearest neighbour (the cloud's sampling step)."""
    d = torch.cdist(x.double(), x.double())
    d.fill_diagonal_(float("inf"))
    return float(d.min(-1).values.median())


def signed_surface_distance(
    q: Float[Tensor, "F M 3"], surface: Float[Tensor, "F N 3"], normals: Float[Tensor, "F N 3"],
    max_lateral: float | Tensor = float("inf"),
) -> Float[Tensor, "F M"]:
    """Signed distance of each query point to the surface sampled by the points: the point-to-plane distance to
    the tangent plane of its nearest surface point (positive outside, negative inside; sparse clouds: the plane,
    not the point, is where the surface is). Where the query lies more than `max_lateral` sideways of that point
    (beyond the edge of its patch, e.g. a finger wrapped around an edge of a box) the plane says nothing: the
    query counts as outside at its point-to-point distance."""
    nn = torch.cdist(q, surface).argmin(-1)
    p = torch.gather(surface, 1, nn[..., None].expand(-1, -1, 3))
    n = torch.gather(normals, 1, nn[..., None].expand(-1, -1, 3))
    d = q - p
    plane = (d * n).sum(-1)
    dist2 = d.square().sum(-1)
    lateral2 = (dist2 - plane.square()).clamp(min=0)
    limit2 = torch.as_tensor(max_lateral, dtype=q.dtype).square()
    return torch.where(lateral2 <= limit2, plane, (dist2 + 1e-12).sqrt())


def contact_terms(
    problem: ObjectProblem, hand_points: Float[Tensor, "F M 3"], hand_centroids: Float[Tensor, "F H 3"],
    log_alpha: Tensor, delta: Float[Tensor, "F 3"], frames: Tensor, cfg: AlignFitConfig,
) -> dict[str, Float[Tensor, " F"]]:
    """Per-frame contact, penetration and centroid costs of hand surface points against the object in `frames`.
    The centroid hinge takes the hand nearest the object: another hand may be anywhere."""
    surface = problem.points_cam(log_alpha, delta, problem.idx, frames)
    centre = problem.centre_cam(log_alpha, delta, frames)
    lateral = cfg.max_lateral_spacings * problem.spacing * problem.s_sfm * log_alpha.exp()
    sd = signed_surface_distance(hand_points, surface, problem.normals_cam(frames), lateral)
    k = min(cfg.contact_k, sd.shape[1])
    nearest = sd.abs().topk(k, dim=1, largest=False).indices
    r = torch.gather(sd, 1, nearest) - cfg.contact_offset_m
    contact = gmof(r.square(), cfg.contact_scale_m).mean(-1)
    # Robust (saturating) per point: a few points judged inside by a noisy or partial cloud must not dominate.
    penetration = gmof(torch.relu(-cfg.penetration_margin_m - sd).square(), cfg.contact_scale_m).sum(-1)
    radius = log_alpha.exp() * problem.s_sfm
    far = torch.relu((hand_centroids - centre[:, None]).norm(dim=-1) - radius - cfg.centroid_margin_m).min(-1).values
    centroid = far.square() / cfg.contact_scale_m ** 2
    return {"contact": contact, "penetration": penetration, "centroid": centroid}


def object_reprojection(
    problem: ObjectProblem, log_alpha: Tensor, delta: Float[Tensor, "T 3"], idx: Tensor, uv0: Float[Tensor, "T N 2"],
    scale_px: float,
) -> Float[Tensor, " T"]:
    """Per frame: mean Geman-McClure of the object points' displacement from their SfM projections uv0."""
    every = torch.arange(problem.R.shape[0])
    uv, _ = project_with_depth(problem.K, problem.points_cam(log_alpha, delta, idx, every))
    return gmof(((uv - uv0) ** 2).sum(-1), scale_px).mean(-1)


def sfm_projections(problem: ObjectProblem, idx: Tensor) -> Float[Tensor, "T N 2"]:
    """Where SfM puts the points `idx` in every frame (independent of alpha: the similarity is about the camera)."""
    every = torch.arange(problem.R.shape[0])
    zero = torch.zeros(len(every), 3, dtype=torch.float64)
    with torch.no_grad():
        return project_with_depth(problem.K, problem.points_cam(torch.zeros((), dtype=torch.float64), zero, idx,
                                                                every))[0]


def initial_scale(problem: ObjectProblem, hand_centroids: Float[Tensor, "T H 3"]) -> float:
    """alpha0 = median over the observed frames of (hand depth / object centre depth in SfM units), with the
    hand whose centroid projects nearest the object centre (the image distance does not depend on alpha)."""
    f = problem.frames
    c, t = hand_centroids[f], problem.t_sfm[f].to(hand_centroids)
    uv_hand, _ = project_with_depth(problem.K, c)
    uv_obj, _ = project_with_depth(problem.K, t[:, None])
    nearest = (uv_hand - uv_obj).norm(dim=-1).argmin(-1)
    ratio = c[torch.arange(len(c)), nearest, 2] / t[:, 2]
    ratio = ratio[torch.isfinite(ratio) & (ratio > 0)]
    if ratio.numel() == 0:
        raise ValueError("the object and the hands are on different sides of the camera in every observed frame "
                         "(SfM depths <= 0?)")
    return float(ratio.median())


def search_scale(
    problem: ObjectProblem, hand_points: Float[Tensor, "T H M 3"], alpha0: float, cfg: AlignFitConfig
) -> float:
    """The alpha on a log grid around alpha0 with the lowest contact + penetration + centroid cost (delta = 0),
    over at most cfg.search_frames of the observed frames."""
    obs = torch.nonzero(problem.frames).flatten()
    frames = obs[subsample(len(obs), cfg.search_frames)]
    pts = hand_points[frames].double()
    cen, pts = pts.mean(2), pts.flatten(1, 2)
    zero = torch.zeros(len(frames), 3, dtype=torch.float64)
    grid = alpha0 * torch.logspace(-1.0, 1.0, cfg.scale_search, base=cfg.scale_search_range, dtype=torch.float64)
    best, best_cost = alpha0, math.inf
    with torch.no_grad():
        for a in grid.tolist():
            c = contact_terms(problem, pts, cen, torch.tensor(math.log(a), dtype=torch.float64), zero, frames, cfg)
            cost = float((cfg.w_contact * c["contact"] + cfg.w_penetration * c["penetration"]
                          + cfg.w_centroid * c["centroid"]).mean())
            if cost < best_cost:
                best, best_cost = a, cost
    return best


def active_points(
    problem: ObjectProblem, hand_points: Float[Tensor, "T M 3"], log_alpha: float, cfg: AlignFitConfig
) -> Tensor:
    """(F, A) indices of the hand points nearest to the object surface in each observed frame (F of them)."""
    frames = torch.nonzero(problem.frames).flatten()
    a = min(cfg.active_points, hand_points.shape[1])
    with torch.no_grad():
        surface = problem.points_cam(torch.tensor(log_alpha, dtype=torch.float64),
                                     torch.zeros(len(frames), 3, dtype=torch.float64), problem.idx, frames)
        d = torch.cdist(hand_points[frames].double(), surface).min(-1).values
    return d.topk(a, dim=1, largest=False).indices


@dataclass
class ObjectFit:
    """Result of (o) or (ho)."""

    log_alpha: float
    """log of the metric factor alpha (metres per SfM unit)."""
    delta: Float[Tensor, "T 3"]
    """Per-frame residual object translation (metres)."""
    terms: dict[str, float]
    """Final value of each energy term."""
    alpha_init: float
    """alpha from the depth ratio, before the search."""
    alpha_search: float
    """alpha picked by the 1-D search."""

    @property
    def alpha(self) -> float:
        return math.exp(self.log_alpha)


class _Energy:
    """The (o) terms for fixed subsets (object points, observed frames, active hand points)."""

    def __init__(self, problem: ObjectProblem, active: Tensor, cfg: AlignFitConfig):
        self.p, self.cfg, self.active = problem, cfg, active
        self.ridx = subsample(problem.x_obj.shape[0], cfg.max_reprojection_points)
        self.frames = torch.nonzero(problem.frames).flatten()
        self.uv0 = sfm_projections(problem, self.ridx)

    def __call__(self, hand_points: Float[Tensor, "T H M 3"], log_alpha: Tensor, delta: Tensor) -> dict[str, Tensor]:
        cfg, f = self.cfg, self.frames
        pts = hand_points[f]
        near = torch.gather(pts.flatten(1, 2), 1, self.active[..., None].expand(-1, -1, 3))
        c = contact_terms(self.p, near, pts.mean(2), log_alpha, delta[f], f, cfg)
        n = max(len(f), 1)
        return {
            "contact": cfg.w_contact * c["contact"].sum() / n,
            "penetration": cfg.w_penetration * c["penetration"].sum() / n,
            "centroid": cfg.w_centroid * c["centroid"].sum() / n,
            "reprojection": cfg.w_reprojection * object_reprojection(self.p, log_alpha, delta, self.ridx, self.uv0,
                                                                     cfg.reprojection_scale_px).mean(),
            "residual": cfg.w_residual * (delta.square().sum(-1) / cfg.residual_prior_m ** 2).mean(),
        }


def fit_object(problem: ObjectProblem, hand_points: Float[Tensor, "T H M 3"], cfg: AlignFitConfig) -> ObjectFit:
    """(o): alpha (and delta_t when cfg.residual_translation) with the hands fixed.

    `hand_points` are hand surface points in the camera frame (metres), per hand (`hand_points()`)."""
    if not problem.frames.any():
        raise ValueError("no frame has both an observed hand and an observed object pose")
    hand_points = hand_points.double()
    alpha0 = initial_scale(problem, hand_points.mean(2))
    alpha_s = search_scale(problem, hand_points, alpha0, cfg)
    energy = _Energy(problem, active_points(problem, hand_points.flatten(1, 2), math.log(alpha_s), cfg), cfg)
    log_alpha = torch.tensor(math.log(alpha_s), dtype=torch.float64, requires_grad=True)
    delta = torch.zeros(problem.R.shape[0], 3, dtype=torch.float64, requires_grad=cfg.residual_translation)
    params = [log_alpha] + ([delta] if cfg.residual_translation else [])
    _lbfgs(params, lambda: sum(energy(hand_points, log_alpha, delta).values()), cfg.object_iters)
    with torch.no_grad():
        terms = {k: float(v) for k, v in energy(hand_points, log_alpha, delta).items()}
    return ObjectFit(float(log_alpha.detach()), delta.detach().clone(), terms, alpha0, alpha_s)


# ----------------------------------------------------------------------------------------------
# (ho) joint refinement


@dataclass
class HandProblem:
    """One hand in the joint fit."""

    kp_local: Float[Tensor, "T 21 3"]
    """Posed keypoints without translation (metres)."""
    surface_local: Float[Tensor, "T M 3"]
    """Posed surface points (a vertex subset) without translation (metres)."""
    keypoints_2d: Float[Tensor, "T 21 3"]
    """Detections (u, v, confidence); confidence 0 where there is none."""


def hand_points(hands: list[HandProblem], transl: list[Float[Tensor, "T 3"]]) -> Float[Tensor, "T H M 3"]:
    """Each hand's surface points in the camera frame (the hands of a sequence share one model: same M)."""
    return torch.stack([h.surface_local.double() + t.double()[:, None] for h, t in zip(hands, transl)], 1)


def fit_joint(
    hands: list[HandProblem], transl: list[Float[Tensor, "T 3"]], problem: ObjectProblem, start: ObjectFit,
    cfg: AlignFitConfig,
) -> tuple[list[Float[Tensor, "T 3"]], ObjectFit]:
    """(ho): hand translations, alpha and delta together, with temporal smoothness (acceleration) of the hand
    translations and of the object translation. Returns (hand translations, object fit)."""
    active = active_points(problem, hand_points(hands, transl).flatten(1, 2), start.log_alpha, cfg)
    energy = _Energy(problem, active, cfg)
    log_alpha = torch.tensor(start.log_alpha, dtype=torch.float64, requires_grad=True)
    delta = start.delta.clone().double().requires_grad_(cfg.residual_translation)
    tr = [t.clone().double().requires_grad_(True) for t in transl]
    kp2d = [h.keypoints_2d.double() for h in hands]
    K = problem.K
    every = torch.arange(problem.R.shape[0])
    s2 = cfg.smooth_scale_m ** 2

    def terms() -> dict[str, Tensor]:
        e = energy(hand_points(hands, tr), log_alpha, delta)
        e["hand_2d"] = cfg.w_hand_2d * sum(
            keypoint_reprojection(h.kp_local.double() + t[:, None], k2, K, cfg.keypoint_scale_px).mean()
            for h, t, k2 in zip(hands, tr, kp2d))
        e["smooth_hand"] = cfg.w_smooth_hand * sum(
            translation_acceleration(t).square().sum(-1).sum() / s2 for t in tr) / max(len(every) - 2, 1)
        obj_t = problem.centre_cam(log_alpha, delta, every)
        e["smooth_object"] = cfg.w_smooth_object * translation_acceleration(obj_t).square().sum(-1).sum() / s2 \
            / max(len(every) - 2, 1)
        return e

    params = [log_alpha, *tr] + ([delta] if cfg.residual_translation else [])
    _lbfgs(params, lambda: sum(terms().values()), cfg.joint_iters)
    with torch.no_grad():
        final = {k: float(v) for k, v in terms().items()}
    fit = ObjectFit(float(log_alpha.detach()), delta.detach().clone(), final, start.alpha_init, start.alpha_search)
    return [t.detach().clone() for t in tr], fit
