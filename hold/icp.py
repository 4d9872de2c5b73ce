"""Similarity ICP on point clouds (numpy/scipy, CPU): the alignment step of HOLD's object metrics.

HOLD evaluates the reconstructed object only up to a similarity transform: the predicted frame-0
mesh is registered to the ground-truth one with point-to-point ICP that also estimates a scale,
keeping the best of several global starts (RANSAC on FPFH features there; a fixed set of 24
rotation starts here, see `icp_with_scale_multistart`). Everything here is pure maths on arrays
in metres; `hold.metrics` does the orchestration.

Transforms are 4x4 similarities `T = [[s R, t], [0, 1]]`, applied as `x_dst = s R x_src + t`.
"""
from __future__ import annotations

import itertools
from typing import Literal

import numpy as np
from jaxtyping import Float
from scipy.spatial import cKDTree

RotationStarts = Literal["identity", "octahedral"]


def _as_points(name: str, x: np.ndarray, func: str, min_points: int = 1) -> np.ndarray:
    """Validate an (N,3) point array and return it as float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(
            f"{func}: argument `{name}` has shape {tuple(x.shape)}; expected (N, 3) points in metres. "
            f"Fix: pass one point cloud per call, reshaped to (N, 3)."
        )
    if x.shape[0] < min_points:
        raise ValueError(
            f"{func}: argument `{name}` has {x.shape[0]} points; expected at least {min_points}. "
            f"Fix: sample more points from the surface."
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(
            f"{func}: argument `{name}` contains NaN or inf; expected finite coordinates. "
            f"Fix: drop invalid points before calling."
        )
    return x


def _workers(n: int) -> int:
    """k-d tree query threads: thread start-up costs more than it saves on small queries."""
    return -1 if n >= 20000 else 1


def similarity_matrix(s: float, R: Float[np.ndarray, "3 3"], t: Float[np.ndarray, "3"]) -> Float[np.ndarray, "4 4"]:
    """Pack (s, R, t) into a 4x4 similarity `[[s R, t], [0, 1]]`."""
    T = np.eye(4)
    T[:3, :3] = s * np.asarray(R, dtype=np.float64)
    T[:3, 3] = t
    return T


def decompose_similarity(T: Float[np.ndarray, "4 4"]) -> tuple[float, np.ndarray, np.ndarray]:
    """Split a 4x4 similarity into (s, R, t); s is the cube root of det of the 3x3 block."""
    T = np.asarray(T, dtype=np.float64)
    A = T[:3, :3]
    det = np.linalg.det(A)
    if det <= 0:
        raise ValueError(
            f"decompose_similarity: the 3x3 block of `T` has determinant {det:.3g}; expected > 0 "
            f"(a scaled rotation). Fix: pass a proper similarity, not a reflection or a degenerate matrix."
        )
    s = float(np.cbrt(det))
    return s, A / s, T[:3, 3].copy()


def apply_transform(T: Float[np.ndarray, "4 4"], x: Float[np.ndarray, "N 3"]) -> Float[np.ndarray, "N 3"]:
    """Apply a 4x4 (similarity or rigid) transform to points: `T @ x`."""
    T = np.asarray(T, dtype=np.float64)
    return np.asarray(x, dtype=np.float64) @ T[:3, :3].T + T[:3, 3]


def umeyama_np(
    src: Float[np.ndarray, "N 3"],
    dst: Float[np.ndarray, "N 3"],
    with_scale: bool = True,
    weights: Float[np.ndarray, "N"] | None = None,
) -> tuple[float, Float[np.ndarray, "3 3"], Float[np.ndarray, "3"]]:
    """Least-squares similarity (s, R, t) minimising sum_i w_i |s R src_i + t - dst_i|^2 (Umeyama 1991).

    R is a proper rotation (det +1) even when the best orthogonal fit would be a reflection.
    """
    src = _as_points("src", src, "umeyama_np", min_points=3)
    dst = _as_points("dst", dst, "umeyama_np", min_points=3)
    if src.shape != dst.shape:
        raise ValueError(
            f"umeyama_np: `src` has shape {src.shape} but `dst` has {dst.shape}; expected matching (N, 3) "
            f"correspondences. Fix: pass dst[i] as the match of src[i]."
        )
    if weights is None:
        w = np.full(len(src), 1.0 / len(src))
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape[0] != len(src) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(
                f"umeyama_np: `weights` must be (N,) = ({len(src)},) non-negative with a positive sum; "
                f"found shape {w.shape}, sum {w.sum() if w.size else 0:.3g}. Fix: pass one weight per pair."
            )
        w = w / w.sum()
    mu_s = w @ src
    mu_d = w @ dst
    xs = src - mu_s
    xd = dst - mu_d
    cov = (xd * w[:, None]).T @ xs  # sum_i w_i xd_i xs_i^T
    U, D, Vt = np.linalg.svd(cov)
    S = np.ones(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2] = -1.0  # flip the weakest axis: the closest proper rotation
    R = (U * S) @ Vt
    var_s = float(w @ np.sum(xs * xs, axis=1))
    if with_scale:
        if var_s <= 0:
            raise ValueError(
                "umeyama_np: all `src` points coincide, so the scale is undefined. "
                "Fix: pass at least 3 non-collinear points or use with_scale=False."
            )
        s = float(np.sum(D * S) / var_s)
    else:
        s = 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def init_centroid_rms(
    src: Float[np.ndarray, "N 3"],
    dst: Float[np.ndarray, "M 3"],
    with_scale: bool = True,
    R: Float[np.ndarray, "3 3"] | None = None,
) -> Float[np.ndarray, "4 4"]:
    """Similarity that maps src's centroid onto dst's and (with_scale) matches their RMS radii.

    `R` optionally rotates src about its centroid first (a global start for multi-start ICP).
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s = 1.0
    if with_scale:
        rms_s = np.sqrt(np.mean(np.sum((src - mu_s) ** 2, axis=1)))
        rms_d = np.sqrt(np.mean(np.sum((dst - mu_d) ** 2, axis=1)))
        s = float(rms_d / rms_s) if rms_s > 0 and rms_d > 0 else 1.0
    R = np.eye(3) if R is None else np.asarray(R, dtype=np.float64)
    return similarity_matrix(s, R, mu_d - s * R @ mu_s)


