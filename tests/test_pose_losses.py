"""Loss terms of the pose refinement (hold.pose_losses) on cases with known answers."""
import math

import numpy as np
import pytest
import torch

from hold.geometry.rotations import axis_angle_to_matrix
from hold.pose_losses import (
    allowed_distance, bilinear_lookup, contact_loss, distance_outside, gmof, keypoint_error_px, keypoint_loss,
    mask_pixels, nearest_points, penetration_depth, penetration_loss, rigid_sdf_m, rotation_acceleration,
    silhouette_loss, smoothness_loss, translation_acceleration,
)


def _labels():
    lab = np.zeros((20, 30), np.uint8)
    lab[5:10, 10:20] = 1        # object: x in [10, 20), y in [5, 10)
    lab[12:15, 2:5] = 255       # unknown
    return lab


def test_allowed_distance_and_mask_pixels():
    lab = _labels()
    (dist, usable), uv = allowed_distance(lab), mask_pixels(lab, 1, max_pixels=1000, rng=np.random.default_rng(0))
    assert usable and dist.shape == lab.shape and dist.dtype == np.float32
    assert dist[7, 15] == 0 and dist[13, 3] == 0          # on the node / on unknown pixels
    assert dist[7, 25] == pytest.approx(6.0)                # 6 pixels right of the last object column
    assert dist[0, 15] == pytest.approx(5.0)
    assert uv.shape == (50, 2) and uv.min(0).tolist() == [10.5, 5.5] and uv.max(0).tolist() == [19.5, 9.5]
    uv_sub = mask_pixels(lab, 1, max_pixels=7, rng=np.random.default_rng(0))
    assert uv_sub.shape == (7, 2) and set(map(tuple, uv_sub)) <= set(map(tuple, uv))
    empty = np.zeros((4, 4), np.uint8)
    (_, usable), uv_none = allowed_distance(empty), mask_pixels(empty, 2, 10, np.random.default_rng(0))
    assert not usable and uv_none.shape == (0, 2)


def test_bilinear_lookup_pixel_centres_and_interpolation():
    img = torch.arange(12.0).reshape(1, 3, 4)  # value = 4 y + x at the centre (x + 0.5, y + 0.5)
    uv = torch.tensor([[[0.5, 0.5], [3.5, 2.5], [1.0, 0.5], [2.0, 2.0], [1.25, 1.5]]])
    got = bilinear_lookup(img, uv)[0]
    assert torch.allclose(got, torch.tensor([0.0, 11.0, 0.5, 7.5, 4.75]), atol=1e-5)
    # outside the image: border value + distance beyond the border
    d = distance_outside(img, torch.tensor([[[-2.0, 0.5], [4.0, 5.0]]]))[0]
    assert torch.allclose(d, torch.tensor([0.0 + 2.0, 11.0 + 2.0]), atol=1e-5)


def test_silhouette_loss_known_answers_and_gradients():
    lab = _labels()
    dist, mask_uv = allowed_distance(lab)[0], mask_pixels(lab, 1, 1000, np.random.default_rng(0))
    dist, mask_uv = torch.as_tensor(dist)[None], torch.as_tensor(mask_uv)[None]
    ok = torch.ones(1, mask_uv.shape[1], dtype=torch.bool)
    # points exactly on every mask pixel centre: both terms 0
    inward, outward = silhouette_loss(mask_uv.clone(), torch.ones(1, 50, dtype=torch.bool), dist, mask_uv, ok)
    assert float(inward) == 0 and float(outward) == pytest.approx(0.0, abs=1e-5)
    # the same points shifted 6 px right (outside the mask by up to 6 px, background there)
    uv = (mask_uv + torch.tensor([6.0, 0.0])).requires_grad_()
    inward, outward = silhouette_loss(uv, torch.ones(1, 50, dtype=torch.bool), dist, mask_uv, ok)
    # columns x+6 for x = 10..19 land at 16..25: inside up to 19.5 (0), then 1..6 px outside
    assert float(inward.detach()) == pytest.approx(np.mean([0, 0, 0, 0, 1, 2, 3, 4, 5, 6]), abs=1e-5)
    # mask columns 10..15 are 6..1 px from the nearest shifted point (16 is the first covered)
    assert float(outward.detach()) == pytest.approx(np.mean([6, 5, 4, 3, 2, 1, 0, 0, 0, 0]), abs=1e-4)
    (inward + outward).backward()
    assert uv.grad[0, :, 0].sum() > 0  # moving the points left (negative x) lowers both terms
    # dead zone and truncation
    _, out_tol = silhouette_loss(uv.detach(), torch.ones(1, 50, dtype=torch.bool), dist, mask_uv, ok, tolerance_px=2.0)
    assert float(out_tol) == pytest.approx(np.mean([4, 3, 2, 1, 0, 0, 0, 0, 0, 0]), abs=1e-4)
    inward_cap, _ = silhouette_loss(uv.detach(), torch.ones(1, 50, dtype=torch.bool), dist, mask_uv, ok, max_px=2.0)
    assert float(inward_cap) == pytest.approx(np.mean([0, 0, 0, 0, 1, 2, 2, 2, 2, 2]), abs=1e-5)
    # invalid points are ignored; the nearest search agrees with brute force
    valid = torch.zeros(1, 50, dtype=torch.bool)
    valid[0, :3] = True
    idx = nearest_points(mask_uv, uv.detach(), valid)
    assert valid[0, idx].all()
    brute = torch.cdist(mask_uv[0], uv.detach()[0, :3]).argmin(-1)
    assert torch.equal(idx[0], brute)


