"""Image maths of the built-in mask estimate (preprocess/mask_estimate.py): hand silhouettes rasterised from the
fitted hand mesh, GrabCut seeds (from the hand, a box or the previous frame's mask), GrabCut with a confidence
measure, and frame-to-frame propagation of a mask by dense optical flow.

Pixel convention (DESIGN.md): pixel (u, v) covers [u, u+1) x [v, v+1), its centre is (u + 0.5, v + 0.5); a camera
point x projects to (K x)[:2] / (K x)[2] in those coordinates. OpenCV's remapping puts pixel centres at integers, which
only matters for absolute coordinates (flow is a displacement).
"""
from __future__ import annotations

import math

import cv2
import numpy as np
from jaxtyping import Bool, Float, Int, UInt8

from preprocess.sfm import mask_bbox
from preprocess.sfm import project_points as sfm_project_points

# GrabCut's per-pixel classes (cv2.GC_*): sure / probable background and foreground.
GC_BGD, GC_FGD, GC_PR_BGD, GC_PR_FGD = cv2.GC_BGD, cv2.GC_FGD, cv2.GC_PR_BGD, cv2.GC_PR_FGD
_GMM_COMPONENTS = 5
"""Gaussians per colour model in OpenCV's GrabCut."""


# ----------------------------------------------------------------------------------------------
# Hand silhouette


def project_points(
    K: Float[np.ndarray, "3 3"], x_cam: Float[np.ndarray, "N 3"]
) -> tuple[Float[np.ndarray, "N 2"], Float[np.ndarray, " N"]]:
    """Pixel coordinates (u, v) of camera-frame points and their depth z (metres); points not in front of the
    camera (z <= 1e-9) give nan pixels, which drop their triangles from the silhouette."""
    x_cam = np.asarray(x_cam, np.float64)
    uv, front = sfm_project_points(np.asarray(K, np.float64), np.eye(4), 1.0, x_cam)
    uv[~front] = np.nan
    return uv, x_cam[:, 2]


def _cover_centres(
    tri: Float[np.ndarray, "F 3 2"], u0: Int[np.ndarray, " F"], v0: Int[np.ndarray, " F"], nu: Int[np.ndarray, " F"],
    nv: Int[np.ndarray, " F"], tile: int, out: Bool[np.ndarray, "H W"],
) -> None:
    """Set the pixels of `out` whose centre lies in a triangle, testing a tile x tile block from (u0, v0) per
    triangle (nu x nv of it used). Inside = on the inner side of all three edges (edge functions >= 0 after
    orienting the triangle counter-clockwise in pixel coordinates)."""
    off = np.arange(tile)
    pu = u0[:, None, None] + off[None, None, :]  # (F, 1, S)
    pv = v0[:, None, None] + off[None, :, None]  # (F, S, 1)
    use = (off[None, None, :] < nu[:, None, None]) & (off[None, :, None] < nv[:, None, None])
    cx, cy = pu + 0.5, pv + 0.5
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    sign = np.sign(area)[:, None, None]
    inside = use
    for p, q in ((a, b), (b, c), (c, a)):
        e = (q[:, 0] - p[:, 0])[:, None, None] * (cy - p[:, 1][:, None, None]) \
            - (q[:, 1] - p[:, 1])[:, None, None] * (cx - p[:, 0][:, None, None])
        inside = inside & (e * sign >= 0)
    f, iy, ix = np.nonzero(inside)
    out[v0[f] + iy, u0[f] + ix] = True


def rasterize_silhouette(
    uv: Float[np.ndarray, "V 2"], faces: Int[np.ndarray, "F 3"], size: tuple[int, int], tile: int = 8
) -> Bool[np.ndarray, "H W"]:
    """Pixels whose centre (u + 0.5, v + 0.5) a projected triangle covers: the mesh's silhouette, size=(W, H).

    Exact at pixel centres (no dilation as with cv2.fillPoly, whose edges are inclusive). Triangles with a vertex
    behind the camera (nan) or of zero area are skipped. Small triangles are tested in one batch of tile x tile
    blocks; the few larger ones one by one.
    """
    W, H = size
    out = np.zeros((H, W), bool)
    tri = np.asarray(uv, np.float64)[np.asarray(faces)]  # (F, 3, 2)
    tri = tri[np.isfinite(tri).all(axis=(1, 2))]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    tri = tri[e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0] != 0]  # zero area: every edge test would pass
    lo, hi = tri.min(axis=1), tri.max(axis=1)
    # pixel indices whose centres fall in the triangle's bounding box, clipped to the image
    u0 = np.maximum(np.ceil(lo[:, 0] - 0.5), 0).astype(np.int64)
    v0 = np.maximum(np.ceil(lo[:, 1] - 0.5), 0).astype(np.int64)
    u1 = np.minimum(np.floor(hi[:, 0] - 0.5), W - 1).astype(np.int64)
    v1 = np.minimum(np.floor(hi[:, 1] - 0.5), H - 1).astype(np.int64)
    nu, nv = u1 - u0 + 1, v1 - v0 + 1
    keep = (nu > 0) & (nv > 0)
    small = keep & (nu <= tile) & (nv <= tile)
    if small.any():
        _cover_centres(tri[small], u0[small], v0[small], nu[small], nv[small], tile, out)
    for i in np.flatnonzero(keep & ~small):
        n = int(max(nu[i], nv[i]))
        _cover_centres(tri[i:i + 1], u0[i:i + 1], v0[i:i + 1], nu[i:i + 1], nv[i:i + 1], n, out)
    return out


