import math

import pytest
import torch

import hold  # noqa: F401  (import-order side effects)
from hold.geometry import (
    axis_angle_to_matrix,
    blend_transforms,
    forward_kinematics,
    inverse_lbs,
    inverse_lbs_with_weights,
    knn_skinning_weights,
    lbs,
    make_transform,
    transform_points,
)

F64 = torch.float64
# A small branching tree: root, a 3-joint chain, and a 2-joint chain off the root.
TREE = [-1, 0, 1, 2, 0, 4]


def close(a, b, atol=1e-12):
    """Absolute-tolerance comparison (no relative slack, unlike torch.allclose's default)."""
    return torch.allclose(a, b, rtol=0.0, atol=atol)


def random_rest_joints(B, J, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.05 * torch.randn(B, J, 3, generator=g, dtype=F64)


def test_forward_kinematics_identity():
    joints = random_rest_joints(3, len(TREE))
    rot = torch.eye(3, dtype=F64).expand(3, len(TREE), 3, 3)
    G, A = forward_kinematics(rot, joints, TREE)
    assert G.shape == A.shape == (3, len(TREE), 4, 4)
    assert close(A, torch.eye(4, dtype=F64).expand_as(A))
    assert close(G[..., :3, 3], joints)
    assert close(G[..., :3, :3], rot)


def test_forward_kinematics_matches_recursive_definition():
    g = torch.Generator().manual_seed(1)
    J = len(TREE)
    joints = random_rest_joints(2, J, seed=2)
    rot = axis_angle_to_matrix(torch.randn(2, J, 3, generator=g, dtype=F64))
    G, A = forward_kinematics(rot, joints, TREE)
    for b in range(2):
        for j in range(J):
            # G_j = G_parent @ [rot_j | J_j - J_parent], written out joint by joint.
            ref = make_transform(rot[b, j], joints[b, j] - (joints[b, TREE[j]] if j else 0))
            k = j
            while TREE[k] >= 0:
                k = TREE[k]
                ref = make_transform(rot[b, k], joints[b, k] - (joints[b, TREE[k]] if k else 0)) @ ref
            assert close(G[b, j], ref)
    # A maps rest joints to posed joints, and is G with the rest offset undone.
    posed_joints = transform_points(A, joints[..., None, :])[..., 0, :]
    assert close(posed_joints, G[..., :3, 3])
    T_rest = make_transform(torch.eye(3, dtype=F64).expand(2, J, 3, 3), -joints)
    assert close(A, G @ T_rest)


def test_single_joint_rotation_moves_only_descendants():
    J = len(TREE)
    joints = random_rest_joints(1, J, seed=3)
    aa = torch.zeros(1, J, 3, dtype=F64)
    aa[0, 4] = torch.tensor([0.3, -0.8, 0.5], dtype=F64)  # rotate joint 4 (children: 5)
    G, A = forward_kinematics(axis_angle_to_matrix(aa), joints, TREE)
    posed = G[0, :, :3, 3]
    unmoved = [0, 1, 2, 3, 4]  # joint 4 rotates about itself
    assert close(posed[unmoved], joints[0, unmoved])
    assert (posed[5] - joints[0, 5]).norm() > 1e-3
    assert close((posed[5] - posed[4]).norm(), (joints[0, 5] - joints[0, 4]).norm())
    assert close(A[0, [0, 1, 2, 3]], torch.eye(4, dtype=F64).expand(4, 4, 4))


def test_forward_kinematics_rejects_bad_parents():
    rot = torch.eye(3).expand(1, 3, 3, 3)
    with pytest.raises(ValueError, match="parents"):
        forward_kinematics(rot, torch.zeros(1, 3, 3), [-1, 2, 0])
    with pytest.raises(ValueError, match="parents"):
        forward_kinematics(rot, torch.zeros(1, 3, 3), [-1, 0])


def test_lbs_and_blend_transforms():
    g = torch.Generator().manual_seed(4)
    J = len(TREE)
    joints = random_rest_joints(2, J, seed=5)
    _, A = forward_kinematics(axis_angle_to_matrix(0.5 * torch.randn(2, J, 3, generator=g, dtype=F64)), joints, TREE)
    x = 0.05 * torch.randn(2, 30, 3, generator=g, dtype=F64)
    # One-hot weights: LBS is the rigid transform of that joint.
    onehot = torch.nn.functional.one_hot(torch.arange(30) % J, J).to(F64)
    ref = torch.stack([transform_points(A[:, j], x)[:, n] for n, j in enumerate(torch.arange(30) % J)], 1)
    assert close(lbs(x, onehot, A), ref)
    # General weights: per-point blended matrix applied to homogeneous points; (N,J) == (B,N,J).
    w = torch.softmax(torch.randn(30, J, generator=g, dtype=F64), -1)
    T = blend_transforms(w, A)
    assert T.shape == (2, 30, 4, 4)
    x_h = torch.cat([x, torch.ones(2, 30, 1, dtype=F64)], -1)
    assert close(lbs(x, w, A), (T @ x_h[..., None])[..., :3, 0])
    assert close(lbs(x, w.expand(2, 30, J), A), lbs(x, w, A))
    # With the same weights, inverse_lbs_with_weights undoes lbs exactly.
    assert close(inverse_lbs_with_weights(lbs(x, w, A), w, A), x)


def tube_finger(n_rings=100, n_around=32, length=0.1, radius=0.008, dtype=torch.float32):
    """A ~10 cm tube along +y (3200 vertices), three bones at y = 0, 4, 7 cm, smooth weights."""
    y = torch.linspace(0, length, n_rings, dtype=F64)
    a = torch.arange(n_around, dtype=F64) * (2 * math.pi / n_around)
    Y, Ang = torch.meshgrid(y, a, indexing="ij")
    verts = torch.stack([radius * torch.cos(Ang), Y, radius * torch.sin(Ang)], -1).reshape(-1, 3)
    i, j = torch.arange(n_rings - 1)[:, None], torch.arange(n_around)[None]
    v00, v01 = i * n_around + j, i * n_around + (j + 1) % n_around
    v10, v11 = v00 + n_around, v01 + n_around
    faces = torch.cat([torch.stack([v00, v10, v11], -1).reshape(-1, 3), torch.stack([v00, v11, v01], -1).reshape(-1, 3)])
    joints = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.04, 0.0], [0.0, 0.07, 0.0]], dtype=F64)
    s1 = torch.sigmoid((verts[:, 1] - 0.04) / 0.004)
    s2 = torch.sigmoid((verts[:, 1] - 0.07) / 0.004)
    weights = torch.stack([1 - s1, s1 - s2, s2], -1)
    return verts.to(dtype), faces, joints.to(dtype), weights.to(dtype)


