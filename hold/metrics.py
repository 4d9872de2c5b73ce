"""Evaluation metrics with HOLD's (CVPR 2024) HO3D protocol: numpy in, python floats out.

Inputs are in metres, camera frame (OpenCV). Outputs use HOLD's units: millimetres for joints,
cm² for chamfer distances, degrees for rotations. F-scores are FRACTIONS in [0, 1] (HOLD prints
percent: multiply by 100 to compare with its tables).

Chamfer convention. HOLD's CD is the SUM of the two directed mean squared nearest-neighbour
distances, in cm²: ``CD = mean_a min_b |a-b|² + mean_b min_a |a-b|²`` (its ``calculate_metrics``
adds ``gt_to_gen`` and ``gen_to_gt``). `chamfer_distance` does the same by default
(``reduction="sum"``); ``reduction="mean"`` gives half of it, the averaged variant some papers use.
So two concentric spheres 1 cm apart score 2 cm² here, as they would in HOLD's tables.

Keys returned by `evaluate_trajectories` (a key is left out when pred or gt lacks its inputs):

==========================  ========  ==================================================================
key                         unit      protocol
==========================  ========  ==================================================================
num_frames                  count     T, the number of frames (all of them, valid or not)
num_valid_frames            count     frames with ``gt["valid"]`` true (all when absent)
mpjpe_ra_r, mpjpe_ra_l      mm        root-relative MPJPE, right/left hand: both skeletons minus their
                                      own keypoint 0 (wrist), mean L2 over 21 keypoints, then mean over
                                      valid frames (HOLD ``mpjpe_ra_r``)
hand_v2v_mm_r, _l           mm        same, on mesh vertices (each minus its own wrist keypoint); only
                                      when pred and gt vertex counts match
hand_v2v_mm                 mm        mean of the present hands' ``hand_v2v_mm_*``
cd_hand_r, cd_hand_l        cm²       hand surface chamfer per frame, camera frame, no alignment
                                      (``n_samples_hand_relative`` surface samples each), mean over
                                      valid frames; any mesh topology (e.g. a marching-cubes hand)
cd_obj                      cm²       HOLD ``cd_icp``: the FIRST valid frame's posed object meshes,
                                      ``n_samples`` area-weighted surface points each (same seed),
                                      pred aligned to gt by similarity ICP (multi-start, best fit),
                                      then the summed chamfer distance above
f5_obj, f10_obj             [0, 1]    F-score at 5 mm / 10 mm after the same alignment
                                      (HOLD ``f5_icp``/``f10_icp`` divided by 100)
cd_h                        cm²       HOLD ``cd_right``: per frame, object points minus that entity's
                                      wrist keypoint (right hand if present in both, else left), no
                                      rotation and no alignment; summed chamfer, mean over valid frames
f5_h, f10_h                 [0, 1]    F-scores of the same hand-relative point sets
mrrpe_ho_mm                 mm        HOLD ``mrrpe_ho``: |(c_pred - root_pred) - (c_gt - root_gt)| with
                                      c = bounding-box centre of the posed object vertices, root = wrist
                                      keypoint of the same hand as ``cd_h``; mean over valid frames
obj_rot_err_deg_median      deg       geodesic angle between pred and gt object MOTION since the first
obj_rot_err_deg_mean                  valid frame, R_t R_0ᵀ (independent of each side's canonical frame,
                                      which differ: SfM unit sphere vs. template)
obj_trans_err_mm_median     mm        distance between pred and gt camera-frame positions of each
obj_trans_err_mm_mean                 object's canonical bounding-box centre (a body-fixed point)
pen_depth_mm, pen_max_mm,   mm,       contact/penetration of the PREDICTION's posed hand vertices and
pen_mean_mm, pen_ratio,     [0, 1]    object mesh (`hold.contact_metrics`), over gt's valid frames; the
contact_ratio, tip_dist_mm,           same keys prefixed ``gt_`` for the ground truth's own values (a
tip_min_dist_mm                       key set is left out when that side lacks hand vertices or object)
==========================  ========  ==================================================================

Known differences from HOLD's scripts, all deliberate: HOLD runs ICP on 1000 sampled points and
scores mesh VERTICES (so the number depends on vertex density); here both ICP and scores use
``n_samples`` surface samples. HOLD's global starts are RANSAC on FPFH features; here they are the
24 cube rotations (`hold.icp.icp_with_scale_multistart`). HOLD picks 3000 random vertices per frame
for ``cd_h``; here ``n_samples_hand_relative`` surface samples (same count by default).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
from jaxtyping import Float, Int
from scipy.spatial import ConvexHull, QhullError, cKDTree

from hold.contact_metrics import ContactConfig, contact_metrics
from hold.geometry.mesh_sampling import sample_triangles
from hold.icp import apply_transform, icp_with_scale_multistart

Align = Literal["icp_scale", "icp_rigid", "none"]
Reduction = Literal["sum", "mean"]
SIDE_SUFFIX = {"right": "r", "left": "l"}


@dataclass
class MetricsConfig:
    """Evaluation options beyond (n_samples, seed); defaults follow HOLD's protocol."""

    align: Align = "icp_scale"
    """Object alignment before CD/F-score: similarity ICP (HOLD), rigid ICP, or none."""
    rotation_starts: Literal["identity", "octahedral"] = "octahedral"
    """ICP global starts: identity only, or the 24 cube rotations (best symmetric fit wins)."""
    icp_max_iters: int = 50
    """Maximum ICP iterations per start (count)."""
    icp_tol_m: float = 1e-7
    """ICP stops when the RMS match distance changes by less than this (metres)."""
    icp_subsample: int = 1000
    """Points per cloud used to rank the ICP starts (HOLD registers 1000); the winner is then
    refined on all points (count)."""
    n_samples_hand_relative: int = 3000
    """Surface points per object per frame for cd_h (count; HOLD draws 3000 vertices)."""
    f_thresholds_m: tuple[float, float] = (0.005, 0.010)
    """F-score thresholds reported as f5/f10 (metres)."""


