"""A procedural stand-in for the licence-gated MANO pickle, for tests and demos of the `mano` backend.

MANO cannot be shipped or downloaded, so the `mano` loader and backend are exercised on a file
that has everything the real one has, made by code:
- the same keys, shapes and storage types as MANO_RIGHT.pkl / MANO_LEFT.pkl (v1.2): the 9 keys
  smplx reads plus `hands_coeffs`, `J`, `bs_style`, `bs_type`; `J_regressor` as a scipy sparse
  matrix; `kintree_table` with 4294967295 as the root's parent; and (by default) the float arrays
  wrapped in `chumpy.ch.Ch` objects, so that a plain `pickle.load` fails exactly as on the real
  file (chumpy does not import on Python 3.11 / numpy 2);
- a plausible hand: a single triangle mesh with MANO's counts, 778 vertices and 1538 faces,
  closed except for a 16-edge opening at the wrist (Euler's formula for a sphere with one hole:
  1538 = 2 * 778 - 2 - 16), made of a palm tube, four finger tubes split off the
  knuckle ring and a thumb tube leaving the palm's radial side; smplx's joint order (0 wrist,
  1-3 index, 4-6 middle, 7-9 little, 10-12 ring, 13-15 thumb) with each joint the centroid of one
  vertex ring (so `J_regressor` rows are averages: nonnegative, summing to 1); fingertips at
  smplx's tip vertices (744 thumb, 320 index, 443 middle, 554 ring, 671 little); smooth skinning
  weights; smooth shape and pose-corrective blend shapes.

Frame of the right hand (metres): the wrist joint sits at (0.09, 0.006, 0.006), away from the
origin as in MANO (so rotating about the wrist and about the origin differ), fingers point to -x,
the thumb is on the +z side and the palm faces -y. The left hand is the exact mirror (x -> -x,
faces reversed to stay counter-clockwise from outside), except that by default its `shapedirs` are
copied unmirrored from the right hand, reproducing the defect of the official MANO_LEFT.pkl
(smplx issue #48) that `hold.hands.mano` corrects.
"""
from __future__ import annotations

import contextlib
import functools
import pickle
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from hold.geometry.triangles import vertex_normals_np

NUM_VERTICES = 778
NUM_FACES = 1538
NUM_JOINTS = 16
PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
ROOT_PARENT_STORED = 4294967295  # how the real kintree_table stores the root's parent (uint32 -1)
# smplx.vertex_ids.vertex_ids["mano"]: the fingertip vertices smplx appends as keypoints.
TIP_VERTICES = {"thumb": 744, "index": 320, "middle": 443, "ring": 554, "little": 671}
WRIST_WORLD = np.array([0.09, 0.006, 0.006])
"""Where the right hand's wrist joint sits in the pickle's frame (metres)."""

# ----------------------------------------------------------------------------- hand layout
# Local frame while building: a = along the fingers, c = across the palm toward the thumb,
# d = dorsal (back of the hand); right-handed (a x c = d). World: x = -a, y = d, z = c.
_PALM_RING = 34  # vertices per palm ring: a back row and a front row of 17 each
_ROW = _PALM_RING // 2
_WRIST_RING = 16
_PALM_A = (0.012, 0.024, 0.036, 0.050, 0.063, 0.075, 0.086)  # palm ring positions along a
_PALM_HALF_W = (0.032, 0.036, 0.039, 0.041, 0.042, 0.042, 0.041)
_PALM_HALF_T = (0.016, 0.016, 0.0155, 0.015, 0.014, 0.013, 0.012)
_WRIST_HALF = (0.028, 0.016)  # wrist opening half-width (c) and half-thickness (d)
_FINGER_RING = 10
_THUMB_RING = 12
_BLEND = 0.007  # half-width (m) of the skinning-weight transition across a joint