# ----------------------------------------------------------------------------------------------
# Morphology


def disk(radius_px: float) -> UInt8[np.ndarray, "k k"]:
    """Structuring element: pixels whose centre is within `radius_px` of the centre pixel's centre."""
    r = int(math.floor(radius_px))
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return (x * x + y * y <= radius_px * radius_px + 1e-9).astype(np.uint8)


def dilate(mask: Bool[np.ndarray, "H W"], radius_px: float) -> Bool[np.ndarray, "H W"]:
    """Pixels within `radius_px` (centre to centre) of the mask."""
    if radius_px < 1:
        return mask.copy()
    return cv2.dilate(mask.astype(np.uint8), disk(radius_px)).astype(bool)


def erode(mask: Bool[np.ndarray, "H W"], radius_px: float) -> Bool[np.ndarray, "H W"]:
    """Mask pixels whose whole `radius_px` disk is inside the mask (the image border counts as inside)."""
    if radius_px < 1:
        return mask.copy()
    return cv2.erode(mask.astype(np.uint8), disk(radius_px), borderType=cv2.BORDER_REPLICATE).astype(bool)


def equivalent_diameter(mask: Bool[np.ndarray, "H W"]) -> float:
    """Diameter (pixels) of the disk with the mask's area: the object's size for size-relative radii."""
    return 2.0 * math.sqrt(float(mask.sum()) / math.pi)


def keep_seeded_components(
    mask: Bool[np.ndarray, "H W"], seed: Bool[np.ndarray, "H W"]
) -> Bool[np.ndarray, "H W"]:
    """The connected components (8-connected) of `mask` that touch `seed`; the largest one when none does."""
    n, comp = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask.copy()
    hit = np.unique(comp[seed & mask])
    hit = hit[hit > 0]
    if hit.size == 0:
        hit = np.array([1 + int(np.argmax(np.bincount(comp[mask].ravel(), minlength=n)[1:]))])
    return np.isin(comp, hit)


# ----------------------------------------------------------------------------------------------
# Propagation


def to_gray(rgb: UInt8[np.ndarray, "H W 3"]) -> UInt8[np.ndarray, "H W"]:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def backward_flow(
    gray_cur: UInt8[np.ndarray, "H W"], gray_prev: UInt8[np.ndarray, "H W"], winsize: int = 15, levels: int = 4
) -> Float[np.ndarray, "H W 2"]:
    """Dense flow (Farneback) from the current frame to the previous one: pixel x of the current frame shows
    what the previous frame showed at x + flow(x) (pixels). Backward, so that warping is a lookup per pixel."""
    return cv2.calcOpticalFlowFarneback(gray_cur, gray_prev, None, pyr_scale=0.5, levels=levels, winsize=winsize,
                                        iterations=3, poly_n=5, poly_sigma=1.1, flags=0)