def icp_with_scale(
    src: Float[np.ndarray, "N 3"],
    dst: Float[np.ndarray, "M 3"],
    init: Float[np.ndarray, "4 4"] | None = None,
    max_iters: int = 50,
    tol: float = 1e-7,
    with_scale: bool = True,
    max_correspondence_m: float | None = None,
    dst_tree: cKDTree | None = None,
) -> tuple[Float[np.ndarray, "4 4"], dict]:
    """Point-to-point ICP estimating a similarity T with dst ≈ T @ src.

    Each iteration matches every transformed src point to its nearest dst point (k-d tree on dst)
    and re-solves the similarity from the ORIGINAL src to the matches (no drift from composing
    increments). Stops when the RMS match distance changes by less than `tol` (metres).

    init: starting similarity; None = align centroids and, with scale, RMS radii.
    max_correspondence_m: ignore pairs farther apart than this (None = use all pairs).
    dst_tree: a prebuilt cKDTree of `dst` (reused across multi-start calls).
    Returns (T, info) with info = {rmse (m, for the returned T), iters, converged, scale}.
    """
    src = _as_points("src", src, "icp_with_scale", min_points=3)
    dst = _as_points("dst", dst, "icp_with_scale", min_points=3)
    if max_iters < 1:
        raise ValueError(f"icp_with_scale: `max_iters` is {max_iters}; expected >= 1.")
    if init is None:
        T = init_centroid_rms(src, dst, with_scale)
    else:
        T = np.asarray(init, dtype=np.float64)
        if T.shape != (4, 4):
            raise ValueError(
                f"icp_with_scale: `init` has shape {T.shape}; expected a (4, 4) similarity. "
                f"Fix: pass None for the centroid/RMS initialisation."
            )
        T = T.copy()
    tree = dst_tree if dst_tree is not None else cKDTree(dst)

    def match(T_cur: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        d, idx = tree.query(apply_transform(T_cur, src), workers=_workers(len(src)))
        keep = np.ones(len(d), dtype=bool) if max_correspondence_m is None else d <= max_correspondence_m
        rmse = float(np.sqrt(np.mean(d[keep] ** 2))) if keep.any() else float("inf")
        return d, idx, keep, rmse

    _, idx, keep, rmse = match(T)
    converged = False
    iters = 0
    for iters in range(1, max_iters + 1):
        if keep.sum() < 3:
            break  # too few pairs within max_correspondence_m to solve a similarity
        s, R, t = umeyama_np(src[keep], dst[idx[keep]], with_scale=with_scale)
        T = similarity_matrix(s, R, t)
        _, idx, keep, new_rmse = match(T)
        change = abs(rmse - new_rmse)
        rmse = new_rmse
        if change < tol:
            converged = True
            break
    scale = float(np.cbrt(np.linalg.det(T[:3, :3])))
    return T, {"rmse": rmse, "iters": iters, "converged": converged, "scale": scale}


def octahedral_rotations() -> Float[np.ndarray, "24 3 3"]:
    """The 24 proper rotations of the cube (signed axis permutations with det +1), identity first."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            R = np.zeros((3, 3))
            R[np.arange(3), perm] = signs
            if np.linalg.det(R) > 0:
                mats.append(R)
    mats.sort(key=lambda R: -np.trace(R))  # identity (trace 3) first
    return np.stack(mats)


def symmetric_mean_sq_distance(a: np.ndarray, b: np.ndarray, tree_b: cKDTree | None = None) -> float:
    """mean_a min_b |a-b|^2 + mean_b min_a |a-b|^2 (metres^2): the criterion to rank ICP starts."""
    tree_b = tree_b if tree_b is not None else cKDTree(b)
    d_ab, _ = tree_b.query(a, workers=_workers(len(a)))
    d_ba, _ = cKDTree(a).query(b, workers=_workers(len(b)))
    return float(np.mean(d_ab**2) + np.mean(d_ba**2))


def icp_with_scale_multistart(
    src: Float[np.ndarray, "N 3"],
    dst: Float[np.ndarray, "M 3"],
    rotation_starts: RotationStarts = "octahedral",
    max_iters: int = 50,
    tol: float = 1e-7,
    with_scale: bool = True,
    subsample: int = 1000,
    seed: int = 0,
) -> tuple[Float[np.ndarray, "4 4"], dict]:
    """Global-ish similarity registration: ICP from several rotation starts, best symmetric fit wins.

    Every start (identity, or the 24 cube rotations about the centroid, all with centroid/RMS
    initialisation) runs ICP on a random subsample of at most `subsample` points of each cloud;
    the start with the lowest symmetric mean squared distance is then refined on all points.
    This plays the role of HOLD's best-of-N RANSAC+ICP, so symmetric objects are not penalised
    for an arbitrary flip. Returns (T, info) like `icp_with_scale`, plus info["start"].
    """
    src = _as_points("src", src, "icp_with_scale_multistart", min_points=3)
    dst = _as_points("dst", dst, "icp_with_scale_multistart", min_points=3)
    if rotation_starts == "identity":
        starts = np.eye(3)[None]
    elif rotation_starts == "octahedral":
        starts = octahedral_rotations()
    else:
        raise ValueError(
            f"icp_with_scale_multistart: `rotation_starts` is {rotation_starts!r}; expected 'identity' or "
            f"'octahedral'."
        )
    rng = np.random.default_rng(seed)
    src_sub = src if len(src) <= subsample else src[rng.choice(len(src), subsample, replace=False)]
    dst_sub = dst if len(dst) <= subsample else dst[rng.choice(len(dst), subsample, replace=False)]
    tree_sub = cKDTree(dst_sub)
    best_T, best_err, best_k = None, np.inf, 0
    for k, R in enumerate(starts):
        T0 = init_centroid_rms(src_sub, dst_sub, with_scale, R=R)
        T, _ = icp_with_scale(src_sub, dst_sub, T0, max_iters, tol, with_scale, dst_tree=tree_sub)
        err = symmetric_mean_sq_distance(apply_transform(T, src_sub), dst_sub, tree_sub)
        if err < best_err:
            best_T, best_err, best_k = T, err, k
    T, info = icp_with_scale(src, dst, best_T, max_iters, tol, with_scale)
    info["start"] = best_k
    return T, info
