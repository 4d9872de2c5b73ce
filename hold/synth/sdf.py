"""Signed distance to a mesh from dense surface samples (for closing fingers onto an object).

Distance: nearest of ~200k area-weighted surface samples (a KD-tree), so the error is bounded by
the sample spacing (~0.5 mm on an 8 cm object). Sign: a distance-weighted vote of the k nearest
samples' face normals (outside where x - s points along n), which needs no watertight mesh.
"""
from __future__ import annotations

import numpy as np
import trimesh
from jaxtyping import Float
from scipy.spatial import cKDTree


class MeshSDF:
    """Callable signed distance of a mesh: negative inside (metres, the mesh's frame)."""

    def __init__(self, mesh: trimesh.Trimesh, num_samples: int = 200_000, k: int = 4, seed: int = 0):
        rng = np.random.default_rng(seed)
        areas = mesh.area_faces
        face = rng.choice(len(areas), size=num_samples, p=areas / areas.sum())
        r1, r2 = rng.random(num_samples), rng.random(num_samples)
        s = np.sqrt(r1)
        bary = np.stack([1 - s, s * (1 - r2), s * r2], 1)
        tri = mesh.vertices[mesh.faces[face]]
        self.points = (bary[:, :, None] * tri).sum(1)
        self.normals = mesh.face_normals[face]
        self.tree = cKDTree(self.points)
        self.k = k

    def __call__(self, x: Float[np.ndarray, "N 3"]) -> Float[np.ndarray, "N"]:
        x = np.asarray(x, dtype=np.float64)
        dist, idx = self.tree.query(x, k=self.k)
        side = np.einsum("nkc,nkc->nk", x[:, None] - self.points[idx], self.normals[idx])
        vote = (np.sign(side) / np.maximum(dist, 1e-9)).sum(1)
        return np.where(vote >= 0, dist[:, 0], -dist[:, 0])

    def closest(self, x: Float[np.ndarray, "N 3"]) -> Float[np.ndarray, "N 3"]:
        """Nearest surface sample of each point."""
        return self.points[self.tree.query(np.asarray(x, dtype=np.float64))[1]]