def test_keypoint_terms():
    target = torch.zeros(2, 21, 3)
    target[..., 2] = 1.0
    uv = torch.zeros(2, 21, 2)
    uv[0, :, 0] = 3.0  # every keypoint 3 px off
    uv[1, 0, 0] = 1000.0  # one huge outlier
    err = keypoint_error_px(uv, target)
    assert torch.allclose(err, torch.tensor([3.0, 1000.0 / 21]))
    loss = keypoint_loss(uv, target, sigma_px=10.0)
    assert float(loss[0]) == pytest.approx(10 * 9 / (9 + 100), rel=1e-5)
    assert float(loss[1]) < 10.0 / 21 + 1e-3  # the outlier costs at most sigma
    assert float(gmof(torch.tensor(1e12), 10.0)) == pytest.approx(10.0, rel=1e-6)
    target[1, :, 2] = 0.0  # nothing detected: no signal
    assert float(keypoint_loss(uv, target, 10.0)[1]) == 0.0


def _sphere_field(x):  # unit sphere of radius 0.5 in field units
    return x.norm(dim=-1) - 0.5


def test_rigid_sdf_in_metres_and_outside_the_field():
    T = torch.eye(4)[None].clone()
    T[0, :3, :3] = axis_angle_to_matrix(torch.tensor([0.3, -0.2, 0.5]))
    T[0, :3, 3] = torch.tensor([0.1, 0.0, 0.5])
    scale = 0.1  # object radius 0.05 m
    d = torch.randn(1, 6, 3)
    d = d / d.norm(dim=-1, keepdim=True)
    r = torch.tensor([0.0, 0.03, 0.05, 0.07, 0.12, 0.3])  # metres from the centre
    x_cam = T[0, :3, 3] + r[None, :, None] * d
    sdf = rigid_sdf_m(_sphere_field, x_cam, T, scale, far_radius=float("inf"))
    assert torch.allclose(sdf[0], r - 0.05, atol=1e-6)  # exact inside and outside the unit sphere
    calls = []
    sdf = rigid_sdf_m(lambda x: calls.append(len(x)) or _sphere_field(x), x_cam, T, scale)  # far_radius 1.5
    assert calls == [5]  # the point 3 field units out is not sent through the field
    assert torch.allclose(sdf[0, :5], r[:5] - 0.05, atol=1e-6)
    assert float(sdf[0, 5]) == pytest.approx((3.0 - 1.0) * scale)  # lower bound: the radial excess


def test_contact_only_where_close_and_only_the_closest_point():
    zone = torch.tensor([0, 0, 0, 1, 1, 2])
    sdf = torch.tensor([[0.006, 0.004, 0.02, 0.05, 0.03, -0.002],
                        [0.05, 0.04, 0.03, 0.05, 0.06, 0.07]], requires_grad=True)
    loss, n = contact_loss(sdf, zone, 3, radius_m=0.01, tolerance_m=0.001)
    # frame 0: zone 0 closest 4 mm (pulled to 1 mm tolerance: 3 mm), zone 1 far (ignored), zone 2 inside (0)
    assert n.tolist() == [2.0, 0.0]
    assert torch.allclose(loss, torch.tensor([(0.003 + 0.0) / 2, 0.0]))
    loss.sum().backward()
    assert torch.count_nonzero(sdf.grad).item() == 1 and sdf.grad[0, 1] > 0  # only zone 0's closest point


def test_penetration():
    sdf = torch.tensor([[0.01, -0.002, -0.004, 0.0], [0.02, 0.03, 0.01, 0.0]])
    assert torch.allclose(penetration_loss(sdf), torch.tensor([0.0015, 0.0]))
    assert torch.allclose(penetration_depth(sdf), torch.tensor([0.004, 0.0]))


def test_smoothness_zero_for_constant_velocity():
    t = torch.arange(6.0)[:, None]
    x = torch.cat([0.01 * t, -0.02 * t, 0.5 + 0 * t], 1)
    assert torch.allclose(translation_acceleration(x), torch.zeros(4, 3))
    R = axis_angle_to_matrix(t * torch.tensor([0.1, 0.2, -0.05]))  # constant angular velocity
    R = R @ axis_angle_to_matrix(torch.tensor([1.0, 0.5, 0.2]))
    assert float(smoothness_loss(rotation_acceleration(R))) < 1e-10
    # one jolt: a 0.1 rad extra rotation at frame 3 (acceleration +0.1, -0.2, +0.1 rad / frame^2)
    bump = torch.zeros(6, 3)
    bump[3] = torch.tensor([0.0, 0.0, 0.1])
    R2 = axis_angle_to_matrix(bump) @ R
    acc = rotation_acceleration(R2)
    assert acc.norm(dim=-1).tolist() == pytest.approx([0.0, 0.1, 0.2, 0.1], abs=2e-3)
    x2 = x.clone()
    x2[2, 0] += 0.01
    assert float(smoothness_loss(translation_acceleration(x2))) == pytest.approx((1e-4 + 4e-4 + 1e-4) / 4)
    assert float(smoothness_loss(translation_acceleration(x[:2]))) == 0.0
    # gradients are finite at zero relative rotation
    Rg = torch.eye(3).expand(4, 3, 3).clone().requires_grad_()
    smoothness_loss(rotation_acceleration(Rg)).backward()
    assert torch.isfinite(Rg.grad).all()
    assert math.isfinite(float(smoothness_loss(rotation_acceleration(Rg.detach()))))
