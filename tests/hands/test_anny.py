"""The embedded anny hand backend: counts, skinning consistency, pivots, mirroring, gradients."""
import numpy as np
import pytest
import torch

from hold.geometry.lbs import inverse_lbs, lbs
from hold.geometry.rotations import axis_angle_to_matrix
from hold.hands.anny_build import cache_path
from hold.hands.kinematics import flexion_axes, palm_center, palm_normal, rest_keypoints
from tests.conftest import natural_pose


def _random_params(model, B, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(global_orient=torch.randn(B, 3, generator=g), hand_pose=natural_pose(model, B, seed),
                betas=torch.randn(B, model.num_betas, generator=g), transl=0.3 * torch.randn(B, 3, generator=g))


def test_counts_and_rest_pose(anny_right):
    out = anny_right(**anny_right.zero_params(2))
    assert out.vertices.shape == (2, 1609, 3) and out.keypoints.shape == (2, 21, 3)
    assert out.bone_transforms.shape == (2, 21, 4, 4) and out.faces.shape == (3196, 3)
    assert torch.allclose(out.skinning_weights.sum(1), torch.ones(1609), atol=1e-5)
    assert torch.allclose(out.vertices, out.rest_vertices, atol=1e-6)
    assert torch.allclose(out.bone_transforms, torch.eye(4).expand(2, 21, 4, 4), atol=1e-6)
    # A real hand: 15-22 cm from wrist to middle fingertip, fingers spread over 6-10 cm.
    kp = out.keypoints[0]
    assert 0.15 < (kp[12] - kp[0]).norm() < 0.22
    assert 0.04 < (kp[5] - kp[17]).norm() < 0.10


def test_skinning_transforms_reproduce_vertices(anny_right):
    p = _random_params(anny_right, 4)
    out = anny_right(**p)
    assert torch.allclose(lbs(out.rest_vertices, out.skinning_weights, out.bone_transforms), out.vertices, atol=1e-5)
    # posed joints are where the skinning transforms put the rest joints
    _, rest_j = anny_right.shaped_rest(p["betas"])
    moved = (out.bone_transforms[..., :3, :3] @ rest_j[..., None])[..., 0] + out.bone_transforms[..., :3, 3]
    assert torch.allclose(moved, out.joints, atol=1e-5)


def test_global_orient_pivots_about_wrist(anny_right):
    p = anny_right.zero_params(1)
    p["global_orient"] = torch.tensor([[0.3, -1.2, 0.7]])
    p["transl"] = torch.tensor([[0.1, -0.2, 0.5]])
    out = anny_right(**p)
    rest = anny_right(**anny_right.zero_params(1))
    assert torch.allclose(out.keypoints[0, 0], rest.keypoints[0, 0] + p["transl"][0], atol=1e-6)
    R = axis_angle_to_matrix(p["global_orient"][0])
    expect = (rest.vertices[0] - rest.keypoints[0, 0]) @ R.T + rest.keypoints[0, 0] + p["transl"][0]
    assert torch.allclose(out.vertices[0], expect, atol=1e-5)


def test_flexion_curls_fingertips_toward_the_palm(anny_right, anny_left):
    for model in (anny_right, anny_left):
        kp = rest_keypoints(model)
        pose = (flexion_axes(model, kp) * torch.deg2rad(torch.tensor(25.0))).reshape(1, 45)
        out = model(torch.zeros(1, 3), pose)
        tips = [4, 8, 12, 16, 20]
        toward = (out.keypoints[0, tips] - kp[tips]) @ palm_normal(kp, model.side)
        assert (toward > 0.015).all(), toward  # every tip moves >= 1.5 cm to the palm side
        before = (kp[tips] - palm_center(kp)).norm(dim=-1)
        after = (out.keypoints[0, tips] - palm_center(kp)).norm(dim=-1)
        assert (after[1:] < before[1:]).all()


def test_left_is_the_mirror_of_right(anny_right, anny_left):
    p = _random_params(anny_right, 3, seed=1)
    mirror = torch.tensor([-1.0, 1.0, 1.0])
    aa_mirror = torch.tensor([1.0, -1.0, -1.0])  # M R(w) M = R((w_x, -w_y, -w_z)) for M = diag(-1,1,1)
    pl = dict(global_orient=p["global_orient"] * aa_mirror,
              hand_pose=(p["hand_pose"].reshape(3, 15, 3) * aa_mirror).reshape(3, 45),
              betas=p["betas"], transl=p["transl"] * mirror)
    right, left = anny_right(**p), anny_left(**pl)
    assert torch.allclose(left.vertices, right.vertices * mirror, atol=1e-5)
    assert torch.allclose(left.keypoints, right.keypoints * mirror, atol=1e-5)
    # winding flipped with the mirror so normals still point outward
    v = left.rest_vertices[0][left.faces]
    assert torch.einsum("fi,fi->f", v[:, 0], torch.linalg.cross(v[:, 1], v[:, 2])).sum() > 0


def test_betas_change_the_shape_within_human_range(anny_right):
    p = anny_right.zero_params(5)
    p["betas"] = torch.zeros(5, 10)
    p["betas"][1:, 0] = torch.tensor([-2.0, -1.0, 1.0, 2.0])
    kp = anny_right(**p).keypoints
    length = (kp[:, 12] - kp[:, 0]).norm(dim=-1)
    assert length[1:].sub(length[0]).abs().max() > 0.004  # the first shape direction matters
    assert (length > 0.12).all() and (length < 0.26).all()


def test_gradients_reach_every_parameter(anny_right):
    p = {k: v.requires_grad_() for k, v in _random_params(anny_right, 2).items()}
    out = anny_right(**p)
    (out.vertices.square().sum() + out.keypoints.square().sum()).backward()
    for k, v in p.items():
        assert v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0, k


def test_inverse_lbs_returns_canonical_surface_points(anny_right):
    p = _random_params(anny_right, 2, seed=3)
    out = anny_right(**p)
    g = torch.Generator().manual_seed(0)
    faces = out.faces[torch.randint(0, out.faces.shape[0], (3000,), generator=g)]
    bary = torch.distributions.Dirichlet(torch.ones(3)).sample((3000,))
    x_posed = (out.vertices[:, faces] * bary[None, :, :, None]).sum(2)
    x_true = (out.rest_vertices[:, faces] * bary[None, :, :, None]).sum(2)
    x_rest, dist = inverse_lbs(x_posed, out.vertices, out.skinning_weights, out.bone_transforms,
                               faces=out.faces)
    err = (x_rest - x_true).norm(dim=-1)
    assert err.max() < 1e-3, f"max {err.max() * 1e3:.2f} mm"
    assert dist.max() < 1e-4  # the points are on the posed surface
    # HOLD's vertex k-NN weights are much worse between anny's coarse vertices (documented)
    x_knn, _ = inverse_lbs(x_posed, out.vertices, out.skinning_weights, out.bone_transforms, k=8)
    assert (x_knn - x_true).norm(dim=-1).max() > err.max()


def test_cache_file_exists_and_is_reused(anny_right):
    path = cache_path()
    assert path.exists()
    assert not list(path.parent.glob(path.name + ".tmp*"))
    with np.load(path) as data:
        assert data["rest_vertices"].shape == (1609, 3)
        assert float(data["shape_explained_variance"]) > 0.99  # 10 betas span anny's phenotype space
