"""Triangle-mesh geometry in numpy (CPU): exact closest points on triangles and vertex normals, the one
implementation used by the contact metrics, the synthetic-object SDF, the mesh rasterizer and the
fake MANO model (the batched torch counterparts live in `hold.geometry.mesh_query`)."""
from __future__ import annotations

import numpy as np
from jaxtyping import Float, Int

REGION_FACE, REGION_VERTEX, REGION_EDGE = 0, 1, 4
"""Feature of a triangle holding the closest point: the face interior, REGION_VERTEX + k (corner k of
a, b, c) or REGION_EDGE + k (edge k of ab, bc, ca); every region but REGION_FACE is on the boundary."""


def closest_point_on_triangles_np(
    triangles: Float[np.ndarray, "N 3 3"], points: Float[np.ndarray, "N 3"]
) -> tuple[Float[np.ndarray, "N 3"], Int[np.ndarray, "N"]]:
    """(closest point of triangle i to point i, the feature it lies on: REGION_*), for each row.

    Voronoi-region test of the vertices, edges and face (Ericson, Real-Time Collision Detection,
    5.1.5), vectorized; degenerate triangles give a point on them without dividing by zero.
    """
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    ab, ac, ap = b - a, c - a, points - a
    d1 = np.einsum("nc,nc->n", ab, ap)
    d2 = np.einsum("nc,nc->n", ac, ap)
    bp = points - b
    d3 = np.einsum("nc,nc->n", ab, bp)
    d4 = np.einsum("nc,nc->n", ac, bp)
    cp = points - c
    d5 = np.einsum("nc,nc->n", ab, cp)
    d6 = np.einsum("nc,nc->n", ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    eps = 1e-300
    # Default: interior of the face (barycentric projection).
    denom = va + vb + vc
    denom = np.where(np.abs(denom) < eps, eps, denom)
    v = vb / denom
    w = vc / denom
    out = a + ab * v[:, None] + ac * w[:, None]
    region = np.full(len(points), REGION_FACE, dtype=np.int64)
    # Regions in reverse order of the usual test sequence (a, b, ab, c, ac, bc, face), so the
    # first test that holds there has the last word.
    m = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)  # edge bc
    t = (d4 - d3) / np.where(m, (d4 - d3) + (d5 - d6), 1.0).clip(min=eps)
    out = np.where(m[:, None], b + (c - b) * t[:, None], out)
    region[m] = REGION_EDGE + 1
    m = (vb <= 0) & (d2 >= 0) & (d6 <= 0)  # edge ca
    t = d2 / np.where(m, d2 - d6, 1.0).clip(min=eps)
    out = np.where(m[:, None], a + ac * t[:, None], out)
    region[m] = REGION_EDGE + 2
    m = (d6 >= 0) & (d5 <= d6)  # vertex c
    out = np.where(m[:, None], c, out)
    region[m] = REGION_VERTEX + 2
    m = (vc <= 0) & (d1 >= 0) & (d3 <= 0)  # edge ab
    t = d1 / np.where(m, d1 - d3, 1.0).clip(min=eps)
    out = np.where(m[:, None], a + ab * t[:, None], out)
    region[m] = REGION_EDGE + 0
    m = (d3 >= 0) & (d4 <= d3)  # vertex b
    out = np.where(m[:, None], b, out)
    region[m] = REGION_VERTEX + 1
    m = (d1 <= 0) & (d2 <= 0)  # vertex a
    out = np.where(m[:, None], a, out)
    region[m] = REGION_VERTEX + 0
    return out, region


def vertex_normals_np(vertices: Float[np.ndarray, "V 3"], faces: Int[np.ndarray, "F 3"]) -> Float[np.ndarray, "V 3"]:
    """Area-weighted unit vertex normals (float64; zero for unreferenced vertices), outward for faces
    wound counter-clockwise seen from outside."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    n = np.zeros_like(v)
    if len(f):
        fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # length = 2 * area
        for k in range(3):
            np.add.at(n, f[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