# ----------------------------------------------------------------------------------------------
# Input checking
# ----------------------------------------------------------------------------------------------


def _array(func: str, name: str, x: Any, tail: tuple[int | None, ...], fix: str, ndim: int | None = None) -> np.ndarray:
    """float64 array whose trailing dims match `tail` (None = any size), else one clear ValueError."""
    arr = np.asarray(x, dtype=np.float64)
    want_ndim = ndim if ndim is not None else len(tail)
    ok = arr.ndim == want_ndim and all(t is None or s == t for s, t in zip(arr.shape[-len(tail):], tail))
    if not ok:
        expected = "(" + ", ".join("*" if t is None else str(t) for t in ((None,) * (want_ndim - len(tail)) + tail)) + ")"
        raise ValueError(f"{func}: argument `{name}` has shape {tuple(arr.shape)}; expected {expected}. Fix: {fix}")
    return arr


def _valid_mask(func: str, valid: Any, T: int) -> np.ndarray:
    if valid is None:
        return np.ones(T, dtype=bool)
    v = np.asarray(valid).astype(bool).reshape(-1)
    if v.shape[0] != T:
        raise ValueError(
            f"{func}: argument `valid` has {v.shape[0]} entries; expected one per frame ({T}). "
            f"Fix: pass a (T,) boolean array, or None to use all frames."
        )
    return v


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.mean(x[np.isfinite(x)])) if np.isfinite(x).any() else float("nan")


def _nanmedian(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.median(x[np.isfinite(x)])) if np.isfinite(x).any() else float("nan")


# ----------------------------------------------------------------------------------------------
# Hand joints
# ----------------------------------------------------------------------------------------------


def mpjpe_per_frame(
    pred_kp: Float[np.ndarray, "T J 3"],
    gt_kp: Float[np.ndarray, "T J 3"],
    root: int = 0,
    valid: np.ndarray | None = None,
) -> Float[np.ndarray, "T"]:
    """Root-relative mean per-joint position error per frame, in mm (NaN where not valid).

    Each skeleton is translated so that its own joint `root` (the wrist) is at the origin, so a
    global translation error costs nothing (HOLD's ``mpjpe_ra``). Inputs in metres.
    """
    fix = "pass (T, 21, 3) keypoints in metres, pred and gt with the same T and joint order."
    pred = _array("mpjpe", "pred_kp", pred_kp, (None, 3), fix, ndim=3)
    gt = _array("mpjpe", "gt_kp", gt_kp, (None, 3), fix, ndim=3)
    if pred.shape != gt.shape:
        raise ValueError(f"mpjpe: `pred_kp` has shape {pred.shape} but `gt_kp` has {gt.shape}. Fix: {fix}")
    if not 0 <= root < pred.shape[1]:
        raise ValueError(f"mpjpe: `root` is {root}; expected an index in [0, {pred.shape[1]}).")
    v = _valid_mask("mpjpe", valid, pred.shape[0])
    pred_ra = pred - pred[:, root : root + 1]
    gt_ra = gt - gt[:, root : root + 1]
    err = np.linalg.norm(pred_ra - gt_ra, axis=-1).mean(axis=1) * 1000.0
    err[~v] = np.nan
    return err


