import math

import numpy as np
import pytest
import torch

import hold  # noqa: F401  (import-order side effects)
from hold.geometry import axis_angle_to_matrix, forward_kinematics, lbs
from hold.mesh import (
    EmptyMeshWarning,
    MeshConfig,
    color_vertices,
    extract_mesh,
    largest_component,
    pose_mesh_lbs,
    pose_mesh_rigid,
)


def sphere_sdf(center=(0.0, 0.0, 0.0), radius=0.3):
    c = torch.tensor(center, dtype=torch.float32)
    return lambda x: (x - c).norm(dim=-1) - radius


def box_sdf(center, half):
    c, h = torch.tensor(center), torch.tensor(half)

    def f(x):
        q = (x - c).abs() - h
        return q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)
    return f


def signed_volume(v, f):
    v = v.astype(np.float64)
    return np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0


def edge_face_counts(f):
    """How many faces use each undirected edge, and whether each directed edge appears once."""
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    undirected = np.sort(directed, axis=1)
    _, counts = np.unique(undirected, axis=0, return_counts=True)
    _, dcounts = np.unique(directed, axis=0, return_counts=True)
    return counts, dcounts


def test_sphere_radius_outward_watertight():
    calls = []

    def sdf(x):
        calls.append((x.shape[0], x.dtype))
        return sphere_sdf()(x)

    cfg = MeshConfig(resolution=64, chunk_size=10_000)
    v, f = extract_mesh(sdf, (-0.5, -0.5, -0.5), (0.5, 0.5, 0.5), cfg)
    assert v.dtype == np.float32 and f.dtype == np.int64 and v.shape[1] == f.shape[1] == 3
    # Chunked evaluation of (64 + 1)^3 grid points.
    assert sum(n for n, _ in calls) == 65 ** 3 and max(n for n, _ in calls) == 10_000
    assert len(calls) == math.ceil(65 ** 3 / 10_000) and all(d == torch.float32 for _, d in calls)
    voxel = 1.0 / 64
    r = np.linalg.norm(v, axis=1)
    assert np.abs(r - 0.3).max() < 0.5 * voxel
    vol = signed_volume(v, f)
    assert vol > 0 and abs(vol / (4 / 3 * math.pi * 0.3 ** 3) - 1) < 0.03
    # Every face normal points away from the centre (outward winding).
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert (np.einsum("ij,ij->i", n, v[f].mean(1)) > 0).all()
    # Watertight and consistently oriented: each edge in exactly 2 faces, each directed edge once;
    # genus 0 (Euler characteristic 2).
    counts, dcounts = edge_face_counts(f)
    assert (counts == 2).all() and (dcounts == 1).all()
    assert len(v) - len(counts) + len(f) == 2


def test_box_extents_offcentre_anisotropic():
    # Off-centre box in an anisotropic, off-centre grid: the box SDF is linear near the faces, so
    # marching cubes puts face vertices exactly on them iff the voxel spacing and origin are right.
    center, half = (0.1, -0.05, 0.02), (0.2, 0.1, 0.3)
    cfg = MeshConfig(resolution=48)
    v, f = extract_mesh(box_sdf(center, half), (-0.5, -0.3, -0.6), (0.5, 0.4, 0.5), cfg)
    np.testing.assert_allclose(v.min(0), np.subtract(center, half), atol=1e-5)
    np.testing.assert_allclose(v.max(0), np.add(center, half), atol=1e-5)
    vol = signed_volume(v, f)
    assert abs(vol / (8 * np.prod(half)) - 1) < 0.02  # the corners are bevelled by less than 2 %


def test_shifted_sphere_and_level():
    c = np.array([1.0, -2.0, 0.5])
    lo, hi = c - [0.35, 0.4, 0.5], c + [0.45, 0.5, 0.4]
    cfg = MeshConfig(resolution=40)
    voxel = ((hi - lo) / 40).max()
    v, f = extract_mesh(sphere_sdf(tuple(c), 0.25), lo, hi, cfg)
    r = np.linalg.norm(v - c, axis=1)
    assert np.abs(r - 0.25).max() < 0.5 * voxel
    np.testing.assert_allclose(v.mean(0), c, atol=0.1 * voxel)
    assert signed_volume(v, f) > 0
    # level = 0.05 extracts the offset surface at radius 0.30; tensor bounds are accepted too.
    v2, _ = extract_mesh(sphere_sdf(tuple(c), 0.25), torch.tensor(lo), torch.tensor(hi),
                         MeshConfig(resolution=40, level=0.05))
    assert np.abs(np.linalg.norm(v2 - c, axis=1) - 0.30).max() < 0.5 * voxel