def warp_mask(
    mask_prev: Bool[np.ndarray, "H W"], flow_cur_to_prev: Float[np.ndarray, "H W 2"]
) -> Bool[np.ndarray, "H W"]:
    """The previous frame's mask carried to the current frame along the backward flow (bilinear, > 0.5)."""
    H, W = mask_prev.shape
    xs, ys = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    map_x = xs + flow_cur_to_prev[..., 0].astype(np.float32)
    map_y = ys + flow_cur_to_prev[..., 1].astype(np.float32)
    warped = cv2.remap(mask_prev.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return warped > 0.5


# ----------------------------------------------------------------------------------------------
# GrabCut seeds


def seed_from_mask(
    mask: Bool[np.ndarray, "H W"], hand: Bool[np.ndarray, "H W"], sure_radius_px: float, probable_radius_px: float
) -> UInt8[np.ndarray, "H W"]:
    """GrabCut classes around a mask that is about right (the previous frame's, warped): its erosion is sure
    foreground, its dilation minus that probable foreground, the rest sure background. Hand pixels are never sure
    foreground (a finger may have moved over the object) but stay probable inside the dilation: the fitted hand is
    amodal, the object may be in front of it, so colour decides there."""
    gc = np.full(mask.shape, GC_BGD, np.uint8)
    gc[dilate(mask, probable_radius_px)] = GC_PR_FGD
    gc[erode(mask, sure_radius_px) & ~hand] = GC_FGD
    return gc


def seed_from_box(
    box: tuple[float, float, float, float], size: tuple[int, int], hand: Bool[np.ndarray, "H W"] | None = None
) -> UInt8[np.ndarray, "H W"]:
    """GrabCut classes of a user box (x0, y0, x1, y1) in continuous pixel coordinates: pixels whose centre is
    inside are probable foreground, the rest sure background; hand pixels inside are probable background."""
    W, H = size
    x0, y0, x1, y1 = box
    u = np.arange(W) + 0.5
    v = np.arange(H) + 0.5
    inside = ((v >= y0) & (v < y1))[:, None] & ((u >= x0) & (u < x1))[None, :]
    gc = np.where(inside, GC_PR_FGD, GC_BGD).astype(np.uint8)
    if hand is not None:
        gc[inside & hand] = GC_PR_BGD
    return gc


def convex_hull_mask(mask: Bool[np.ndarray, "H W"]) -> Bool[np.ndarray, "H W"]:
    """The filled convex hull of the mask's pixel centres."""
    out = np.zeros(mask.shape, np.uint8)
    ys, xs = np.nonzero(mask)
    if xs.size < 3:
        return mask.copy()
    hull = cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32))
    cv2.fillConvexPoly(out, hull, 1)
    return out.astype(bool)


def robust_gaussian(
    pixels: Float[np.ndarray, "N 3"], keep: float = 0.6, iterations: int = 3
) -> tuple[Float[np.ndarray, " 3"], Float[np.ndarray, "3 3"]]:
    """Mean and covariance of the dominant colour of `pixels`: refitted on the `keep` fraction nearest to the
    current fit (Mahalanobis), so that a minority of other colours (the object in front of the hand) is ignored."""
    x = np.asarray(pixels, np.float64)
    mu = np.median(x, axis=0)
    sel = x
    for _ in range(iterations):
        cov = np.cov(sel.T) + np.eye(3) * 4.0  # +4: colour quantisation / a flat hand must not give a singular fit
        d = mahalanobis_sq(x, mu, cov)
        sel = x[d <= np.quantile(d, keep)]
        mu = sel.mean(axis=0)
    return mu, np.cov(sel.T) + np.eye(3) * 4.0


def mahalanobis_sq(x: Float[np.ndarray, "N 3"], mu: Float[np.ndarray, " 3"], cov: Float[np.ndarray, "3 3"]
                   ) -> Float[np.ndarray, " N"]:
    d = np.asarray(x, np.float64) - mu
    return np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)


def seed_from_hand(
    rgb: UInt8[np.ndarray, "H W 3"], hand: Bool[np.ndarray, "H W"], hand_band_px: float, reach: float = 0.5,
    skin_maha: float = 16.0,
) -> tuple[UInt8[np.ndarray, "H W"], Bool[np.ndarray, "H W"]]:
    """GrabCut classes for an object held by `hand` (its fitted, amodal silhouette), and the candidate region.

    The object is where the hand is (in front of the palm, hiding fingers) or what it encloses (its convex hull),
    with colours unlike the skin: the skin colour is the dominant colour of the hand's core (robust fit), and
    pixels of hull + hand farther than `skin_maha` (squared Mahalanobis) from it are probable foreground. Skin-like
    pixels of the hand's core are sure background (the background colour model must hold the skin, or the
    object's would take it); a ring of `reach` x the hull's equivalent diameter around the hull is probable
    background (the object may stick out of the hand); everything farther is sure background.
    """
    hull = convex_hull_mask(hand)
    core = erode(hand, hand_band_px)
    if core.sum() < 10:
        core = hand
    gc = np.full(hand.shape, GC_BGD, np.uint8)
    if not core.any():
        return gc, np.zeros_like(hand)
    mu, cov = robust_gaussian(rgb[core].reshape(-1, 3))
    skin_like = (mahalanobis_sq(rgb.reshape(-1, 3), mu, cov) <= skin_maha).reshape(hand.shape)
    candidate = (hull | hand) & ~skin_like
    gc[dilate(hull | hand, max(1.0, reach * equivalent_diameter(hull)))] = GC_PR_BGD
    gc[candidate] = GC_PR_FGD
    gc[core & skin_like] = GC_BGD
    return gc, candidate