def mpjpe(
    pred_kp: Float[np.ndarray, "T J 3"],
    gt_kp: Float[np.ndarray, "T J 3"],
    root: int = 0,
    valid: np.ndarray | None = None,
) -> float:
    """Root-relative MPJPE in mm, averaged over joints then valid frames (see `mpjpe_per_frame`)."""
    return _nanmean(mpjpe_per_frame(pred_kp, gt_kp, root, valid))


# ----------------------------------------------------------------------------------------------
# Point-set distances
# ----------------------------------------------------------------------------------------------


def _nn_distances(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance from each a to its nearest b, from each b to its nearest a), metres."""
    d_ab, _ = cKDTree(b).query(a, workers=-1 if len(a) >= 20000 else 1)
    d_ba, _ = cKDTree(a).query(b, workers=-1 if len(b) >= 20000 else 1)
    return d_ab, d_ba


def _points(func: str, name: str, x: Any) -> np.ndarray:
    pts = _array(func, name, x, (3,), "pass an (N, 3) point array in metres.", ndim=2)
    if pts.shape[0] == 0 or not np.all(np.isfinite(pts)):
        raise ValueError(
            f"{func}: argument `{name}` is empty or has NaN/inf ({pts.shape[0]} points). "
            f"Fix: pass at least one finite point."
        )
    return pts


def _cd_from_distances(d_ab: np.ndarray, d_ba: np.ndarray, reduction: Reduction) -> float:
    # metres -> cm before squaring, as HOLD does (x100)
    total = float(np.mean((d_ab * 100.0) ** 2) + np.mean((d_ba * 100.0) ** 2))
    if reduction == "sum":
        return total
    if reduction == "mean":
        return 0.5 * total
    raise ValueError(f"chamfer_distance: `reduction` is {reduction!r}; expected 'sum' (HOLD) or 'mean'.")


def _f_from_distances(d_pred_to_gt: np.ndarray, d_gt_to_pred: np.ndarray, threshold_m: float) -> float:
    precision = float(np.mean(d_pred_to_gt < threshold_m))
    recall = float(np.mean(d_gt_to_pred < threshold_m))
    if precision + recall == 0.0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def chamfer_distance(
    a: Float[np.ndarray, "N 3"], b: Float[np.ndarray, "M 3"], reduction: Reduction = "sum"
) -> float:
    """Chamfer distance in cm² between point sets given in metres.

    reduction="sum" (HOLD): mean_a min_b |a-b|² + mean_b min_a |a-b|²; "mean": half of that.
    """
    a = _points("chamfer_distance", "a", a)
    b = _points("chamfer_distance", "b", b)
    return _cd_from_distances(*_nn_distances(a, b), reduction)


def fscore(pred: Float[np.ndarray, "N 3"], gt: Float[np.ndarray, "M 3"], threshold_m: float) -> float:
    """F-score in [0, 1] at `threshold_m` (metres): harmonic mean of precision (pred points closer
    than the threshold to gt) and recall (gt points closer than it to pred); 0 when both are 0."""
    if not threshold_m > 0:
        raise ValueError(f"fscore: `threshold_m` is {threshold_m}; expected a positive distance in metres (5 mm = 0.005).")
    pred = _points("fscore", "pred", pred)
    gt = _points("fscore", "gt", gt)
    return _f_from_distances(*_nn_distances(pred, gt), threshold_m)


def point_set_scores(
    pred: Float[np.ndarray, "N 3"],
    gt: Float[np.ndarray, "M 3"],
    thresholds_m: tuple[float, float] = (0.005, 0.010),
) -> dict[str, float]:
    """{cd (cm², summed), f5, f10 (fractions)} from one pair of nearest-neighbour queries."""
    pred = _points("point_set_scores", "pred", pred)
    gt = _points("point_set_scores", "gt", gt)
    d_pg, d_gp = _nn_distances(pred, gt)
    return {
        "cd": _cd_from_distances(d_pg, d_gp, "sum"),
        "f5": _f_from_distances(d_pg, d_gp, thresholds_m[0]),
        "f10": _f_from_distances(d_pg, d_gp, thresholds_m[1]),
    }


# ----------------------------------------------------------------------------------------------
# Surface sampling
# ----------------------------------------------------------------------------------------------


def sample_surface(
    vertices: Float[np.ndarray, "V 3"], faces: Int[np.ndarray, "F 3"], n: int, seed: int = 0
) -> Float[np.ndarray, "n 3"]:
    """`n` points uniformly distributed over a triangle mesh's area, reproducible from `seed`.

    Faces are drawn with probability proportional to area, then a uniform point in the face by
    the square-root barycentric trick. Same (mesh topology, n, seed) -> same barycentric samples,
    so a mesh and a rigidly/similarly moved copy give exactly corresponding points.
    """
    v = _array("sample_surface", "vertices", vertices, (3,), "pass (V, 3) vertex positions.", ndim=2)
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] == 0:
        raise ValueError(
            f"sample_surface: argument `faces` has shape {tuple(f.shape)}; expected (F, 3) triangle indices "
            f"with F >= 1. Fix: triangulate the mesh (trimesh does on load)."
        )
    if not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"sample_surface: argument `faces` has dtype {f.dtype}; expected integers.")
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(
            f"sample_surface: `faces` index range [{f.min()}, {f.max()}] is outside the {len(v)} vertices. "
            f"Fix: pass the faces that belong to these vertices."
        )
    if n < 1:
        raise ValueError(f"sample_surface: `n` is {n}; expected >= 1 points.")
    return sample_triangles(v[f], n, np.random.default_rng(seed))[0]


def _surface_points(func: str, name: str, obj: Any, n: int, seed: int) -> np.ndarray:
    """Points from a mesh-like argument: trimesh-like object, (vertices, faces), dict, or (N,3) points."""
    if hasattr(obj, "vertices") and hasattr(obj, "faces"):
        return sample_surface(np.asarray(obj.vertices), np.asarray(obj.faces), n, seed)
    if isinstance(obj, dict) and "vertices" in obj and "faces" in obj:
        return sample_surface(obj["vertices"], obj["faces"], n, seed)
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return sample_surface(obj[0], obj[1], n, seed)
    pts = _array(
        func, name, obj, (3,),
        "pass a mesh (trimesh.Trimesh, (vertices, faces) or {'vertices', 'faces'}) or (N, 3) points.", ndim=2,
    )
    if len(pts) > n:  # a point cloud larger than the budget: deterministic subset
        pts = pts[np.random.default_rng(seed).choice(len(pts), n, replace=False)]
    return pts


# ----------------------------------------------------------------------------------------------
# Object shape (frame-0, similarity-aligned) and hand-relative object
# ----------------------------------------------------------------------------------------------


def object_metrics(
    pred: Any,
    gt: Any,
    n_samples: int = 10000,
    seed: int = 0,
    align: Align = "icp_scale",
    config: MetricsConfig | None = None,
) -> dict[str, float]:
    """HOLD's object shape metrics: {cd (cm²), f5, f10 (fractions), align_scale}.

    pred, gt: posed object meshes in the camera frame (HOLD uses the first frame) as
    trimesh.Trimesh, (vertices, faces), {'vertices', 'faces'}, or (N, 3) point clouds.
    Both surfaces are sampled with the same seed, pred is aligned to gt (`align`), then scored.
    `config` supplies the ICP options (its `align` is ignored in favour of the argument).
    """
    cfg = config or MetricsConfig()
    pred_pts = _surface_points("object_metrics", "pred", pred, n_samples, seed)
    gt_pts = _surface_points("object_metrics", "gt", gt, n_samples, seed)
    scale = 1.0
    if align in ("icp_scale", "icp_rigid"):
        T, info = icp_with_scale_multistart(
            pred_pts, gt_pts,
            rotation_starts=cfg.rotation_starts, max_iters=cfg.icp_max_iters, tol=cfg.icp_tol_m,
            with_scale=align == "icp_scale", subsample=cfg.icp_subsample, seed=seed,
        )
        pred_pts = apply_transform(T, pred_pts)
        scale = info["scale"]
    elif align != "none":
        raise ValueError(f"object_metrics: `align` is {align!r}; expected 'icp_scale', 'icp_rigid' or 'none'.")
    scores = point_set_scores(pred_pts, gt_pts, cfg.f_thresholds_m)
    scores["align_scale"] = float(scale)
    return scores


def _frames_of_points(func: str, name: str, x: Any) -> list[np.ndarray]:
    if isinstance(x, np.ndarray) and x.ndim == 3:
        return [x[t] for t in range(x.shape[0])]
    if isinstance(x, (list, tuple)):
        return [np.asarray(p, dtype=np.float64) for p in x]
    raise ValueError(
        f"{func}: argument `{name}` must be a (T, N, 3) array or a list of T (N_t, 3) arrays; "
        f"found {type(x).__name__} with shape {np.shape(x)}."
    )


def hand_relative_scores_per_frame(
    pred_obj_pts: Float[np.ndarray, "T N 3"] | Sequence[np.ndarray],
    pred_root: Float[np.ndarray, "T 3"],
    gt_obj_pts: Float[np.ndarray, "T M 3"] | Sequence[np.ndarray],
    gt_root: Float[np.ndarray, "T 3"],
    valid: np.ndarray | None = None,
    thresholds_m: tuple[float, float] = (0.005, 0.010),
) -> dict[str, np.ndarray]:
    """Per-frame {cd (cm²), f5, f10} of the object expressed relative to the hand root.

    Each side's object points are translated by minus that side's root (wrist) position, with
    no rotation and no alignment, so errors in the hand-object relative placement count fully.
    Frames not valid, or with non-finite points, are NaN.
    """
    func = "cd_hand_relative"
    pred_frames = _frames_of_points(func, "pred_obj_pts", pred_obj_pts)
    gt_frames = _frames_of_points(func, "gt_obj_pts", gt_obj_pts)
    T = len(gt_frames)
    fix = "pass one (3,) root (wrist) position per frame, in metres."
    pr = _array(func, "pred_root", pred_root, (3,), fix, ndim=2)
    gr = _array(func, "gt_root", gt_root, (3,), fix, ndim=2)
    if not (len(pred_frames) == T == len(pr) == len(gr)):
        raise ValueError(
            f"{func}: frame counts differ: pred_obj_pts {len(pred_frames)}, gt_obj_pts {T}, pred_root {len(pr)}, "
            f"gt_root {len(gr)}. Fix: pass the same T frames for all four."
        )
    v = _valid_mask(func, valid, T)
    out = {k: np.full(T, np.nan) for k in ("cd", "f5", "f10")}
    for t in range(T):
        p, g = pred_frames[t], gt_frames[t]
        if not v[t] or p.size == 0 or g.size == 0 or not (np.all(np.isfinite(p)) and np.all(np.isfinite(g))):
            continue
        s = point_set_scores(p - pr[t], g - gr[t], thresholds_m)
        for k in out:
            out[k][t] = s[k]
    return out


def cd_hand_relative(
    pred_obj_pts: Float[np.ndarray, "T N 3"] | Sequence[np.ndarray],
    pred_root: Float[np.ndarray, "T 3"],
    gt_obj_pts: Float[np.ndarray, "T M 3"] | Sequence[np.ndarray],
    gt_root: Float[np.ndarray, "T 3"],
    valid: np.ndarray | None = None,
) -> float:
    """CD_h in cm²: hand-root-relative object chamfer distance (summed), mean over valid frames."""
    return _nanmean(hand_relative_scores_per_frame(pred_obj_pts, pred_root, gt_obj_pts, gt_root, valid)["cd"])


# ----------------------------------------------------------------------------------------------
# Object pose
# ----------------------------------------------------------------------------------------------


def _rotation_part(T: np.ndarray) -> np.ndarray:
    """Nearest rotation to each 3x3 block (polar decomposition): strips a folded-in scale."""
    U, _, Vt = np.linalg.svd(T[..., :3, :3])
    d = np.sign(np.linalg.det(U @ Vt))
    U = U.copy()
    U[..., :, 2] *= d[..., None]
    return U @ Vt


def rotation_angle_deg(R: Float[np.ndarray, "*B 3 3"]) -> Float[np.ndarray, "*B"]:
    """Geodesic angle of rotation matrices in degrees (atan2 form: accurate near 0 and 180)."""
    R = np.asarray(R, dtype=np.float64)
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    w = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    sin = np.linalg.norm(w, axis=-1) / 2.0
    return np.degrees(np.arctan2(sin, cos))


def pose_errors(
    pred_T: Float[np.ndarray, "T 4 4"],
    gt_T: Float[np.ndarray, "T 4 4"],
    relative_to_first: bool = False,
    valid: np.ndarray | None = None,
) -> dict[str, Any]:
    """Object pose errors per frame plus their median/mean (NaN / skipped where not valid).

    rot_deg: geodesic angle of R_pred R_gtᵀ (degrees; a scale folded into T is stripped).
    trans_mm: |t_pred - t_gt|, the error of the object origin's camera-frame position (mm).
    relative_to_first: compare motions since the first valid frame, T_t T_0⁻¹, instead of
    absolute poses; the rotation part is then independent of each side's canonical frame.
    """
    fix = "pass (T, 4, 4) camera-from-object transforms, pred and gt with the same T."
    P = _array("pose_errors", "pred_T", pred_T, (4, 4), fix, ndim=3)
    G = _array("pose_errors", "gt_T", gt_T, (4, 4), fix, ndim=3)
    if P.shape != G.shape:
        raise ValueError(f"pose_errors: `pred_T` has shape {P.shape} but `gt_T` has {G.shape}. Fix: {fix}")
    v = _valid_mask("pose_errors", valid, P.shape[0])
    if not v.any():
        raise ValueError("pose_errors: no valid frame. Fix: pass `valid` with at least one true entry.")
    if relative_to_first:
        f0 = int(np.argmax(v))
        P = P @ np.linalg.inv(P[f0])
        G = G @ np.linalg.inv(G[f0])
    R_err = _rotation_part(P) @ np.swapaxes(_rotation_part(G), -1, -2)
    rot = rotation_angle_deg(R_err)
    trans = np.linalg.norm(P[:, :3, 3] - G[:, :3, 3], axis=-1) * 1000.0
    rot[~v] = np.nan
    trans[~v] = np.nan
    return {
        "rot_deg": rot,
        "rot_deg_median": _nanmedian(rot),
        "rot_deg_mean": _nanmean(rot),
        "trans_mm": trans,
        "trans_mm_median": _nanmedian(trans),
        "trans_mm_mean": _nanmean(trans),
    }


# ----------------------------------------------------------------------------------------------
# Whole sequences
# ----------------------------------------------------------------------------------------------


def _get(func: str, d: Any, path: str, key: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        found = sorted(d.keys()) if isinstance(d, dict) else type(d).__name__
        raise ValueError(
            f"{func}: `{path}` has no key '{key}' (found {found}). "
            f"Fix: build the dict as documented in hold.metrics.evaluate_trajectories."
        )
    return d[key]


def _posed_object(func: str, obj: dict, who: str, T: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(canonical vertices scaled, faces, T_cam_from_obj (T,4,4), scale) of an object dict."""
    verts = _array(func, f"{who}['object']['vertices']", _get(func, obj, f"{who}['object']", "vertices"), (3,),
                   "pass the canonical mesh vertices as (N, 3).", ndim=2)
    faces = np.asarray(_get(func, obj, f"{who}['object']", "faces"))
    T_cam_from_obj = _array(func, f"{who}['object']['T_cam_from_obj']", _get(func, obj, f"{who}['object']", "T_cam_from_obj"),
                            (4, 4), "pass one (4, 4) camera-from-object transform per frame.", ndim=3)
    if len(T_cam_from_obj) != T:
        raise ValueError(
            f"{func}: `{who}['object']['T_cam_from_obj']` has {len(T_cam_from_obj)} frames; expected {T} "
            f"(the frame count of gt). Fix: pass one pose per frame."
        )
    scale = float(obj.get("scale", 1.0))
    return verts * scale, faces, T_cam_from_obj, scale


