"""Area-weighted uniform sampling of triangle surfaces (numpy): the one sampler used by the metrics,
the synthetic-object SDF and the hand node's canonical SDF prior."""
from __future__ import annotations

import numpy as np
from jaxtyping import Float, Int


def sample_triangles(
    triangles: Float[np.ndarray, "F 3 3"], n: int, rng: np.random.Generator
) -> tuple[Float[np.ndarray, "N 3"], Int[np.ndarray, "N"], Float[np.ndarray, "N 3"]]:
    """`n` points uniform over the triangles' total area: (points, face index, barycentric coords).

    Faces are drawn with probability proportional to area (zero-area faces never), then a uniform
    point inside by the square-root trick. Same (triangle count and areas, n, rng state) -> same
    face indices and barycentrics, so a mesh and a rigidly moved copy get corresponding points.
    """
    cross = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    cdf = np.cumsum(np.linalg.norm(cross, axis=1))
    if not cdf[-1] > 0:
        raise ValueError("sample_triangles: the triangles have zero total area. Fix: pass a non-degenerate mesh.")
    face = np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(n), side="right"), len(triangles) - 1)
    sq, r2 = np.sqrt(rng.random(n)), rng.random(n)
    bary = np.stack([1.0 - sq, sq * (1.0 - r2), sq * r2], 1)
    points = np.einsum("nk,nkc->nc", bary, triangles[face])
    return points, face, bary
