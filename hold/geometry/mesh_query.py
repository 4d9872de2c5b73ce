"""Closest points on a triangle mesh, batched in torch (used to skin points by surface weights), and
area-weighted vertex normals.

The search is local: the candidate triangles of a point are those incident to its k nearest
vertices, which contains the true closest triangle whenever the point is closer to the surface
than about the local edge length — always the case for points we skin (samples near the hand).
"""
from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor


def vertex_face_table(faces: Int[Tensor, "F 3"], num_vertices: int) -> Int[Tensor, "V M"]:
    """For each vertex, the indices of its incident faces, padded with -1 to the max valence M."""
    f_idx = torch.arange(faces.shape[0], device=faces.device).repeat_interleave(3)
    v_idx = faces.reshape(-1)
    order = torch.argsort(v_idx, stable=True)
    v_sorted, f_sorted = v_idx[order], f_idx[order]
    counts = torch.bincount(v_sorted, minlength=num_vertices)
    M = int(counts.max())
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(v_sorted.shape[0], device=faces.device) - start[v_sorted]
    table = torch.full((num_vertices, M), -1, dtype=torch.long, device=faces.device)
    table[v_sorted, slot] = f_sorted
    return table


def vertex_normals(vertices: Float[Tensor, "V 3"], faces: Int[Tensor, "F 3"]) -> Float[Tensor, "V 3"]:
    """Area-weighted unit vertex normals of a mesh wound counter-clockwise seen from outside
    (numpy: `hold.geometry.triangles.vertex_normals_np`)."""
    tri = vertices[faces]
    fn = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 x area
    vn = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), fn.repeat_interleave(3, dim=0))
    return vn / vn.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def closest_point_on_triangles(
    p: Float[Tensor, "... 3"], a: Float[Tensor, "... 3"], b: Float[Tensor, "... 3"], c: Float[Tensor, "... 3"]
) -> Float[Tensor, "... 3"]:
    """Barycentric coordinates (wa, wb, wc) of the point of triangle abc closest to p.

    Voronoi-region classification (vertex, edge, interior regions), branch-free with torch.where.
    """
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    tiny = torch.finfo(p.dtype).tiny

    def safe_div(n, d):
        return n / torch.where(d.abs() > tiny, d, torch.full_like(d, tiny))

    denom = va + vb + vc
    v_in, w_in = safe_div(vb, denom), safe_div(vc, denom)
    bary = torch.stack([1 - v_in - w_in, v_in, w_in], -1)  # interior

    def put(mask, wa, wb, wc):
        nonlocal bary
        bary = torch.where(mask[..., None], torch.stack([wa, wb, wc], -1), bary)

    zero, one = torch.zeros_like(d1), torch.ones_like(d1)
    # Edge regions (assigned before vertex regions, which take precedence).
    t_bc = safe_div(d4 - d3, (d4 - d3) + (d5 - d6))
    put((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), zero, 1 - t_bc, t_bc)
    t_ac = safe_div(d2, d2 - d6)
    put((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1 - t_ac, zero, t_ac)
    t_ab = safe_div(d1, d1 - d3)
    put((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1 - t_ab, t_ab, zero)
    put((d6 >= 0) & (d5 <= d6), zero, zero, one)  # vertex c
    put((d3 >= 0) & (d4 <= d3), zero, one, zero)  # vertex b
    put((d1 <= 0) & (d2 <= 0), one, zero, zero)  # vertex a
    return bary


def closest_surface_points(
    x: Float[Tensor, "B N 3"],
    verts: Float[Tensor, "B V 3"],
    faces: Int[Tensor, "F 3"],
    vf_table: Int[Tensor, "V M"] | None = None,
    k: int = 4,
    chunk_size: int = 4096,
) -> tuple[Int[Tensor, "B N"], Float[Tensor, "B N 3"], Float[Tensor, "B N"]]:
    """Closest surface point of each x: (face index, barycentric coords, distance in x's units).

    Differentiable w.r.t. x and verts through the barycentric coordinates and the distance (the
    triangle choice itself is discrete).
    """
    B, N, _ = x.shape
    V = verts.shape[1]
    if vf_table is None:
        vf_table = vertex_face_table(faces, V)
    k = min(k, V)
    face_out, bary_out, dist_out = [], [], []
    batch = torch.arange(B, device=x.device)[:, None, None]
    for s in range(0, N, chunk_size):
        xc = x[:, s:s + chunk_size]
        with torch.no_grad():
            nn_v = torch.cdist(xc, verts).topk(k, dim=-1, largest=False).indices  # (B,n,k)
            cand = vf_table[nn_v].flatten(-2)  # (B,n,k*M), -1 = padding
            valid = cand >= 0
            cand = torch.where(valid, cand, torch.zeros_like(cand))
            tri = faces[cand]  # (B,n,C,3)
            a, b_, c = (verts[batch, tri[..., i]] for i in range(3))
            w = closest_point_on_triangles(xc[:, :, None], a, b_, c)
            q = w[..., :1] * a + w[..., 1:2] * b_ + w[..., 2:] * c
            d2 = ((xc[:, :, None] - q) ** 2).sum(-1).masked_fill(~valid, float("inf"))
            best = d2.argmin(-1)  # (B,n)
            f_best = cand.gather(-1, best[..., None])[..., 0]
        # Recompute the chosen triangle with gradients.
        tri = faces[f_best]
        a, b_, c = (verts[batch[..., 0], tri[..., i]] for i in range(3))
        w = closest_point_on_triangles(xc, a, b_, c)
        q = w[..., :1] * a + w[..., 1:2] * b_ + w[..., 2:] * c
        face_out.append(f_best)
        bary_out.append(w)
        dist_out.append(((xc - q) ** 2).sum(-1).clamp_min(0).add(1e-18).sqrt())
    return torch.cat(face_out, 1), torch.cat(bary_out, 1), torch.cat(dist_out, 1)
