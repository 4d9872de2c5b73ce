import pytest
import torch

import hold  # noqa: F401  (import-order side effects)
from hold.geometry import (
    image_rays,
    make_intrinsics,
    pixel_centers,
    pixel_rays,
    project,
    project_with_depth,
    scale_intrinsics,
    unproject,
)

F64 = torch.float64


def close(a, b, atol=1e-12):
    """Absolute-tolerance comparison (no relative slack, unlike torch.allclose's default)."""
    return torch.allclose(a, b, rtol=0.0, atol=atol)


def K_test(dtype=torch.float32, skew=0.0):
    return make_intrinsics(500.0, 520.0, 320.5, 241.25, skew=skew, dtype=dtype)


def random_points(shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, 3, generator=g, dtype=F64) * 0.2
    x[..., 2] = 0.3 + 1.5 * torch.rand(shape, generator=g, dtype=F64)
    return x.to(dtype)


def test_make_intrinsics_layout_and_batching():
    K = K_test()
    assert K.dtype == torch.float32
    assert torch.equal(K, torch.tensor([[500.0, 0, 320.5], [0, 520.0, 241.25], [0, 0, 1]]))
    Kb = make_intrinsics(torch.tensor([100.0, 200.0], dtype=F64), 150.0, 10.0, 20.0)
    assert Kb.shape == (2, 3, 3) and Kb.dtype == F64
    assert torch.equal(Kb[1], torch.tensor([[200.0, 0, 10], [0, 150, 20], [0, 0, 1]], dtype=F64))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("skew", [0.0, 3.0])
def test_project_unproject_round_trip(dtype, skew):
    K = K_test(dtype, skew)
    x = random_points((2, 100), dtype=dtype)
    uv, z = project_with_depth(K, x)
    assert uv.shape == (2, 100, 2) and z.shape == (2, 100)
    # Independent reference: homogeneous K x / z.
    p = x @ K.T
    assert close(uv, p[..., :2] / p[..., 2:], atol=1e-4 if dtype == torch.float32 else 1e-10)
    x_back = unproject(K, uv, z)
    assert close(x_back, x, atol=1e-5 if dtype == torch.float32 else 1e-12)


def test_batched_intrinsics():
    K = torch.stack([K_test(F64), scale_intrinsics(K_test(F64), 0.5, 0.25)])  # (2, 3, 3)
    x = random_points((2, 10), dtype=F64)
    uv = project(K, x)
    for b in range(2):
        assert close(uv[b], project(K[b], x[b]))
    assert close(unproject(K, uv, x[..., 2]), x)


def test_pixel_centre_convention():
    K = K_test(F64)
    # A point on the optical axis projects to the principal point.
    assert close(project(K, torch.tensor([[0.0, 0.0, 2.0]], dtype=F64))[0], torch.tensor([320.5, 241.25], dtype=F64))
    c = pixel_centers(4, 6, dtype=F64)
    assert c.shape == (4, 6, 2)
    assert torch.equal(c[0, 0], torch.tensor([0.5, 0.5], dtype=F64))
    assert torch.equal(c[3, 5], torch.tensor([5.5, 3.5], dtype=F64))  # (u = column, v = row)
    rays = image_rays(K, 4, 6)
    assert rays.shape == (4, 6, 3)
    # The ray through pixel (0, 0) goes through uv (0.5, 0.5); every ray through its own centre.
    assert close(project(K, rays[:1, :1])[0, 0], torch.tensor([0.5, 0.5], dtype=F64), atol=1e-10)
    assert close(project(K, rays.reshape(-1, 3)), c.reshape(-1, 2), atol=1e-10)


def test_pixel_rays_are_unit_and_parallel_to_the_point():
    K = K_test(F64)
    x = random_points((50,), seed=1, dtype=F64)
    origins, d = pixel_rays(K, project(K, x))
    assert torch.equal(origins, torch.zeros_like(x))
    assert close(d.norm(dim=-1), torch.ones(50, dtype=F64))
    assert close(torch.linalg.cross(d, x), torch.zeros_like(x))  # parallel ...
    assert ((d * x).sum(-1) > 0).all()  # ... and pointing at it (in front of the camera)
    assert close(d * x.norm(dim=-1, keepdim=True), x)


def test_scale_intrinsics_matches_resized_pixels():
    K = K_test(F64)
    x = random_points((30,), seed=2, dtype=F64)
    K2 = scale_intrinsics(K, 0.5, 0.25)
    assert close(project(K2, x), project(K, x) * torch.tensor([0.5, 0.25], dtype=F64))
    # Halving an image: the new pixel (0, 0) covers old pixels [0, 2) x [0, 2), whose centre is old uv
    # (1, 1); the ray through the new pixel centre must go through it.
    Kh = scale_intrinsics(K, 0.5, 0.5)
    ray = image_rays(Kh, 2, 2)[0, 0]
    assert close(project(K, ray[None])[0], torch.tensor([1.0, 1.0], dtype=F64), atol=1e-10)


def test_points_on_camera_plane_give_finite_values_and_gradients():
    K = K_test()
    x = torch.tensor([[0.1, 0.2, 0.0], [0.1, 0.2, -1.0]], requires_grad=True)
    uv, z = project_with_depth(K, x)
    assert torch.isfinite(uv).all()
    uv.sum().backward()
    assert torch.isfinite(x.grad).all()
    # Behind the camera: the pinhole projection still holds (caller masks with z > 0).
    assert close(uv[1], torch.tensor([320.5 - 50.0, 241.25 - 104.0]), atol=1e-4)


def test_bad_shapes():
    with pytest.raises(ValueError, match="'x_cam'"):
        project(K_test(), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="'depth'"):
        unproject(K_test(), torch.zeros(5, 2), torch.zeros(4))