# ----------------------------------------------------------------------------------------------
# GrabCut


def gmm_log_likelihood(model: Float[np.ndarray, "1 65"], pixels: Float[np.ndarray, "N 3"]) -> Float[np.ndarray, " N"]:
    """log p(colour) under one of cv2.grabCut's colour models (5 full-covariance Gaussians stored as weights[5],
    means[5x3], covariances[5x3x3] in one row)."""
    m = np.asarray(model, np.float64).ravel()
    k = _GMM_COMPONENTS
    weights, means, covs = m[:k], m[k:4 * k].reshape(k, 3), m[4 * k:13 * k].reshape(k, 3, 3)
    x = np.asarray(pixels, np.float64)
    logs = []
    for w, mu, cov in zip(weights, means, covs):
        if w <= 0:
            continue
        # A tiny ridge (0-255 colour scale) so inv / det never fail. OpenCV's own fix differs: it adds 0.01 to the
        # diagonal only of covariances with a determinant <= epsilon, and the model it returns already holds that.
        cov = cov + np.eye(3) * 1e-3
        inv = np.linalg.inv(cov)
        d = x - mu
        maha = np.einsum("ni,ij,nj->n", d, inv, d)
        logs.append(math.log(w) - 0.5 * (maha + math.log(np.linalg.det(cov)) + 3 * math.log(2 * math.pi)))
    if not logs:
        return np.full(len(x), -np.inf)
    return np.logaddexp.reduce(np.stack(logs), axis=0)


def grabcut(
    rgb: UInt8[np.ndarray, "H W 3"], classes: UInt8[np.ndarray, "H W"], iterations: int = 3, margin_px: int = 16
) -> tuple[Bool[np.ndarray, "H W"], Float[np.ndarray, "H W"]]:
    """GrabCut initialised with per-pixel classes; returns (foreground, colour log-likelihood ratio fg vs bg).

    Runs on the box of the not-sure-background pixels grown by `margin_px` (the background colour model then
    comes from the object's surroundings, and it is faster). The ratio is 0 outside that box; it says how much the
    colour alone favours foreground: near 0 = the colour does not decide (a low-confidence pixel).
    """
    H, W = classes.shape
    fg = np.zeros((H, W), bool)
    llr = np.zeros((H, W), np.float32)
    box = mask_bbox(classes != GC_BGD)
    if box is None:
        return fg, llr
    x0, y0 = max(0, box[0] - margin_px), max(0, box[1] - margin_px)
    x1, y1 = min(W, box[2] + margin_px), min(H, box[3] + margin_px)
    crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    gc = classes[y0:y1, x0:x1].copy()
    has_fg = np.isin(gc, (GC_FGD, GC_PR_FGD)).any()
    has_bg = np.isin(gc, (GC_BGD, GC_PR_BGD)).any()
    if not (has_fg and has_bg):  # GrabCut needs samples of both colour models
        fg[y0:y1, x0:x1] = np.isin(gc, (GC_FGD, GC_PR_FGD))
        return fg, llr
    bgd_model = np.zeros((1, 13 * _GMM_COMPONENTS), np.float64)
    fgd_model = np.zeros((1, 13 * _GMM_COMPONENTS), np.float64)
    cv2.setRNGSeed(0)  # its k-means initialisation is random: same input, same mask
    cv2.grabCut(crop, gc, None, bgd_model, fgd_model, iterations, cv2.GC_INIT_WITH_MASK)
    fg[y0:y1, x0:x1] = np.isin(gc, (GC_FGD, GC_PR_FGD))
    pix = crop.reshape(-1, 3).astype(np.float64)
    llr[y0:y1, x0:x1] = (gmm_log_likelihood(fgd_model, pix) - gmm_log_likelihood(bgd_model, pix)).reshape(gc.shape)
    return fg, llr


def iou(a: Bool[np.ndarray, "H W"], b: Bool[np.ndarray, "H W"], valid: Bool[np.ndarray, "H W"] | None = None) -> float:
    """Intersection over union of two masks (over `valid` pixels only when given); 1 when both are empty."""
    if valid is not None:
        a, b = a & valid, b & valid
    union = int((a | b).sum())
    return 1.0 if union == 0 else float((a & b).sum()) / union