def posed_finger(dtype=torch.float32):
    verts, faces, joints, W = tube_finger(dtype=dtype)
    # Two poses: 10/30/30 and 20/60/45 degree bends about x (the second with a twist of joint 1).
    aa = torch.zeros(2, 3, 3, dtype=dtype)
    aa[..., 0] = torch.tensor([[10.0, 30.0, 30.0], [20.0, 60.0, 45.0]], dtype=dtype) * math.pi / 180
    aa[1, 1, 2] = 0.3
    _, A = forward_kinematics(axis_angle_to_matrix(aa), joints.expand(2, 3, 3), [-1, 0, 1])
    verts_posed = lbs(verts.expand(2, -1, -1), W, A)
    return verts, faces, W, A, verts_posed


def test_inverse_lbs_recovers_rest_vertices_and_surface_points():
    verts, faces, W, A, verts_posed = posed_finger()
    assert (verts_posed - verts).norm(dim=-1).max() > 0.03  # the poses really bend the finger
    # (a) the posed vertices themselves: exact up to 1e-5 m.
    x_rest, dist = inverse_lbs(verts_posed, verts_posed, W, A)
    assert (x_rest - verts).norm(dim=-1).max() < 1e-5
    assert torch.equal(dist, torch.zeros_like(dist))
    # (b) random points on the posed triangles: their true rest points are the same barycentric
    # mixes of the rest vertices; < 1 mm everywhere (including the compressed inside of the bends).
    g = torch.Generator().manual_seed(7)
    f = faces[torch.randint(len(faces), (4000,), generator=g)]
    bary = -torch.log(torch.rand(4000, 3, generator=g))
    bary = bary / bary.sum(-1, keepdim=True)  # uniform on the triangle
    x_posed = (verts_posed[:, f] * bary[None, :, :, None]).sum(-2)
    x_true = (verts[f] * bary[:, :, None]).sum(-2)
    x_rest, dist = inverse_lbs(x_posed, verts_posed, W, A, chunk_size=1500)
    err = (x_rest - x_true).norm(dim=-1)
    assert err.max() < 1e-3, f"max inverse-LBS error {err.max().item() * 1e3:.3f} mm"
    assert err.mean() < 5e-5
    assert (dist > 0).all() and dist.max() < 3e-3
    # Where the weights are nearly constant (> 2 cm from a joint) the error vanishes (~1e-6).
    far = ((x_true[:, 1] - 0.04).abs() > 0.02) & ((x_true[:, 1] - 0.07).abs() > 0.02)
    assert err[:, far].max() < 1e-5