@dataclass(frozen=True)
class _Finger:
    """Layout of one of the four long fingers."""

    name: str
    """Key into TIP_VERTICES."""
    joints: tuple[int, int, int]
    """smplx joint ids, base -> tip."""
    cols: tuple[int, int]
    """Front-row columns [lo, hi] of the knuckle ring it takes (shared columns are the webs)."""
    splay: float
    """Direction away from +a, toward +c (radians)."""
    lengths: tuple[float, float, float]
    """Proximal, middle, distal (incl. the round tip) segment lengths (metres)."""
    radius: float
    """Radius at the base (metres)."""
    rings: tuple[int, int, int]
    """Number of vertex rings on the proximal, middle and distal segments."""


_FINGERS = (
    _Finger("little", (7, 8, 9), (0, 4), -0.16, (0.033, 0.020, 0.020), 0.0083, (4, 3, 3)),
    _Finger("ring", (10, 11, 12), (4, 8), -0.06, (0.042, 0.027, 0.023), 0.0095, (4, 4, 4)),
    _Finger("middle", (4, 5, 6), (8, 12), 0.02, (0.045, 0.028, 0.023), 0.0100, (4, 4, 4)),
    _Finger("index", (1, 2, 3), (12, 16), 0.11, (0.040, 0.024, 0.022), 0.0098, (4, 3, 4)),
)
# Thumb: leaves the palm through a hole of 2 x 4 palm quads (12 boundary vertices, 3 interior
# vertices removed) on the palmar-radial corner; three bent segments (metacarpal, proximal, distal).
_HOLE_LEVELS = (0, 2)  # palm levels (indices into _PALM_A) bounding the hole
_HOLE_COLS = (30, 31, 32, 33, 0)  # palm ring columns bounding the hole
_THUMB_DIRS = ((0.55, 0.70, -0.45), (0.75, 0.50, -0.40), (0.90, 0.30, -0.30))  # (a, c, d) per segment
_THUMB_LENGTHS = (0.036, 0.032, 0.028)
_THUMB_RADII = (0.0125, 0.0112, 0.0105, 0.0100, 0.0095)  # ring 1..5 (ring 6 is on the round tip)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _h(x: np.ndarray, width: float = _BLEND) -> np.ndarray:
    """0 before a joint, 1 after it, smooth over [-width, width]."""
    return _smoothstep((x + width) / (2.0 * width))


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _ring_frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(e1, e2) orthonormal, perpendicular to `axis`, with e1 x e2 = axis (so rings run ccw about it).
    e1 is the direction closest to +c, so that finger rings start on the same side as palm rings."""
    e1 = np.array([0.0, 1.0, 0.0]) - axis[1] * axis
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(axis, e1)


def _ring(center, axis, r1, r2, n) -> np.ndarray:
    """n points on an ellipse (half-axes r1 along e1, r2 along e2) around `axis`, ccw about it."""
    e1, e2 = _ring_frame(axis)
    phi = 2.0 * np.pi * (np.arange(n) + 0.5) / n
    return center + r1 * np.cos(phi)[:, None] * e1 + r2 * np.sin(phi)[:, None] * e2


def _zipper(loop_a: list[int], loop_b: list[int], x: np.ndarray, center: np.ndarray, axis: np.ndarray) -> list[tuple]:
    """Triangulate the band between two closed loops (both ccw about `axis`, `b` further along it):
    len(a) + len(b) triangles, merging the loops by their angle about the axis, outward-facing."""
    e1, e2 = _ring_frame(axis)

    def param(loop):
        rel = x[loop] - center
        ang = np.arctan2(rel @ e2, rel @ e1)
        steps = np.diff(np.unwrap(np.append(ang, ang[0])))
        if not np.isclose(steps.sum(), 2.0 * np.pi, atol=1e-6) or (steps <= 0).any():
            raise RuntimeError("fake MANO mesh: a loop does not run once, counter-clockwise, about its axis")
        t = np.mod(ang, 2.0 * np.pi)
        start = int(np.argmin(t))
        order = [loop[(start + i) % len(loop)] for i in range(len(loop))]
        tt = np.mod(t[[(start + i) % len(loop) for i in range(len(loop))]] - t[start], 2.0 * np.pi)
        return order, np.append(tt, 2.0 * np.pi)

    a, ta = param(loop_a)
    b, tb = param(loop_b)
    a, b = a + [a[0]], b + [b[0]]
    na, nb = len(a) - 1, len(b) - 1
    tris, i, j = [], 0, 0
    while i < na or j < nb:
        if j == nb or (i < na and ta[i + 1] < tb[j + 1]):
            tris.append((a[i], a[i + 1], b[j]))
            i += 1
        else:
            tris.append((a[i], b[j + 1], b[j]))
            j += 1
    return tris


def _fan(loop: list[int], apex: int) -> list[tuple]:
    """Close a loop (ccw about the outward axis) with a cone to `apex`."""
    return [(loop[i], loop[(i + 1) % len(loop)], apex) for i in range(len(loop))]


def _palm_section(level: int) -> np.ndarray:
    """The 34 points of palm ring `level` (a rounded rectangle), ccw about +a starting at +c."""
    hw, ht = _PALM_HALF_W[level], _PALM_HALF_T[level]
    u = -1.0 + (2.0 * np.arange(_ROW) + 1.0) / _ROW  # uniform across the width
    c = hw * u
    d = ht * (1.0 - np.abs(u) ** 4) ** 0.25
    back = np.stack([np.full(_ROW, _PALM_A[level]), c[::-1], d[::-1]], 1)  # c decreasing, d > 0
    front = np.stack([np.full(_ROW, _PALM_A[level]), c, -d], 1)  # c increasing, d < 0
    return np.concatenate([back, front], 0)


def _back(i: int) -> int:
    """Palm ring column of back-row point i (i = 0 at -c)."""
    return _ROW - 1 - i


def _front(i: int) -> int:
    return _ROW + i


class _Builder:
    """Accumulates vertices (local frame) with the part info the weights need, and faces."""

    def __init__(self):
        self.x: list[np.ndarray] = []
        self.faces: list[tuple] = []
        # per vertex: ("palm",) | ("chain", chain joints, boundaries, s)
        self.info: list[tuple] = []

    def add(self, pts: np.ndarray, info) -> list[int]:
        start = len(self.x)
        for k, p in enumerate(np.atleast_2d(pts)):
            self.x.append(p)
            self.info.append(info(k) if callable(info) else info)
        return list(range(start, len(self.x)))

    @property
    def xa(self) -> np.ndarray:
        return np.asarray(self.x)


def _build_mesh() -> dict[str, Any]:
    """The right hand in the local (a, c, d) frame, in natural vertex order."""
    m = _Builder()
    joint_rings: dict[int, list[int]] = {}
    tips: dict[str, int] = {}

    # Palm: the open wrist ring, then 7 rings of 34 (minus the thumb hole's interior vertices).
    t = 2.0 * np.pi * (np.arange(_WRIST_RING) + 0.5) / _WRIST_RING
    wrist = np.stack([np.zeros_like(t), _WRIST_HALF[0] * np.cos(t), _WRIST_HALF[1] * np.sin(t)], 1)
    joint_rings[0] = m.add(wrist, ("palm",))
    hole_interior = {(lv, k) for lv in range(_HOLE_LEVELS[0] + 1, _HOLE_LEVELS[1]) for k in _HOLE_COLS[1:-1]}
    grid: dict[tuple[int, int], int] = {}
    for level in range(len(_PALM_A)):
        sec = _palm_section(level)
        for k in range(_PALM_RING):
            if (level, k) not in hole_interior:
                grid[level, k] = m.add(sec[k], ("palm",))[0]
    a_axis = np.array([1.0, 0.0, 0.0])
    ring0 = [grid[0, k] for k in range(_PALM_RING)]
    m.faces += _zipper(joint_rings[0], ring0, m.xa, np.zeros(3), a_axis)
    hole_quads = {(lv, k) for lv in range(*_HOLE_LEVELS) for k in _HOLE_COLS[:-1]}
    for level in range(len(_PALM_A) - 1):
        for k in range(_PALM_RING):
            if (level, k) in hole_quads:
                continue
            k1 = (k + 1) % _PALM_RING
            a0, a1, b0, b1 = grid[level, k], grid[level, k1], grid[level + 1, k], grid[level + 1, k1]
            m.faces += [(a0, a1, b0), (a1, b1, b0)]

    # Fingers: each takes 4 segments of the knuckle ring's front and back rows; the shared
    # columns between fingers become the webs.
    top = len(_PALM_A) - 1
    for f in _FINGERS:
        lo, hi = f.cols
        base = [grid[top, _back(i)] for i in range(hi, lo - 1, -1)] + [grid[top, _front(i)] for i in range(lo, hi + 1)]
        mcp = m.xa[base].mean(0)
        axis = _unit([np.cos(f.splay), np.sin(f.splay), 0.0])
        L1, L2, L3 = f.lengths
        r_tip = 0.8 * f.radius
        n1, n2, n3 = f.rings
        s_round = L1 + L2 + L3 - r_tip  # where the hemispherical tip starts
        s_list = [L1 * (i + 1) / n1 for i in range(n1)] + [L1 + L2 * (i + 1) / n2 for i in range(n2)]
        s_list += [L1 + L2 + (s_round - L1 - L2) * (i + 1) / (n3 - 2) for i in range(n3 - 2)]
        radii = [f.radius * (1.0 - 0.2 * s / (L1 + L2 + L3)) for s in s_list]
        for phi in np.deg2rad([55.0, 28.0]):  # two rings on the round tip
            s_list.append(s_round + r_tip * np.cos(phi))
            radii.append(r_tip * np.sin(phi))
        chain = (0, *f.joints)
        bounds = (0.0, L1, L1 + L2)
        joint_rings[f.joints[0]] = base
        prev = base
        for s, r in zip(s_list, radii):
            ring = m.add(_ring(mcp + s * axis, axis, r, 0.88 * r, _FINGER_RING), ("chain", chain, bounds, s))
            m.faces += _zipper(prev, ring, m.xa, mcp, axis)
            for jid, b in zip(f.joints[1:], bounds[1:]):
                if np.isclose(s, b):
                    joint_rings[jid] = ring
            prev = ring
        apex = m.add(mcp + (L1 + L2 + L3) * axis, ("chain", chain, bounds, L1 + L2 + L3))
        m.faces += _fan(prev, apex[0])
        tips[f.name] = apex[0]

    # Thumb: the hole's boundary, oriented against the palm faces around it.
    l0, l1 = _HOLE_LEVELS
    cols = _HOLE_COLS
    hole = [grid[l0, k] for k in cols] + [grid[l0 + 1, cols[-1]]]
    hole += [grid[l1, k] for k in cols[::-1]] + [grid[l0 + 1, cols[0]]]
    cmc = m.xa[hole].mean(0)
    dirs = [_unit(d) for d in _THUMB_DIRS]
    L0, L1, L2 = _THUMB_LENGTHS
    mcp = cmc + L0 * dirs[0]
    ip = mcp + L1 * dirs[1]
    r_tip = 0.0095
    tip = ip + L2 * dirs[2]
    centers = [cmc + 0.5 * L0 * dirs[0], mcp, mcp + 0.5 * L1 * dirs[1], ip, tip - r_tip * dirs[2]]
    axes = [dirs[0], _unit(dirs[0] + dirs[1]), dirs[1], _unit(dirs[1] + dirs[2]), dirs[2]]
    s_vals = [0.5 * L0, L0, L0 + 0.5 * L1, L0 + L1, L0 + L1 + L2 - r_tip]
    radii = list(_THUMB_RADII)
    c45 = np.cos(np.pi / 4)
    centers.append(tip - r_tip * (1 - c45) * dirs[2])
    axes.append(dirs[2])
    s_vals.append(L0 + L1 + L2 - r_tip * (1 - c45))
    radii.append(r_tip * c45)
    chain, bounds = (0, 13, 14, 15), (0.0, L0, L0 + L1)
    joint_rings[13] = hole
    prev, prev_c, prev_axis = hole, cmc, dirs[0]
    for i, (c, ax, s, r) in enumerate(zip(centers, axes, s_vals, radii)):
        ring = m.add(_ring(c, ax, r, 0.9 * r, _THUMB_RING), ("chain", chain, bounds, s))
        # angles about the band's mid-axis, which both (nearly coaxial) loops wind once around
        m.faces += _zipper(prev, ring, m.xa, 0.5 * (prev_c + c), _unit(prev_axis + ax))
        if i == 1:
            joint_rings[14] = ring
        if i == 3:
            joint_rings[15] = ring
        prev, prev_c, prev_axis = ring, c, ax
    apex = m.add(tip, ("chain", chain, bounds, L0 + L1 + L2))
    m.faces += _fan(prev, apex[0])
    tips["thumb"] = apex[0]

    return dict(x=m.xa, faces=np.asarray(m.faces, dtype=np.int64), info=m.info, joint_rings=joint_rings,
                tips=tips, thumb_cmc=cmc, thumb_dir=dirs[0],
                finger_c={f.joints[0]: m.xa[joint_rings[f.joints[0]]].mean(0)[1] for f in _FINGERS})


def _skinning_weights(mesh: dict[str, Any]) -> np.ndarray:
    """Smooth LBS weights: along a finger/thumb chain each joint owns its segment, blended over
    +-_BLEND across every joint; palm vertices near the knuckles/thumb hole share with those bones."""
    x, info = mesh["x"], mesh["info"]
    W = np.zeros((len(x), NUM_JOINTS))
    top_a = _PALM_A[-1]
    finger_bases = np.array(list(mesh["finger_c"].keys()))
    finger_c = np.array(list(mesh["finger_c"].values()))
    for v, inf in enumerate(info):
        if inf[0] == "chain":
            _, chain, bounds, s = inf
            hs = [float(_h(np.array(s - b))) for b in bounds]
            W[v, chain[0]] = 1.0 - hs[0]
            W[v, chain[1]] = hs[0] - hs[1]
            W[v, chain[2]] = hs[1] - hs[2]
            W[v, chain[3]] = hs[2]
            continue
        rel = x[v] - mesh["thumb_cmc"]
        s_t = rel @ mesh["thumb_dir"]
        rho = np.linalg.norm(rel - s_t * mesh["thumb_dir"])
        phi_thumb = float(_h(np.array(s_t))) * np.exp(-((rho / 0.018) ** 2))
        part = np.exp(-0.5 * ((x[v, 1] - finger_c) / 0.006) ** 2)
        part /= part.sum()
        phi_fingers = (1.0 - phi_thumb) * float(_h(np.array(x[v, 0] - top_a))) * part
        W[v, 13] = phi_thumb
        W[v, finger_bases] = phi_fingers
        W[v, 0] = 1.0 - phi_thumb - phi_fingers.sum()
    return W


@functools.lru_cache(maxsize=1)
def _right_hand() -> dict[str, Any]:
    """The fixed geometry and weights (built once per process; treat as read-only)."""
    mesh = _build_mesh()
    if len(mesh["x"]) != NUM_VERTICES or len(mesh["faces"]) != NUM_FACES:
        raise RuntimeError(f"fake MANO mesh has {len(mesh['x'])} vertices / {len(mesh['faces'])} faces, "
                           f"expected {NUM_VERTICES} / {NUM_FACES}")
    mesh["weights"] = _skinning_weights(mesh)
    return mesh


def _to_world(p_local: np.ndarray, points: bool = True) -> np.ndarray:
    """(a, c, d) -> world (x, y, z) = (-a, d, c) (+ the wrist position for points)."""
    out = np.stack([-p_local[..., 0], p_local[..., 2], p_local[..., 1]], -1)
    return out + WRIST_WORLD if points else out


def _place_tips(n: int, tips: dict[str, int]) -> np.ndarray:
    """new -> old vertex order putting each natural tip vertex at smplx's tip index."""
    order = np.full(n, -1, dtype=np.int64)
    for name, old in tips.items():
        order[TIP_VERTICES[name]] = old
    rest = [i for i in range(n) if i not in set(tips.values())]
    order[order < 0] = rest
    return order


