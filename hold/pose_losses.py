"""Loss terms of the pose refinement (stage `refine`) as plain functions: networks frozen, poses free.

Everything is per frame (leading axis B = frames of the batch) so the caller can weight, mask and
report frames separately. Units are said per function: pixels for image terms, metres for 3D ones.

- silhouette: posed surface points of a node projected into the frame, against its label mask:
  points landing where the node cannot be (background) are pulled in along the mask's distance
  transform (bilinear lookup, differentiable), and mask pixels far from every projected point pull
  the points out (one-sided 2D chamfer). Cheap on CPU: no rendering.
- keypoints: robust (Geman-McClure), confidence-weighted 2D reprojection of the 21 keypoints.
- contact: the closest point of each hand contact zone (fingertip pads, palm) pulled onto the
  object surface, only for zones already within `radius` of it (not assumed in every frame).
- penetration: depth of hand points inside the object (negative object SDF).
- smoothness: acceleration of translations and of rotations (relative-rotation logs).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int, UInt8
from scipy.ndimage import distance_transform_edt
from torch import Tensor

from hold.geometry.rotations import matrix_to_axis_angle

IGNORE_LABEL = 255
BACKGROUND_LABEL = 0


# ----------------------------------------------------------------------------------------------
# Silhouettes


def allowed_distance(labels: UInt8[np.ndarray, "H W"]) -> tuple[Float[np.ndarray, "H W"], bool]:
    """Where any node may be in one frame, for the silhouette terms (numpy, precomputed once per frame).

    Returns (dist_outside, usable): the distance in pixels from each pixel centre to the nearest pixel
    that is not background (a node's own label, another foreground label: it may be hidden behind an
    occluder, amodal; or 255, unknown), zero there and growing over the background; usable is False
    when no pixel may hold a node (then the frame gives no silhouette signal). The same for every node.
    """
    allowed = np.asarray(labels) != BACKGROUND_LABEL
    if not allowed.any():
        return np.zeros(allowed.shape, np.float32), False
    return distance_transform_edt(~allowed).astype(np.float32), True


def mask_pixels(labels: UInt8[np.ndarray, "H W"], node_label: int, max_pixels: int,
                rng: np.random.Generator) -> Float[np.ndarray, "M 2"]:
    """Up to `max_pixels` pixel centres (x+0.5, y+0.5) labelled `node_label`, a random subset when
    there are more: the visible part of a node its projection must cover."""
    ys, xs = np.nonzero(np.asarray(labels) == node_label)
    if len(xs) > max_pixels:
        pick = rng.choice(len(xs), max_pixels, replace=False)
        xs, ys = xs[pick], ys[pick]
    return np.stack([xs, ys], 1).astype(np.float32) + 0.5


def bilinear_lookup(image: Float[Tensor, "B H W"], uv: Float[Tensor, "B N 2"]) -> Float[Tensor, "B N"]:
    """Bilinear interpolation of per-frame images at pixel coordinates uv (pixel centres at +0.5),
    differentiable in uv. Outside the image the border value is used."""
    B, H, W = image.shape
    grid = torch.stack([uv[..., 0] / W * 2 - 1, uv[..., 1] / H * 2 - 1], -1)  # align_corners=False convention
    out = F.grid_sample(image[:, None], grid[:, :, None], mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, 0, :, 0]


def distance_outside(dist: Float[Tensor, "B H W"], uv: Float[Tensor, "B N 2"]) -> Float[Tensor, "B N"]:
    """Distance-transform value at uv (pixels), plus how far uv lies outside the image, so points
    that leave the frame keep being pulled back."""
    B, H, W = dist.shape
    lim = torch.tensor([W, H], dtype=uv.dtype, device=uv.device)
    inside = torch.minimum(torch.maximum(uv, torch.zeros_like(uv)), lim)
    return bilinear_lookup(dist, uv) + (uv - inside).norm(dim=-1)


@torch.no_grad()
def nearest_points(
    mask_uv: Float[Tensor, "B M 2"], uv: Float[Tensor, "B N 2"], point_valid: Bool[Tensor, "B N"]
) -> Int[Tensor, "B M"]:
    """Index of the nearest valid projected point of each mask pixel (no gradient: the (B,M,N)
    distance matrix is the expensive part, so callers may reuse the result for a few steps)."""
    far = torch.where(point_valid[..., None], uv.detach(), torch.full_like(uv, 1e7))
    B, M, N = mask_uv.shape[0], mask_uv.shape[1], uv.shape[1]
    chunk = max(1, int(2**24 // max(M * N, 1)))  # frames per chunk: at most ~16M distances (64 MB) at once
    return torch.cat([torch.cdist(mask_uv[i:i + chunk], far[i:i + chunk]).argmin(-1) for i in range(0, B, chunk)])


def silhouette_loss(
    uv: Float[Tensor, "B N 2"],
    point_valid: Bool[Tensor, "B N"],
    dist_outside: Float[Tensor, "B H W"],
    mask_uv: Float[Tensor, "B M 2"],
    mask_valid: Bool[Tensor, "B M"],
    max_px: float = float("inf"),
    nearest: Int[Tensor, "B M"] | None = None,
    tolerance_px: float = 0.0,
) -> tuple[Float[Tensor, "B"], Float[Tensor, "B"]]:
    """(inward, outward) per frame, in pixels.

    inward: mean over valid projected points of their distance to where the node may be.
    outward: mean over the node's mask pixels of the distance to the nearest projected point
    (0 for a frame without mask pixels). `nearest` (from nearest_points) is computed when not given.
    Points behind the camera should be marked invalid. Each distance is truncated at `max_px`
    (robust to mask errors: beyond it a point or pixel still counts, but no longer pulls).
    `tolerance_px`: outward distances below it count as 0. Surface points project with gaps
    between them, so even at the true pose mask pixels are a fraction of a pixel from the nearest
    point; without a dead zone the term would favour spreading the points, i.e. moving the node
    toward the camera.
    """
    d_in = distance_outside(dist_outside, uv).clamp(max=max_px)
    w = point_valid.to(uv.dtype)
    inward = (d_in * w).sum(-1) / w.sum(-1).clamp_min(1.0)
    if nearest is None:
        nearest = nearest_points(mask_uv, uv, point_valid)
    near_uv = torch.gather(uv, 1, nearest[..., None].expand(-1, -1, 2))
    d_out = ((mask_uv - near_uv) ** 2).sum(-1).add(1e-12).sqrt()
    d_out = (d_out - tolerance_px).clamp(min=0.0, max=max_px)
    m = (mask_valid & point_valid.any(-1, keepdim=True)).to(uv.dtype)
    outward = (d_out * m).sum(-1) / m.sum(-1).clamp_min(1.0)
    return inward, outward


# ----------------------------------------------------------------------------------------------
# Keypoints


def gmof(r2: Tensor, sigma: float) -> Tensor:
    """Geman-McClure of squared residuals r2, scaled to pixels: sigma * r2 / (r2 + sigma^2).
    ~ r2 / sigma for small residuals, -> sigma (bounded) for outliers."""
    return sigma * r2 / (r2 + sigma**2)


def keypoint_loss(
    uv_pred: Float[Tensor, "B 21 2"], keypoints_2d: Float[Tensor, "B 21 3"], sigma_px: float
) -> Float[Tensor, "B"]:
    """Confidence-weighted robust reprojection error per frame (pixels, bounded by sigma_px per
    keypoint). keypoints_2d = (u, v, confidence); a frame with zero total confidence gives 0."""
    conf = keypoints_2d[..., 2]
    r2 = ((uv_pred - keypoints_2d[..., :2]) ** 2).sum(-1)
    return (conf * gmof(r2, sigma_px)).sum(-1) / conf.sum(-1).clamp_min(1e-8)


def keypoint_error_px(
    uv_pred: Float[Tensor, "B 21 2"], keypoints_2d: Float[Tensor, "B 21 3"]
) -> Float[Tensor, "B"]:
    """Plain confidence-weighted mean reprojection distance per frame (pixels), for reports."""
    conf = keypoints_2d[..., 2]
    d = (uv_pred - keypoints_2d[..., :2]).norm(dim=-1)
    return (conf * d).sum(-1) / conf.sum(-1).clamp_min(1e-8)


# ----------------------------------------------------------------------------------------------
# Object SDF, contact, penetration


def rigid_sdf_m(
    sdf_field: Callable[[Float[Tensor, "N 3"]], Float[Tensor, "N"]],
    x_cam: Float[Tensor, "B N 3"],
    T_cam_from_obj: Float[Tensor, "B 4 4"],
    scale: Tensor | float,
    far_radius: float = 1.5,
) -> Float[Tensor, "B N"]:
    """Signed distance (metres) of camera-frame points to a rigid object whose SDF field lives in
    its unit sphere: x_obj = R^T (x_cam - t) / scale, sdf_m = scale * field(x_obj).

    The field is only trained inside the unit sphere: a point outside is mapped onto the sphere and
    its radial excess is added (a lower bound of the true distance, exact for a point straight out
    from a surface point on the sphere). Points beyond `far_radius` (field units) are not sent
    through the field at all: their distance is taken as the excess alone (cheap; they are far
    from any contact anyway).
    """
    R, t = T_cam_from_obj[:, :3, :3], T_cam_from_obj[:, :3, 3]
    x_obj = torch.einsum("bji,bnj->bni", R, x_cam - t[:, None]) / scale
    r = x_obj.norm(dim=-1)
    excess = (r - 1.0).clamp_min(0.0)
    near = r.detach() < far_radius
    x_in = x_obj[near] / torch.clamp_min(r[near], 1.0)[:, None]
    s_near = sdf_field(x_in) if x_in.shape[0] else x_in.new_zeros(0)
    s_near = torch.where(excess[near] > 0, s_near.clamp_min(0.0) + excess[near], s_near)
    s = excess.clone()
    s[near] = s_near
    return s * scale


def contact_loss(
    sdf_m: Float[Tensor, "B N"], zone: Int[Tensor, "N"], num_zones: int, radius_m: float, tolerance_m: float = 0.0
) -> tuple[Float[Tensor, "B"], Float[Tensor, "B"]]:
    """(loss, zones in contact) per frame, for contact-zone points with object SDF `sdf_m` (metres)
    and `zone[n]` the zone (fingertip pad, palm) of point n.

    A zone counts as in contact when its closest point is already within `radius_m` of the surface
    (the gate is not differentiated): contact is never forced on a finger away from the object.
    For those zones the closest point is pulled onto the surface: loss = mean over contact zones of
    relu(min sdf - tolerance_m), metres. Only the closest point of a zone is pulled (a pad touches
    at a point, not everywhere), and only from outside (points inside are the penetration term's).
    """
    B = sdf_m.shape[0]
    zmin = torch.full((B, num_zones), float("inf"), dtype=sdf_m.dtype, device=sdf_m.device)
    zmin = zmin.scatter_reduce(1, zone.expand(B, -1), sdf_m, reduce="amin", include_self=True)
    gate = (zmin.detach() < radius_m).to(sdf_m.dtype)
    pull = torch.relu(torch.where(gate > 0, zmin, torch.zeros_like(zmin)) - tolerance_m)
    n = gate.sum(-1)
    return (pull * gate).sum(-1) / n.clamp_min(1.0), n


def penetration_loss(sdf_m: Float[Tensor, "B N"]) -> Float[Tensor, "B"]:
    """Mean penetration depth per frame (metres): relu(-sdf) averaged over all hand points, so a
    deeper or larger intersection costs proportionally more."""
    return torch.relu(-sdf_m).mean(-1)


def penetration_depth(sdf_m: Float[Tensor, "B N"]) -> Float[Tensor, "B"]:
    """Deepest hand point inside the object per frame (metres, 0 when none), for reports."""
    return torch.relu(-sdf_m).amax(-1)


# ----------------------------------------------------------------------------------------------
# Temporal smoothness


def translation_acceleration(x: Float[Tensor, "T 3"]) -> Float[Tensor, "T-2 3"]:
    """Second differences x[t+1] - 2 x[t] + x[t-1] (metres / frame^2)."""
    return x[2:] - 2 * x[1:-1] + x[:-2]


def rotation_acceleration(R: Float[Tensor, "T 3 3"]) -> Float[Tensor, "T-2 3"]:
    """Change of the relative rotation between consecutive frames (radians / frame^2):
    w_t = log(R_t^T R_{t+1}); acceleration = w_{t+1} - w_t. Zero for a constant angular velocity."""
    w = matrix_to_axis_angle(R[:-1].transpose(-1, -2) @ R[1:])
    return w[1:] - w[:-1]


def smoothness_loss(acc: Float[Tensor, "T-2 3"]) -> Tensor:
    """Mean squared norm of accelerations (0 for fewer than three frames)."""
    if acc.shape[0] == 0:
        return acc.sum() * 0.0
    return (acc**2).sum(-1).mean()