def hand_chamfer(pred_verts: Float[np.ndarray, "T V 3"], pred_faces: Int[np.ndarray, "F 3"],
                 gt_verts: Float[np.ndarray, "T W 3"], gt_faces: Int[np.ndarray, "G 3"],
                 valid: np.ndarray, n_samples: int = 3000, seed: int = 0) -> float:
    """Hand surface chamfer (cm², summed convention) per frame in the camera frame, no alignment,
    mean over valid frames: compares reconstructed hand meshes of any topology with the truth."""
    cds = [chamfer_distance(sample_surface(pred_verts[t], pred_faces, n_samples, seed),
                            sample_surface(gt_verts[t], gt_faces, n_samples, seed))
           for t in np.flatnonzero(valid)]
    return float(np.mean(cds))


def evaluate_trajectories(
    pred: dict,
    gt: dict,
    n_samples: int = 10000,
    seed: int = 0,
    config: MetricsConfig | None = None,
    contact_config: ContactConfig | None = None,
) -> dict[str, float]:
    """All HOLD metrics for one sequence from plain dicts (keys and units in the module docstring).

    pred / gt = {
        "hands": {"right"|"left": {"keypoints": (T,21,3), "vertices": (T,V,3) optional,
                                   "faces": (F,3) optional}},
        "object": {"vertices": (N,3) canonical, "faces": (F,3), "T_cam_from_obj": (T,4,4),
                   "scale": float optional (x_cam = T_cam_from_obj @ (scale * x_obj))} or None,
        "valid": (T,) bool optional, read from gt only (frames to score),
    }
    All positions in metres, camera frame. Metrics whose inputs are missing on either side are
    left out. Returns python floats.
    """
    func = "evaluate_trajectories"
    cfg = config or MetricsConfig()
    gt_hands = gt.get("hands") or {}
    pred_hands = pred.get("hands") or {}
    for side in list(gt_hands) + list(pred_hands):
        if side not in SIDE_SUFFIX:
            raise ValueError(f"{func}: hand side {side!r} is unknown; expected 'right' or 'left'.")
    sides = [s for s in ("right", "left") if s in gt_hands and s in pred_hands]

    # Frame count from gt: any hand, else the object poses.
    if sides:
        T = len(np.asarray(_get(func, gt_hands[sides[0]], f"gt['hands']['{sides[0]}']", "keypoints")))
    elif gt.get("object") is not None:
        T = len(np.asarray(_get(func, gt["object"], "gt['object']", "T_cam_from_obj")))
    else:
        raise ValueError(f"{func}: gt has neither hands nor an object. Fix: pass ground truth to evaluate against.")
    valid = _valid_mask(func, gt.get("valid"), T)
    if not valid.any():
        raise ValueError(f"{func}: gt['valid'] is false for every frame; nothing to evaluate.")
    out: dict[str, float] = {"num_frames": int(T), "num_valid_frames": int(valid.sum())}

    # Hands: root-relative joints and vertices.
    roots: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    v2v = []
    for side in sides:
        sfx = SIDE_SUFFIX[side]
        kp_p = _get(func, pred_hands[side], f"pred['hands']['{side}']", "keypoints")
        kp_g = _get(func, gt_hands[side], f"gt['hands']['{side}']", "keypoints")
        out[f"mpjpe_ra_{sfx}"] = mpjpe(kp_p, kp_g, root=0, valid=valid)
        kp_p, kp_g = np.asarray(kp_p, dtype=np.float64), np.asarray(kp_g, dtype=np.float64)
        roots[side] = (kp_p[:, 0], kp_g[:, 0])
        vp, vg = pred_hands[side].get("vertices"), gt_hands[side].get("vertices")
        if vp is not None and vg is not None and np.shape(vp) == np.shape(vg):
            vp = np.asarray(vp, dtype=np.float64) - kp_p[:, None, 0]
            vg = np.asarray(vg, dtype=np.float64) - kp_g[:, None, 0]
            err = np.linalg.norm(vp - vg, axis=-1).mean(axis=1) * 1000.0
            out[f"hand_v2v_mm_{sfx}"] = _nanmean(np.where(valid, err, np.nan))
            v2v.append(out[f"hand_v2v_mm_{sfx}"])
        fp, fg = pred_hands[side].get("faces"), gt_hands[side].get("faces")
        if vp is not None and vg is not None and fp is not None and fg is not None:
            out[f"cd_hand_{sfx}"] = hand_chamfer(np.asarray(pred_hands[side]["vertices"]), np.asarray(fp),
                                                 np.asarray(gt_hands[side]["vertices"]), np.asarray(fg), valid,
                                                 n_samples=cfg.n_samples_hand_relative, seed=seed)
    if v2v:
        out["hand_v2v_mm"] = float(np.mean(v2v))

    for who, d in (("", pred), ("gt_", gt)):  # prediction-only statistics, for each side on its own
        out.update({who + k: v for k, v in trajectory_contact_metrics(d, valid, contact_config).items()})

    if gt.get("object") is None or pred.get("object") is None:
        return out

    # Object: posed meshes and body-fixed points per frame.
    vp_obj, fp_obj, Tp, _ = _posed_object(func, pred["object"], "pred", T)
    vg_obj, fg_obj, Tg, _ = _posed_object(func, gt["object"], "gt", T)
    f0 = int(np.argmax(valid))
    shape = object_metrics(
        (apply_transform(Tp[f0], vp_obj), fp_obj), (apply_transform(Tg[f0], vg_obj), fg_obj),
        n_samples=n_samples, seed=seed, align=cfg.align, config=cfg,
    )
    out["cd_obj"], out["f5_obj"], out["f10_obj"] = shape["cd"], shape["f5"], shape["f10"]

    rot = pose_errors(Tp, Tg, relative_to_first=True, valid=valid)["rot_deg"]
    out["obj_rot_err_deg_median"], out["obj_rot_err_deg_mean"] = _nanmedian(rot), _nanmean(rot)
    # Body-fixed point: each object's canonical bounding-box centre, posed per frame.
    cp = np.einsum("tij,j->ti", Tp, np.append(0.5 * (vp_obj.min(0) + vp_obj.max(0)), 1.0))[:, :3]
    cg = np.einsum("tij,j->ti", Tg, np.append(0.5 * (vg_obj.min(0) + vg_obj.max(0)), 1.0))[:, :3]
    trans = np.where(valid, np.linalg.norm(cp - cg, axis=-1) * 1000.0, np.nan)
    out["obj_trans_err_mm_median"], out["obj_trans_err_mm_mean"] = _nanmedian(trans), _nanmean(trans)

    if sides:
        root_p, root_g = roots[sides[0]]  # right hand when present in both, else left
        n_h = cfg.n_samples_hand_relative
        sp = sample_surface(vp_obj, fp_obj, n_h, seed)
        sg = sample_surface(vg_obj, fg_obj, n_h, seed)
        pts_p = np.einsum("tij,nj->tni", Tp[:, :3, :3], sp) + Tp[:, None, :3, 3]
        pts_g = np.einsum("tij,nj->tni", Tg[:, :3, :3], sg) + Tg[:, None, :3, 3]
        hr = hand_relative_scores_per_frame(pts_p, root_p, pts_g, root_g, valid, cfg.f_thresholds_m)
        out["cd_h"], out["f5_h"], out["f10_h"] = _nanmean(hr["cd"]), _nanmean(hr["f5"]), _nanmean(hr["f10"])
        # MRRPE: object centre as HOLD takes it, the bounding-box centre of the posed vertices.
        bc_p = _posed_bbox_centres(Tp, vp_obj)
        bc_g = _posed_bbox_centres(Tg, vg_obj)
        mrrpe = np.linalg.norm((bc_p - root_p) - (bc_g - root_g), axis=-1) * 1000.0
        out["mrrpe_ho_mm"] = _nanmean(np.where(valid, mrrpe, np.nan))
    return out