def _mirror_pose_signs() -> np.ndarray:
    """Per axis-angle component, the sign that mirrors x: M R(w) M = R((w_x, -w_y, -w_z))."""
    return np.tile([1.0, -1.0, -1.0], 15)


def fake_mano_arrays(side: str = "right", seed: int = 0, left_shapedirs_bug: bool = True) -> dict[str, Any]:
    """The contents of a fake MANO_{RIGHT,LEFT}.pkl as plain numpy/scipy objects (no chumpy).

    `seed` drives the random parts (blend shapes, pose PCA); the mesh and skeleton are fixed.
    `left_shapedirs_bug`: for side="left", copy the right hand's shapedirs unmirrored, as in the
    official MANO_LEFT.pkl; False gives the correct mirrored ones.
    """
    if side not in ("right", "left"):
        raise ValueError(f"fake_mano_arrays: side must be 'right' or 'left', got {side!r}")
    mesh = _right_hand()
    x_local, faces, W = mesh["x"], mesh["faces"], mesh["weights"]
    rng = np.random.default_rng(seed)
    J_reg = np.zeros((NUM_JOINTS, NUM_VERTICES))
    for j, ring in mesh["joint_rings"].items():
        J_reg[j, ring] = 1.0 / len(ring)

    # Reorder so that the tips land on smplx's tip vertex ids.
    order = _place_tips(NUM_VERTICES, mesh["tips"])
    new_of_old = np.empty_like(order)
    new_of_old[order] = np.arange(NUM_VERTICES)
    x_local, W, J_reg = x_local[order], W[order], J_reg[:, order]
    faces = new_of_old[faces]
    v_template = _to_world(x_local)
    J = J_reg @ v_template
    normals = vertex_normals_np(v_template, faces)

    # Shape space: overall size, palm/finger width, thickness, finger length, then smooth random
    # per-bone affine fields (blended by the skinning weights, so they stay smooth).
    a_dir = _to_world(np.array([1.0, 0.0, 0.0]), points=False)
    shapedirs = np.zeros((NUM_VERTICES, 3, 10))
    shapedirs[:, :, 0] = 0.04 * (v_template - J[0])
    shapedirs[:, 2, 1] = 0.06 * (v_template[:, 2] - J[0, 2])
    shapedirs[:, 1, 2] = 0.08 * (v_template[:, 1] - J[0, 1])
    finger_w = 1.0 - W[:, 0]  # how much a vertex belongs to a finger or the thumb
    along = (v_template - J[0]) @ a_dir  # distance toward the fingertips
    shapedirs[:, :, 3] = 0.08 * (finger_w * along)[:, None] * a_dir
    for k in range(4, 10):
        M = rng.normal(0.0, 0.015, (NUM_JOINTS, 3, 3))
        t = rng.normal(0.0, 0.001, (NUM_JOINTS, 3))
        per_bone = np.einsum("jxy,vjy->vjx", M, v_template[:, None] - J[None]) + t[None]
        shapedirs[:, :, k] = np.einsum("vj,vjx->vx", W, per_bone)

    # Pose correctives: bulges along the normal where a joint's two bones meet, driven by that
    # joint's 9 rotation-matrix entries (R - I).
    posedirs = np.zeros((NUM_VERTICES, 3, 9 * (NUM_JOINTS - 1)))
    for j in range(1, NUM_JOINTS):
        bump = 4.0 * W[:, j] * W[:, PARENTS[j]]
        coeff = rng.normal(0.0, 0.003, 9)
        posedirs[:, :, 9 * (j - 1): 9 * j] = (bump[:, None] * normals)[:, :, None] * coeff[None, None]

    # Pose PCA: orthonormal components, a gently curled mean (about +z = the right hand's flexion
    # axis for fingers along -x with the palm facing -y), coefficients of recorded poses.
    components = np.linalg.qr(rng.normal(size=(45, 45)))[0].T
    mean = np.zeros((15, 3))
    mean[:12, 2] = 0.2 + 0.05 * rng.normal(size=12)
    mean[12:] = 0.1 * rng.normal(size=(3, 3))
    mean = mean.reshape(45)
    coeffs = rng.normal(0.0, 0.5, (1554, 45))

    f = faces
    if side == "left":
        sx = np.array([-1.0, 1.0, 1.0])
        sign9 = np.outer(sx, sx).reshape(9)  # (R - I)_il of the mirrored rotation = s_i s_l (R - I)_il
        v_template, J = v_template * sx, J * sx
        posedirs = posedirs * sx[None, :, None] * np.tile(sign9, NUM_JOINTS - 1)[None, None]
        if not left_shapedirs_bug:
            shapedirs = shapedirs * sx[None, :, None]
        pose_sign = _mirror_pose_signs()
        mean, components = mean * pose_sign, components * pose_sign  # same coefficients, mirrored poses
        f = f[:, ::-1]  # mirroring flips the winding; reverse it to keep faces ccw from outside
    kintree = np.stack([np.array(PARENTS, dtype=np.int64), np.arange(NUM_JOINTS, dtype=np.int64)])
    kintree[0, 0] = ROOT_PARENT_STORED
    return {
        "v_template": v_template,
        "shapedirs": shapedirs,
        "posedirs": posedirs,
        "J_regressor": scipy.sparse.csc_matrix(J_reg),
        "weights": W,
        "kintree_table": kintree,
        "f": np.ascontiguousarray(f).astype(np.uint32),
        "hands_components": components,
        "hands_mean": mean,
        "hands_coeffs": coeffs,
        "J": J,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


_CHUMPY_KEYS = ("v_template", "shapedirs", "posedirs", "weights", "J")


@contextlib.contextmanager
def _importable_chumpy_ch():
    """A throwaway `chumpy.ch.Ch` class, importable only inside this block, so that pickle can
    write references to it; unpickling the result then needs a `chumpy` module, as the real file does."""
    saved = {name: sys.modules.get(name) for name in ("chumpy", "chumpy.ch")}
    pkg, mod = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:
        """Stands for chumpy.ch.Ch: the array lives in the pickled state under 'x'."""

        def __init__(self, x):
            # the attributes a pickled chumpy.Ch carries (the array in 'x')
            self.__dict__.update(x=np.asarray(x), _dirty_vars=set(), _itr=None, _parents={}, _cache={})

    Ch.__module__, Ch.__qualname__, Ch.__name__ = "chumpy.ch", "Ch", "Ch"
    mod.Ch, pkg.ch = Ch, mod
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = pkg, mod
    try:
        yield Ch
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def write_fake_mano_pickle(path: str | Path, side: str = "right", seed: int = 0, with_chumpy: bool = True,
                           left_shapedirs_bug: bool = True, drop_keys: tuple[str, ...] = (),
                           override: dict[str, Any] | None = None) -> Path:
    """Write a fake MANO pickle (see the module docstring) to `path`; returns the path.

    `with_chumpy`: wrap v_template, shapedirs, posedirs, weights and J in `chumpy.ch.Ch` objects
    like the real file (a plain `pickle.load` then fails with ModuleNotFoundError: chumpy).
    `drop_keys` / `override`: remove or replace entries, to make broken files for error tests.
    """
    data = fake_mano_arrays(side=side, seed=seed, left_shapedirs_bug=left_shapedirs_bug)
    data.update(override or {})
    for key in drop_keys:
        data.pop(key)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if with_chumpy:
            Ch = stack.enter_context(_importable_chumpy_ch())
            data = {k: (Ch(v) if k in _CHUMPY_KEYS and isinstance(v, np.ndarray) else v) for k, v in data.items()}
        with open(path, "wb") as fh:
            pickle.dump(data, fh, protocol=2)  # the real files are Python 2 pickles (protocol 2)
    return path


def write_fake_mano_dir(folder: str | Path, seed: int = 0, with_chumpy: bool = True) -> Path:
    """Write fake MANO_RIGHT.pkl and MANO_LEFT.pkl into `folder` (a stand-in for `--mano-dir`)."""
    folder = Path(folder)
    write_fake_mano_pickle(folder / "MANO_RIGHT.pkl", "right", seed, with_chumpy)
    write_fake_mano_pickle(folder / "MANO_LEFT.pkl", "left", seed, with_chumpy)
    return folder
