"""Hand-object contact and penetration statistics from posed meshes (numpy, CPU).

Everything is measured in the object's rigid (metric) canonical frame: the hand vertices of frame t
are mapped by the inverse object pose, so one distance structure for the object mesh serves every
frame. Signed distance = exact point-to-triangle distance (negative inside); inside = ray parity
against the object mesh when it is closed (trimesh's `contains`, Embree-accelerated when `embreex`
is installed), else the angle-weighted pseudonormal of the nearest feature (`MeshDistance`).
Frames are scored independently; statistics need only the prediction, so they are reported with
or without ground truth.

Per frame t (hand vertices v, object surface S, d(v) = signed distance to S, metres):

=====================  ===========================================================================
pen_depth (frame)      max over hand vertices of max(0, -d(v)): how deep the deepest vertex is inside
pen_mean (frame)       mean of -d(v) over the vertices inside (0 when none is)
in_contact (frame)     min over hand vertices of d(v) <= contact_threshold_m (touching or inside)
tip_dist (frame)       |d| at the five fingertip keypoints (4, 8, 12, 16, 20), mean and min
=====================  ===========================================================================

Sequence keys (`contact_metrics`; means over the frames given by `valid`):

=====================  ========  ====================================================================
pen_depth_mm           mm        mean over frames of the frame's max penetration depth
pen_max_mm             mm        max over frames of the same
pen_mean_mm            mm        mean over frames of pen_mean (frames without penetration count as 0)
pen_ratio              [0, 1]    fraction of frames with penetration depth > pen_threshold_m (1 mm)
contact_ratio          [0, 1]    fraction of frames in contact (a vertex within contact_threshold_m,
                                 2 mm, of the surface, or inside it)
tip_dist_mm            mm        mean over frames and the 5 fingertips of the fingertip-surface distance
tip_min_dist_mm        mm        mean over frames of the closest fingertip's distance
=====================  ========  ====================================================================

Two hands: a frame's depth is the max over hands, its contact is "any hand", its fingertip
distances are pooled over both hands. Vertices stand in for the hand surface, so a contact finer
than the vertex spacing (MANO: about 3-5 mm on the fingers) is seen at the nearest vertex.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np
from jaxtyping import Bool, Float, Int
from scipy.spatial import cKDTree

from hold.geometry.triangles import REGION_EDGE, REGION_VERTEX, closest_point_on_triangles_np
from hold.hands.base import FINGERTIP_KEYPOINTS

CONTACT_KEYS = ("pen_depth_mm", "pen_max_mm", "pen_mean_mm", "pen_ratio", "contact_ratio", "tip_dist_mm",
                "tip_min_dist_mm")


@dataclass
class ContactConfig:
    """Thresholds of the contact and penetration statistics."""

    pen_threshold_m: float = 0.001
    """A frame counts as penetrating when its deepest hand vertex is deeper than this (metres)."""
    contact_threshold_m: float = 0.002
    """A frame counts as in contact when a hand vertex is closer than this to the object surface, or
    inside it (metres)."""


# ----------------------------------------------------------------------------------------------
# Exact point-to-mesh distance (closest points: hold.geometry.triangles)
# ----------------------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def _orient_outward(mesh) -> None:
    """Make the winding consistent, then point each connected part's normals outward: the part's
    area-weighted normal flux through a sphere about its centroid must be positive (true for a closed
    or mostly closed outward surface, whatever trimesh can tell for open ones)."""
    import trimesh

    trimesh.repair.fix_winding(mesh)
    faces = np.asarray(mesh.faces).copy()
    tri = np.asarray(mesh.vertices)[faces]
    area_n = 0.5 * np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    centre = tri.mean(axis=1)
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(faces))
    for part in np.unique(labels):
        m = labels == part
        w = np.linalg.norm(area_n[m], axis=1)
        c = (centre[m] * w[:, None]).sum(0) / max(w.sum(), 1e-30)
        if np.einsum("ij,ij->", centre[m] - c, area_n[m]) < 0:
            faces[m] = faces[m][:, ::-1]
    mesh.faces = faces


class MeshDistance:
    """Exact unsigned and signed distance from points to one triangle mesh (metres).

    Candidates come from a k-d tree over triangle centroids; a candidate set is accepted only when
    it provably holds the nearest triangle (every other triangle's centroid is farther than the
    best distance found plus the largest centroid-to-corner radius), else k grows up to all faces.

    Sign (inside = negative): ray parity (trimesh `contains`, Embree when installed) for a closed
    mesh; for an open one (a hole, a cut at the grid border), the angle-weighted pseudonormal of the
    nearest feature (Baerentzen & Aanaes 2005), which needs consistently oriented faces (fixed on
    load) and is exact wherever the nearest surface is not a hole's rim.
    """

    def __init__(self, vertices: Float[np.ndarray, "V 3"], faces: Int[np.ndarray, "F 3"], name: str = "mesh",
                 sign: Literal["auto", "parity", "pseudonormal"] = "auto"):
        """`sign`: how inside is told; auto = ray parity when the mesh is closed, else pseudonormals."""
        if sign not in ("auto", "parity", "pseudonormal"):
            raise ValueError(f"MeshDistance: sign is {sign!r}; expected 'auto', 'parity' or 'pseudonormal'.")
        v = np.asarray(vertices, dtype=np.float64)
        f = np.asarray(faces, dtype=np.int64)
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
            raise ValueError(f"MeshDistance: {name} has vertices {v.shape} and faces {f.shape}; expected (V, 3) "
                             f"and (F, 3) with F >= 1. Fix: pass a triangle mesh.")
        if f.min() < 0 or f.max() >= len(v) or not np.all(np.isfinite(v)):
            raise ValueError(f"MeshDistance: {name} faces index 0..{f.max()} of {len(v)} vertices (or the vertices "
                             f"hold NaN/inf). Fix: pass a valid, finite triangle mesh.")
        import trimesh  # heavy import, only when a mesh is measured

        # Geometry only, duplicate positions merged (texture seams split vertices), degenerate
        # faces dropped: ray parity and pseudonormals both need the connected surface.
        mesh = trimesh.Trimesh(v, f, process=True)
        if len(mesh.faces) == 0:
            raise ValueError(f"MeshDistance: every triangle of {name} has zero area. Fix: pass a real surface.")
        self.watertight = bool(mesh.is_watertight)
        self.use_parity = sign == "parity" or (sign == "auto" and self.watertight)
        if not self.use_parity:
            _orient_outward(mesh)
        self.mesh = mesh
        self.faces = np.asarray(mesh.faces, dtype=np.int64)
        self.tri = np.asarray(mesh.vertices, dtype=np.float64)[self.faces]
        self.centroids = self.tri.mean(axis=1)
        self.r_max = float(np.linalg.norm(self.tri - self.centroids[:, None], axis=-1).max())
        self.tree = cKDTree(self.centroids)
        self.lo, self.hi = self.tri.reshape(-1, 3).min(axis=0), self.tri.reshape(-1, 3).max(axis=0)
        if not self.use_parity:
            self._pseudonormals()

    def _pseudonormals(self) -> None:
        """Face normals, angle-weighted vertex normals and edge normals (sum of the two faces)."""
        fn = _unit(np.cross(self.tri[:, 1] - self.tri[:, 0], self.tri[:, 2] - self.tri[:, 0]))
        vn = np.zeros((int(self.faces.max()) + 1, 3))
        for k in range(3):  # interior angle at corner k
            e1 = _unit(self.tri[:, (k + 1) % 3] - self.tri[:, k])
            e2 = _unit(self.tri[:, (k + 2) % 3] - self.tri[:, k])
            angle = np.arccos(np.clip(np.einsum("ij,ij->i", e1, e2), -1.0, 1.0))
            np.add.at(vn, self.faces[:, k], angle[:, None] * fn)
        edges = np.sort(self.faces[:, [[0, 1], [1, 2], [2, 0]]].reshape(-1, 2), axis=1)  # ab, bc, ca per face
        _, inv = np.unique(edges, axis=0, return_inverse=True)
        en = np.zeros((int(inv.max()) + 1, 3))
        np.add.at(en, inv.reshape(-1), np.repeat(fn, 3, axis=0))
        self.face_normals, self.vertex_normals = fn, vn
        self.edge_normals = en[inv.reshape(-1)].reshape(-1, 3, 3)

    @property
    def num_faces(self) -> int:
        return int(len(self.tri))

    def _nearest(self, p: np.ndarray, cap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(distance, closest point, triangle, region) per point; exact where distance <= cap."""
        dist, closest = np.full(len(p), np.inf), np.zeros_like(p)
        tri_id, region = np.zeros(len(p), dtype=np.int64), np.zeros(len(p), dtype=np.int64)
        todo = np.arange(len(p))
        F = self.num_faces
        k = min(8, F)
        while len(todo):
            q = p[todo]
            dc, idx = self.tree.query(q, k=k)
            dc, idx = dc.reshape(len(q), k), idx.reshape(len(q), k)
            tri = self.tri[idx.reshape(-1)]
            qq = np.repeat(q, k, axis=0)
            c, r = closest_point_on_triangles_np(tri, qq)
            d = np.linalg.norm(qq - c, axis=1).reshape(len(q), k)
            j = d.argmin(axis=1)
            best = d[np.arange(len(q)), j]
            flat = np.arange(len(q)) * k + j
            # Triangles not among the k nearest centroids are at least dc[:, -1] - r_max away.
            done = (k >= F) | (dc[:, -1] - self.r_max >= np.minimum(best, cap[todo]))
            sel = todo[done]
            dist[sel], closest[sel] = best[done], c[flat[done]]
            tri_id[sel], region[sel] = idx[np.arange(len(q)), j][done], r[flat[done]]
            todo = todo[~done]
            k = min(4 * k, F)
        return dist, closest, tri_id, region

    def unsigned(self, points: Float[np.ndarray, "N 3"], cap: float | Float[np.ndarray, "N"] = np.inf
                 ) -> Float[np.ndarray, "N"]:
        """Distance to the surface; exact where it is <= `cap` (metres), else some value > `cap`."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        cap = np.broadcast_to(np.asarray(cap, dtype=np.float64), (len(p),))
        return self._nearest(p, cap)[0]

    def contains(self, points: Float[np.ndarray, "N 3"]) -> Bool[np.ndarray, "N"]:
        """Inside test by ray parity (closed meshes); points off the bounding box are outside."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.zeros(len(p), dtype=bool)
        box = np.all((p >= self.lo) & (p <= self.hi), axis=1)
        if box.any():
            out[box] = self.mesh.contains(p[box])
        return out

    def _pseudonormal_of(self, tri_id: np.ndarray, region: np.ndarray) -> np.ndarray:
        n = self.face_normals[tri_id].copy()
        for k in range(3):
            m = region == REGION_VERTEX + k
            n[m] = self.vertex_normals[self.faces[tri_id[m], k]]
            m = region == REGION_EDGE + k
            n[m] = self.edge_normals[tri_id[m], k]
        return n

    def signed(self, points: Float[np.ndarray, "N 3"], cap: float = np.inf) -> Float[np.ndarray, "N"]:
        """Signed distance (negative inside), exact inside and wherever |d| <= `cap`; points outside
        and farther than `cap` get +inf (not measured)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.full(len(p), np.inf)
        near = np.all((p >= self.lo - cap) & (p <= self.hi + cap), axis=1)  # others are outside, > cap away
        if not near.any():
            return out
        pn = p[near]
        if self.use_parity:
            inside = self.contains(pn)
            d = self._nearest(pn, np.where(inside, np.inf, cap))[0]
        else:  # the sign comes from the nearest feature, so that one must be exact for every point
            d, closest, tri_id, region = self._nearest(pn, np.full(len(pn), np.inf))
            inside = np.einsum("ij,ij->i", pn - closest, self._pseudonormal_of(tri_id, region)) < 0
        out[near] = np.where(inside, -d, np.where(d <= cap, d, np.inf))
        return out


# ----------------------------------------------------------------------------------------------
# Per-frame statistics
# ----------------------------------------------------------------------------------------------


def _inverse_rigid(T: np.ndarray, func: str) -> np.ndarray:
    """Inverses of (T,4,4) rigid poses; a pose with a folded-in scale is refused (distances would be scaled)."""
    R, t = T[:, :3, :3], T[:, :3, 3]
    det = np.linalg.det(R)
    finite = np.isfinite(det)
    if np.any(np.abs(det[finite] - 1.0) > 1e-3):
        raise ValueError(f"{func}: `T_cam_from_obj` is not rigid (det of its rotation block is {det[finite].min():.4g}"
                         f"..{det[finite].max():.4g}, expected 1). Fix: fold the object scale into the mesh vertices "
                         f"and pass rigid poses.")
    Ti = np.tile(np.eye(4), (len(T), 1, 1))
    Ti[:, :3, :3] = np.swapaxes(R, 1, 2)
    Ti[:, :3, 3] = -np.einsum("tji,tj->ti", R, t)
    return Ti


def contact_per_frame(
    hands: Mapping[str, tuple[Float[np.ndarray, "T V 3"], Float[np.ndarray, "T 21 3"] | None]],
    obj_vertices: Float[np.ndarray, "N 3"],
    obj_faces: Int[np.ndarray, "F 3"],
    T_cam_from_obj: Float[np.ndarray, "T 4 4"],
    config: ContactConfig | None = None,
    distance: MeshDistance | None = None,
) -> dict[str, np.ndarray]:
    """Per-frame arrays (T,) in metres: pen_depth, pen_mean, min_dist (signed, +inf = farther than
    the contact threshold), in_contact (bool), tip_mean, tip_min (NaN without keypoints).

    hands: side -> (posed vertices (T,V,3), 21 keypoints (T,21,3) or None), camera frame, metres.
    obj_vertices: the object mesh in its metric canonical frame; x_cam = T_cam_from_obj @ x_obj (rigid).
    Frames whose pose or hand is not finite give NaN (in_contact False).
    """
    func = "contact_per_frame"
    cfg = config or ContactConfig()
    Tpose = np.asarray(T_cam_from_obj, dtype=np.float64)
    if Tpose.ndim != 3 or Tpose.shape[1:] != (4, 4):
        raise ValueError(f"{func}: `T_cam_from_obj` has shape {Tpose.shape}; expected (T, 4, 4).")
    T = len(Tpose)
    dist = distance or MeshDistance(obj_vertices, obj_faces, name="the object mesh")
    T_obj_from_cam = _inverse_rigid(Tpose, func)

    depth_max = np.zeros(T)
    depth_sum = np.zeros(T)
    n_inside = np.zeros(T)
    min_d = np.full(T, np.inf)
    tips: list[np.ndarray] = []
    ok = np.all(np.isfinite(Tpose.reshape(T, -1)), axis=1)
    for side, (verts, kp) in hands.items():
        v = np.asarray(verts, dtype=np.float64)
        if v.ndim != 3 or v.shape[0] != T or v.shape[2] != 3:
            raise ValueError(f"{func}: hand '{side}' vertices have shape {v.shape}; expected ({T}, V, 3), one "
                             f"set per object pose.")
        ok &= np.all(np.isfinite(v.reshape(T, -1)), axis=1)
        # Hand vertices in the object frame, all frames in one query.
        x_obj = np.einsum("tij,tvj->tvi", T_obj_from_cam[:, :3, :3], v) + T_obj_from_cam[:, None, :3, 3]
        x_obj = np.where(np.isfinite(x_obj), x_obj, 1e9)  # bad frames: far away, masked below
        sd = dist.signed(x_obj.reshape(-1, 3), cap=cfg.contact_threshold_m).reshape(T, -1)
        depth = np.maximum(-sd, 0.0)
        depth_max = np.maximum(depth_max, depth.max(axis=1))
        depth_sum += depth.sum(axis=1)
        n_inside += (sd < 0).sum(axis=1)
        min_d = np.minimum(min_d, sd.min(axis=1))
        if kp is not None:
            k = np.asarray(kp, dtype=np.float64)
            if k.shape != (T, 21, 3):
                raise ValueError(f"{func}: hand '{side}' keypoints have shape {k.shape}; expected ({T}, 21, 3).")
            tip_cam = k[:, list(FINGERTIP_KEYPOINTS)]
            tip_obj = np.einsum("tij,tvj->tvi", T_obj_from_cam[:, :3, :3], tip_cam) + T_obj_from_cam[:, None, :3, 3]
            finite = np.all(np.isfinite(tip_obj), axis=-1)
            d_tip = np.full(finite.shape, np.nan)
            d_tip[finite] = dist.unsigned(tip_obj[finite])
            tips.append(d_tip)
    pen_mean = np.divide(depth_sum, n_inside, out=np.zeros(T), where=n_inside > 0)
    out = {"pen_depth": depth_max, "pen_mean": pen_mean, "min_dist": min_d,
           "in_contact": min_d <= cfg.contact_threshold_m}
    if tips:
        d = np.concatenate(tips, axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames stay NaN
            out["tip_mean"], out["tip_min"] = np.nanmean(d, axis=1), np.nanmin(d, axis=1)
    else:
        out["tip_mean"] = out["tip_min"] = np.full(T, np.nan)
    for key in ("pen_depth", "pen_mean", "min_dist", "tip_mean", "tip_min"):
        out[key] = np.where(ok, out[key], np.nan)
    out["in_contact"] &= ok
    out["valid"] = ok
    return out


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


def contact_metrics(
    hands: Mapping[str, tuple[Float[np.ndarray, "T V 3"], Float[np.ndarray, "T 21 3"] | None]],
    obj_vertices: Float[np.ndarray, "N 3"],
    obj_faces: Int[np.ndarray, "F 3"],
    T_cam_from_obj: Float[np.ndarray, "T 4 4"],
    valid: np.ndarray | None = None,
    config: ContactConfig | None = None,
) -> dict[str, float]:
    """Sequence statistics (keys and units in the module docstring) over the `valid` frames (all
    when None) whose inputs are finite. Returns python floats; NaN when no frame qualifies."""
    cfg = config or ContactConfig()
    T = len(np.asarray(T_cam_from_obj))
    per = contact_per_frame(hands, obj_vertices, obj_faces, T_cam_from_obj, cfg)
    use = per["valid"].copy()
    if valid is not None:
        v = np.asarray(valid).astype(bool).reshape(-1)
        if len(v) != T:
            raise ValueError(f"contact_metrics: `valid` has {len(v)} entries; expected one per frame ({T}).")
        use &= v
    if not use.any():
        return {k: float("nan") for k in CONTACT_KEYS}
    depth = per["pen_depth"][use]
    return {
        "pen_depth_mm": float(depth.mean() * 1000.0),
        "pen_max_mm": float(depth.max() * 1000.0),
        "pen_mean_mm": float(per["pen_mean"][use].mean() * 1000.0),
        "pen_ratio": float(np.mean(depth > cfg.pen_threshold_m)),
        "contact_ratio": float(np.mean(per["in_contact"][use])),
        "tip_dist_mm": _mean(per["tip_mean"][use]) * 1000.0,
        "tip_min_dist_mm": _mean(per["tip_min"][use]) * 1000.0,
    }