def test_inverse_lbs_gradients_reach_A():
    verts, faces, W, A, verts_posed = posed_finger(dtype=F64)
    g = torch.Generator().manual_seed(8)
    x_posed = verts_posed[:, :200] + 0.002 * torch.randn(2, 200, 3, generator=g, dtype=F64)
    A = A.clone().requires_grad_(True)
    x_rest, _ = inverse_lbs(x_posed, verts_posed.detach(), W, A)
    x_rest.square().sum().backward()
    assert torch.isfinite(A.grad).all() and A.grad[:, :, :3].abs().sum() > 0
    # Exact gradients (finite differences) w.r.t. A and the query points, on a few points.
    xs = x_posed[:1, :5].clone().requires_grad_(True)
    A1 = A[:1].detach().clone().requires_grad_(True)
    fn = lambda xq, A_: inverse_lbs(xq, verts_posed[:1], W.double(), A_)[0]
    assert torch.autograd.gradcheck(fn, (xs, A1))


def test_knn_skinning_weights_properties():
    g = torch.Generator().manual_seed(9)
    verts = torch.rand(2, 300, 3, generator=g, dtype=F64)
    vw = torch.softmax(3 * torch.randn(300, 4, generator=g, dtype=F64), -1)
    # On the vertices: the vertex weights themselves; distance 0 with a zero (not NaN) gradient.
    x = verts.clone().requires_grad_(True)
    w, d = knn_skinning_weights(x, verts, vw)
    assert close(w, vw.expand(2, -1, -1), atol=1e-6)
    assert torch.equal(d, torch.zeros_like(d))
    (w.sum() + d.sum()).backward()
    assert torch.isfinite(x.grad).all()
    # Elsewhere: rows sum to 1, dist is the brute-force nearest distance, chunking changes nothing.
    q = torch.rand(2, 500, 3, generator=g, dtype=F64)
    w, d = knn_skinning_weights(q, verts, vw, k=6)
    assert close(w.sum(-1), torch.ones(2, 500, dtype=F64))
    assert close(d, torch.cdist(q, verts, compute_mode="donot_use_mm_for_euclid_dist").min(-1).values)
    w2, d2 = knn_skinning_weights(q, verts, vw.expand(2, -1, -1), k=6, chunk_size=37)
    assert close(w2, w) and close(d2, d)
    with pytest.raises(ValueError, match="k < V"):
        knn_skinning_weights(q, verts[:, :5], vw[:5], k=8)


def test_knn_weights_continuous_when_the_neighbour_set_changes():
    # Vertices on a line at x = 0..10, k = 2 (3 neighbours found). At x = 2.5 the third neighbour
    # switches from vertex 1 to vertex 4; plain inverse-distance weights would jump there.
    verts = torch.zeros(1, 11, 3, dtype=F64)
    verts[0, :, 0] = torch.arange(11, dtype=F64)
    vw = torch.eye(11, dtype=F64)  # weight j = influence of vertex j
    x = torch.zeros(1, 2, 3, dtype=F64)
    x[0, :, 0] = torch.tensor([2.5 - 1e-9, 2.5 + 1e-9], dtype=F64)
    x[0, :, 1] = 0.3
    w, _ = knn_skinning_weights(x, verts, vw, k=2)
    assert (w[0, 0] - w[0, 1]).abs().max() < 1e-6
    assert w[0, :, 2].min() > 0.45 and w[0, :, 3].min() > 0.45  # the two nearest share the weight


def test_closest_surface_points_match_brute_force():
    """Closest points on a random closed mesh agree with an exhaustive search over all triangles."""
    import trimesh

    from hold.geometry.mesh_query import closest_point_on_triangles, closest_surface_points

    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.05)
    verts = torch.as_tensor(mesh.vertices, dtype=torch.float64)[None]
    faces = torch.as_tensor(mesh.faces)
    g = torch.Generator().manual_seed(0)
    x = verts[:, torch.randint(0, verts.shape[1], (500,), generator=g)] + 0.004 * torch.randn(1, 500, 3, generator=g, dtype=torch.float64)
    f, bary, dist = closest_surface_points(x, verts, faces, k=4)
    a, b, c = (verts[0, faces[:, i]] for i in range(3))
    w = closest_point_on_triangles(x[0, :, None], a, b, c)  # (N, F, 3) exhaustive
    q = w[..., :1] * a + w[..., 1:2] * b + w[..., 2:] * c
    brute = (x[0, :, None] - q).norm(dim=-1).min(1).values
    assert torch.allclose(dist[0], brute, atol=1e-9)
    assert (bary >= -1e-9).all() and torch.allclose(bary.sum(-1), torch.ones_like(dist))