def test_empty_sdf_warns_and_returns_empty():
    for sdf in (lambda x: x.norm(dim=-1) + 1.0, lambda x: -torch.ones(x.shape[0], 1)):
        with pytest.warns(EmptyMeshWarning, match="never crosses level"):
            v, f = extract_mesh(sdf, (-1, -1, -1), (1, 1, 1), MeshConfig(resolution=8))
        assert v.shape == (0, 3) and f.shape == (0, 3) and v.dtype == np.float32 and f.dtype == np.int64


def test_keep_largest_component():
    big, small = sphere_sdf((-0.2, 0.0, 0.0), 0.2), sphere_sdf((0.3, 0.0, 0.0), 0.1)

    def union(x):
        return torch.minimum(big(x), small(x))
    lo, hi = (-0.5, -0.5, -0.5), (0.5, 0.5, 0.5)
    v_all, f_all = extract_mesh(union, lo, hi, MeshConfig(resolution=48, keep_largest=False))
    v, f = extract_mesh(union, lo, hi, MeshConfig(resolution=48, keep_largest=True))
    assert (v_all[:, 0] > 0.15).any()  # both spheres without the filter
    assert np.abs(np.linalg.norm(v - [-0.2, 0, 0], axis=1) - 0.2).max() < 0.5 / 48
    assert 0 < len(v) < len(v_all) and f.max() == len(v) - 1 and f.min() == 0
    # The kept faces are exactly the big sphere's faces of the unfiltered mesh (re-indexed).
    on_big = (v_all[f_all][:, :, 0] < 0.05).all(1)
    np.testing.assert_array_equal(v[f], v_all[f_all[on_big]])
    assert abs(signed_volume(v, f) / (4 / 3 * math.pi * 0.2 ** 3) - 1) < 0.03
    # largest_component on an already connected mesh is the identity.
    v2, f2 = largest_component(v, f)
    assert v2 is v and f2 is f


def test_extract_bad_inputs():
    sdf = sphere_sdf()
    with pytest.raises(ValueError, match="bound_max > bound_min"):
        extract_mesh(sdf, (0.5, -0.5, -0.5), (-0.5, 0.5, 0.5), MeshConfig(resolution=8))
    with pytest.raises(ValueError, match="3 entries"):
        extract_mesh(sdf, (0, 0), (1, 1), MeshConfig(resolution=8))
    with pytest.raises(ValueError, match="non-finite"):
        extract_mesh(lambda x: torch.full((x.shape[0],), float("nan")), (-1,) * 3, (1,) * 3, MeshConfig(resolution=4))
    with pytest.raises(ValueError, match="shape"):
        extract_mesh(lambda x: x, (-1,) * 3, (1,) * 3, MeshConfig(resolution=4))


def test_color_vertices_constant_and_chunked():
    v = np.random.default_rng(0).uniform(-1, 1, (100, 3)).astype(np.float32)
    sizes = []

    def const(x):
        sizes.append(x.shape[0])
        return torch.tensor([0.2, 0.4, 0.6]).expand(x.shape[0], 3)
    rgba = color_vertices(const, v, chunk_size=7)
    assert rgba.dtype == np.uint8 and rgba.shape == (100, 4)
    assert (rgba == [51, 102, 153, 255]).all()
    assert sizes == [7] * 14 + [2]
    # Position-dependent colours: chunking does not change them, values are clamped to [0, 1].
    a = color_vertices(lambda x: x, v, chunk_size=13)
    b = color_vertices(lambda x: x, torch.from_numpy(v), chunk_size=1000)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:, :3], np.round(np.clip(v, 0, 1) * 255).astype(np.uint8))
    assert color_vertices(const, np.zeros((0, 3))).shape == (0, 4)