def _posed_bbox_centres(T_cam_from_obj: np.ndarray, x_obj: np.ndarray) -> np.ndarray:
    """(T,3) centres of the axis-aligned boxes of the posed vertices, one per frame.

    Coordinate extremes of an affinely mapped point set are reached at its convex-hull vertices,
    so only those are posed (exact, and far fewer than all vertices).
    """
    try:
        x_obj = x_obj[ConvexHull(x_obj).vertices]
    except QhullError:  # flat or degenerate: pose every vertex
        pass
    x_cam = np.einsum("tij,nj->tni", T_cam_from_obj[:, :3, :3], x_obj) + T_cam_from_obj[:, None, :3, 3]
    return 0.5 * (x_cam.min(axis=1) + x_cam.max(axis=1))


def _contact_inputs(d: dict) -> tuple[tuple | None, str]:
    """((hands, metric object vertices, faces, rigid poses), '') of a trajectory dict, or (None, why
    there are no contact statistics)."""
    obj = d.get("object")
    hands = {}
    for side, h in (d.get("hands") or {}).items():
        v = h.get("vertices")
        if v is not None and np.ndim(v) == 3 and np.shape(v)[1] > 0:
            hands[side] = (np.asarray(v, dtype=np.float64), h.get("keypoints"))
    if obj is None:
        return None, "no object"
    if not hands:
        return None, "no hand vertices"
    T_cam_from_obj = np.asarray(obj["T_cam_from_obj"], dtype=np.float64)
    # A scale folded into the poses moves into the mesh, so distances are measured in metres.
    det = np.linalg.det(T_cam_from_obj[:, :3, :3])
    s_t = np.cbrt(det[np.isfinite(det)])
    if len(s_t) == 0:
        return None, "no finite object pose"
    if np.ptp(s_t) > 1e-3 * abs(float(np.median(s_t))) or float(np.median(s_t)) <= 0:
        return None, ("object poses whose folded-in scale changes over time or mirrors (no single metric "
                      "scale to measure distances in)")
    s = float(np.median(s_t))
    T_rigid = T_cam_from_obj.copy()
    T_rigid[:, :3, :3] /= s
    verts = np.asarray(obj["vertices"], dtype=np.float64) * float(obj.get("scale", 1.0)) * s
    return (hands, verts, np.asarray(obj["faces"]), T_rigid), ""


def contact_unavailable_reason(d: dict) -> str | None:
    """Why `trajectory_contact_metrics(d)` is {} (e.g. 'no object'), None when it is not."""
    return _contact_inputs(d)[1] or None


def trajectory_contact_metrics(d: dict, valid: np.ndarray | None = None,
                               config: ContactConfig | None = None) -> dict[str, float]:
    """Contact/penetration keys (`hold.contact_metrics`) of one trajectory dict (the form
    `evaluate_trajectories` takes); {} when it has no object or no hand with vertices, or when its
    poses fold in a scale that changes over time (`contact_unavailable_reason` says which)."""
    inputs, _ = _contact_inputs(d)
    if inputs is None:
        return {}
    hands, verts, faces, T_rigid = inputs
    return contact_metrics(hands, verts, faces, T_rigid, valid=valid, config=config)
