import math

import pytest
import torch

import hold  # noqa: F401  (import-order side effects)
from hold.geometry import make_intrinsics, pixel_rays, se3_exp, transform_points
from hold.rendering import ray_points, ray_sphere_intersect, transform_rays

F64 = torch.float64


def unit(v):
    return v / v.norm(dim=-1, keepdim=True)


def random_dirs(n, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return unit(torch.randn(n, 3, generator=g, dtype=F64)).to(dtype)


def test_through_centre_hits_at_distance_plus_minus_radius():
    d = random_dirs(16, 0)
    o = torch.randn(16, 3, generator=torch.Generator().manual_seed(1))
    dist = torch.linspace(2.0, 9.0, 16)
    r = torch.linspace(0.1, 1.5, 16)
    c = o + dist[:, None] * d  # per-ray centres on the rays
    t_near, t_far, hit = ray_sphere_intersect(o, d, c, r)
    assert hit.all()
    torch.testing.assert_close(t_near, dist - r, rtol=0, atol=2e-6)
    torch.testing.assert_close(t_far, dist + r, rtol=0, atol=2e-6)


def test_offset_ray_half_chord_and_shared_centre():
    # rays parallel to z at lateral offsets p from a sphere at z = 5: t = 5 -+ sqrt(r^2 - p^2)
    p = torch.tensor([0.0, 0.6, 0.8, 0.99])
    o = torch.stack([p, torch.zeros(4), torch.zeros(4)], dim=-1)
    d = torch.tensor([0.0, 0.0, 1.0]).expand(4, 3)
    t_near, t_far, hit = ray_sphere_intersect(o, d, torch.tensor([0.0, 0.0, 5.0]), 1.0)
    half = torch.sqrt(1.0 - p**2)
    assert hit.all()
    torch.testing.assert_close(t_near, 5.0 - half, rtol=0, atol=1e-6)
    torch.testing.assert_close(t_far, 5.0 + half, rtol=0, atol=1e-6)
    # the points at t_near / t_far are on the sphere
    x = ray_points(o, d, torch.stack([t_near, t_far], dim=1))
    torch.testing.assert_close((x - torch.tensor([0.0, 0.0, 5.0])).norm(dim=-1), torch.ones(4, 2), rtol=0, atol=1e-5)


def test_misses_are_zero_and_finite_with_finite_gradients():
    o = torch.zeros(4, 3)
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    c = torch.tensor([[2.0, 0.0, 5.0],   # passes 2 m beside a 1 m sphere
                      [0.0, 0.0, -5.0],  # sphere behind the origin
                      [0.0, 1.0, 0.0],   # tangent: perpendicular distance == radius
                      [0.0, 0.0, 3.0]])  # a hit, for contrast
    c.requires_grad_(True)
    t_near, t_far, hit = ray_sphere_intersect(o, d, c, 1.0)
    assert hit.tolist() == [False, False, False, True]
    assert torch.equal(t_near[:3], torch.zeros(3)) and torch.equal(t_far[:3], torch.zeros(3))
    (t_near.sum() + t_far.sum()).backward()
    assert torch.isfinite(c.grad).all()
    assert torch.equal(c.grad[:3], torch.zeros(3, 3))
    torch.testing.assert_close(c.grad[3], torch.tensor([0.0, 0.0, 2.0]))  # d(t_near + t_far)/dc_z = 2


def test_origin_inside_clamps_t_near_to_zero():
    c = torch.tensor([0.0, 0.0, 0.0])
    o = torch.tensor([[0.3, 0.0, 0.0], [0.0, 0.0, 0.5]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    t_near, t_far, hit = ray_sphere_intersect(o, d, c, torch.tensor([1.0, 1.0]))
    assert hit.all()
    assert torch.equal(t_near, torch.zeros(2))
    torch.testing.assert_close(t_far, torch.tensor([math.sqrt(1 - 0.09), 0.5]), rtol=0, atol=1e-6)


def test_far_small_sphere_is_accurate_in_fp32():
    # 1 km away, 1 cm radius: b^2 - 4ac would cancel to noise (ulp(1e6) ~ 0.06) in fp32
    p = torch.tensor([0.0, 0.005, 0.009])
    o = torch.stack([p, torch.zeros(3), torch.zeros(3)], dim=-1)
    d = torch.tensor([0.0, 0.0, 1.0]).expand(3, 3)
    t_near, t_far, hit = ray_sphere_intersect(o, d, torch.tensor([0.0, 0.0, 1000.0]), 0.01)
    assert hit.all()
    chord = 2 * torch.sqrt(0.01**2 - p.double() ** 2)
    assert (t_far.double() - t_near.double() - chord).abs().max() < 2e-4


def test_non_unit_directions_give_t_in_units_of_d():
    d = torch.tensor([[0.0, 0.0, 2.0]])
    t_near, t_far, hit = ray_sphere_intersect(torch.zeros(1, 3), d, torch.tensor([0.0, 0.0, 5.0]), 1.0)
    torch.testing.assert_close(torch.cat([t_near, t_far]), torch.tensor([2.0, 3.0]))


def test_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(3)
    o = torch.randn(5, 3, generator=g, dtype=F64) * 0.1
    d = unit(torch.tensor([0.0, 0.0, 1.0], dtype=F64) + 0.1 * torch.randn(5, 3, generator=g, dtype=F64))
    c = torch.tensor([0.05, -0.02, 3.0], dtype=F64, requires_grad=True)
    r = torch.full((5,), 0.5, dtype=F64, requires_grad=True)
    assert ray_sphere_intersect(o, d, c, r)[2].all()
    assert torch.autograd.gradcheck(lambda c, r: ray_sphere_intersect(o, d, c, r)[:2], (c, r))


def test_pixel_rays_hit_a_sphere_exactly_inside_its_image_disc():
    # sphere on the optical axis: a pixel's ray hits iff its angle to the axis < asin(r / z)
    K = make_intrinsics(40.0, 40.0, 16.0, 16.0)
    v, u = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(32) + 0.5, indexing="ij")
    uv = torch.stack([u, v], dim=-1).reshape(-1, 2)
    o, d = pixel_rays(K, uv)
    _, _, hit = ray_sphere_intersect(o, d, torch.tensor([0.0, 0.0, 2.0]), 0.5)
    angle = torch.acos(d[:, 2].clamp(max=1.0))
    expected = angle < math.asin(0.25)
    assert hit.sum() > 50
    assert torch.equal(hit, expected)


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_transform_rays_maps_points_and_converts_t(scale):
    g = torch.Generator().manual_seed(4)
    R = 8
    T = se3_exp(torch.randn(R, 6, generator=g, dtype=F64))
    T[:, :3, :3] *= scale  # similarity: x_b = s R x_a + t
    o = torch.randn(R, 3, generator=g, dtype=F64)
    d = random_dirs(R, 5, F64)
    t_a = torch.rand(R, 4, generator=g, dtype=F64) * 3
    o_b, d_b, t_scale = transform_rays(T, o, d)
    torch.testing.assert_close(d_b.norm(dim=-1), torch.ones(R, dtype=F64))
    torch.testing.assert_close(t_scale, torch.full((R,), scale, dtype=F64))
    expected = transform_points(T, ray_points(o, d, t_a))
    torch.testing.assert_close(ray_points(o_b, d_b, t_a * t_scale[:, None]), expected)
    # one shared T (4, 4) broadcasts over the rays
    o_b1, d_b1, s1 = transform_rays(T[0], o, d)
    torch.testing.assert_close(o_b1, transform_points(T[0], o))
    assert s1.shape == (R,)


def test_intersection_is_frame_independent():
    # intersect in the camera frame, or in an object frame where the sphere is the unit sphere:
    # the t values agree after dividing by t_scale
    g = torch.Generator().manual_seed(6)
    T_cam_from_obj = se3_exp(torch.tensor([0.1, -0.05, 1.5, 0.3, -0.2, 0.1], dtype=F64))
    s = 0.2  # object scale: x_cam = T (s x_obj)
    T_obj_from_cam = torch.linalg.inv(T_cam_from_obj.clone())
    T_obj_from_cam[:3, :] /= s
    d = unit(T_cam_from_obj[:3, 3] + 0.15 * torch.randn(32, 3, generator=g, dtype=F64))
    o = torch.zeros(32, 3, dtype=F64)
    t_near_c, t_far_c, hit_c = ray_sphere_intersect(o, d, T_cam_from_obj[:3, 3], s)
    o_obj, d_obj, t_scale = transform_rays(T_obj_from_cam, o, d)
    t_near_o, t_far_o, hit_o = ray_sphere_intersect(o_obj, d_obj, torch.zeros(3, dtype=F64), 1.0)
    assert hit_c.sum() > 10 and (~hit_c).any() and torch.equal(hit_c, hit_o)
    torch.testing.assert_close(t_near_o / t_scale, t_near_c)
    torch.testing.assert_close(t_far_o / t_scale, t_far_c)


def test_bad_shapes_name_the_argument():
    with pytest.raises(ValueError, match="'directions'"):
        ray_sphere_intersect(torch.zeros(4, 3), torch.zeros(4, 2), torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="'T_b_from_a'"):
        transform_rays(torch.eye(3), torch.zeros(4, 3), torch.zeros(4, 3))