def test_pose_mesh_rigid_known_transform():
    v = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # 90 degrees about z
    T[:3, 3] = [1, 2, 3]
    posed = pose_mesh_rigid(v, T, scale=2.0)
    assert isinstance(posed, np.ndarray) and posed.dtype == np.float32 and posed.shape == (3, 3)
    np.testing.assert_allclose(posed, [[1, 4, 3], [-1, 2, 3], [1, 2, 5]], atol=1e-6)
    # Per-frame transforms (T, 4, 4) -> (T, V, 3), each frame as if posed alone; torch in, torch out.
    Ts = np.stack([np.eye(4), T, T @ T])
    batch = pose_mesh_rigid(torch.from_numpy(v), torch.from_numpy(Ts), scale=torch.tensor(0.5))
    assert isinstance(batch, torch.Tensor) and batch.shape == (3, 3, 3)
    for t in range(3):
        np.testing.assert_allclose(batch[t].numpy(), pose_mesh_rigid(v, Ts[t], 0.5), atol=1e-6)
    np.testing.assert_allclose(batch[0].numpy(), 0.5 * v, atol=1e-7)
    with pytest.raises(ValueError, match=r"\(4, 4\) or \(T, 4, 4\)"):
        pose_mesh_rigid(v, np.eye(3))


def test_pose_mesh_lbs_equals_lbs():
    g = torch.Generator().manual_seed(0)
    parents, J, V, T = [-1, 0, 1, 0], 4, 50, 5
    joints = 0.05 * torch.randn(J, 3, generator=g, dtype=torch.float64)
    _, A = forward_kinematics(axis_angle_to_matrix(0.6 * torch.randn(T, J, 3, generator=g, dtype=torch.float64)),
                              joints.expand(T, J, 3), parents)
    A[..., :3, 3] += torch.randn(T, 1, 3, generator=g, dtype=torch.float64)  # global translation
    x = 0.1 * torch.randn(V, 3, generator=g, dtype=torch.float64)
    w = torch.softmax(3 * torch.randn(V, J, generator=g, dtype=torch.float64), dim=-1)
    w[0] = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64)  # fully bound to joint 2

    posed = pose_mesh_lbs(x, w, A)
    assert posed.shape == (T, V, 3) and posed.dtype == torch.float64
    assert torch.allclose(posed, lbs(x, w, A), rtol=0, atol=1e-12)
    # Independent formula: blend the 4x4 matrices per vertex, apply in homogeneous coordinates.
    M = torch.einsum("vj,tjab->tvab", w, A)
    ref = (M @ torch.cat([x, torch.ones(V, 1, dtype=x.dtype)], -1)[None, :, :, None])[..., :3, 0]
    assert torch.allclose(posed, ref, rtol=0, atol=1e-12)
    assert torch.allclose(posed[:, 0], A[:, 2, :3, :3] @ x[0] + A[:, 2, :3, 3], rtol=0, atol=1e-12)
    # Frame chunking and numpy in / numpy out give the same result; one frame (J, 4, 4) -> (V, 3).
    chunked = pose_mesh_lbs(x.numpy(), w.numpy(), A.numpy(), max_points_per_chunk=2 * V)
    assert isinstance(chunked, np.ndarray) and chunked.shape == (T, V, 3)
    np.testing.assert_allclose(chunked, posed.numpy(), rtol=0, atol=1e-12)
    assert torch.allclose(pose_mesh_lbs(x, w, A[3]), posed[3], rtol=0, atol=1e-12)


def test_extract_then_pose_rigid_keeps_shape():
    v, f = extract_mesh(sphere_sdf(radius=0.4), (-0.5,) * 3, (0.5,) * 3, MeshConfig(resolution=24))
    T = np.eye(4)
    T[:3, :3] = axis_angle_to_matrix(torch.tensor([0.3, -0.2, 0.9], dtype=torch.float64)).numpy()
    T[:3, 3] = [0.1, 0.0, 0.6]
    posed = pose_mesh_rigid(v, T, scale=0.1)
    # A similarity with positive scale keeps the winding outward: volume scales by scale^3.
    assert abs(signed_volume(posed, f) / signed_volume(v, f) - 1e-3) < 1e-8
    np.testing.assert_allclose(posed.mean(0), T[:3, 3] + 0.1 * T[:3, :3] @ v.mean(0), atol=1e-6)
