import math

import pytest
import torch

import hold  # noqa: F401  (import-order side effects)
from hold.geometry import (
    axis_angle_to_matrix,
    compose,
    invert_transform,
    make_transform,
    se3_exp,
    se3_log,
    transform_directions,
    transform_points,
    umeyama,
)

F64 = torch.float64


def close(a, b, atol=1e-12):
    """Absolute-tolerance comparison (no relative slack, unlike torch.allclose's default)."""
    return torch.allclose(a, b, rtol=0.0, atol=atol)




def random_transforms(shape, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    aa = torch.randn(*shape, 3, generator=g, dtype=F64)
    t = torch.randn(*shape, 3, generator=g, dtype=F64)
    return make_transform(axis_angle_to_matrix(aa), t).to(dtype)


def twist_matrix(xi):
    """4x4 Lie-algebra matrix [[skew(phi), rho], [0, 0]] for torch.linalg.matrix_exp."""
    rho, phi = xi[..., :3], xi[..., 3:]
    M = torch.zeros(xi.shape[:-1] + (4, 4), dtype=xi.dtype)
    M[..., 0, 1], M[..., 0, 2], M[..., 1, 2] = -phi[..., 2], phi[..., 1], -phi[..., 0]
    M[..., 1, 0], M[..., 2, 0], M[..., 2, 1] = phi[..., 2], -phi[..., 1], phi[..., 0]
    M[..., :3, 3] = rho
    return M


def test_make_invert_compose():
    T_ab = random_transforms((3, 5), seed=1)
    T_bc = random_transforms((3, 5), seed=2)
    eye = torch.eye(4, dtype=F64).expand(3, 5, 4, 4)
    assert close(compose(invert_transform(T_ab), T_ab), eye, atol=1e-12)
    assert close(compose(T_ab, invert_transform(T_ab)), eye, atol=1e-12)
    assert close(invert_transform(T_ab), torch.linalg.inv(T_ab), atol=1e-12)
    T_ac = compose(T_ab, T_bc)
    assert close(compose(invert_transform(T_ac), compose(T_ab, T_bc)), eye, atol=1e-12)
    # make_transform broadcasts a shared rotation against batched translations.
    T = make_transform(torch.eye(3, dtype=F64), torch.randn(4, 3, dtype=F64))
    assert T.shape == (4, 4, 4) and torch.equal(T[:, 3], torch.tensor([0, 0, 0, 1.0], dtype=F64).expand(4, 4))


def test_transform_points_and_directions():
    T = random_transforms((2,), seed=3)
    x = torch.randn(2, 7, 3, dtype=F64)
    x_h = torch.cat([x, torch.ones(2, 7, 1, dtype=F64)], -1)
    assert close(transform_points(T, x), (x_h @ T.transpose(-1, -2))[..., :3], atol=1e-12)
    d = transform_directions(T, x)
    assert close(d, x @ T[:, :3, :3].transpose(-1, -2), atol=1e-12)
    # Directions ignore translation: the difference of two transformed points.
    assert close(transform_points(T, x) - transform_points(T, torch.zeros_like(x)), d, atol=1e-12)
    # One transform applied to a batch of point sets (T (4,4), x (2,7,3)).
    assert close(transform_points(T[0], x)[1], transform_points(T[0], x[1]), atol=1e-12)


@pytest.mark.parametrize("angle", [0.0, 1e-8, 1e-3, 0.05, 0.5, 2.0, math.pi - 1e-3])
def test_se3_exp_matches_matrix_exponential_and_log_inverts(angle):
    g = torch.Generator().manual_seed(4)
    axis = torch.nn.functional.normalize(torch.randn(6, 3, generator=g, dtype=F64), dim=-1)
    xi = torch.cat([torch.randn(6, 3, generator=g, dtype=F64), angle * axis], -1).reshape(2, 3, 6)
    T = se3_exp(xi)
    assert T.shape == (2, 3, 4, 4)
    assert close(T, torch.linalg.matrix_exp(twist_matrix(xi)), atol=1e-10)
    assert close(se3_log(T), xi, atol=1e-9)
    assert close(se3_exp(se3_log(T)), T, atol=1e-10)
    # float32 too
    assert close(se3_log(se3_exp(xi.float())).double(), xi, atol=1e-4 if angle > 3 else 2e-5)


def test_se3_known_values_and_gradient_at_zero():
    rho = torch.tensor([0.1, -0.2, 0.3], dtype=F64)
    T = se3_exp(torch.cat([rho, torch.zeros(3, dtype=F64)]))
    assert close(T, make_transform(torch.eye(3, dtype=F64), rho))
    # Rotation about z by pi/2 with rho along x (a screw motion).
    xi = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, math.pi / 2], dtype=F64)
    T = se3_exp(xi)
    # V = I + (1-cos t)/t^2 K + (t-sin t)/t^3 K^2 with t = pi/2: V e_x = (sin t/t, (1-cos t)/t, 0).
    t = math.pi / 2
    assert close(T[:3, 3], torch.tensor([math.sin(t) / t, (1 - math.cos(t)) / t, 0.0], dtype=F64))
    # Gradient at the identity: finite and equal to the Lie-algebra generators.
    for dtype in (torch.float32, F64):
        jac = torch.autograd.functional.jacobian(se3_exp, torch.zeros(6, dtype=dtype))
        assert torch.isfinite(jac).all()
        ref = torch.stack([twist_matrix(e) for e in torch.eye(6, dtype=dtype)], -1)
        assert close(jac, ref, atol=1e-6)
        T0 = torch.eye(4, dtype=dtype).requires_grad_(True)
        se3_log(T0).sum().backward()
        assert torch.isfinite(T0.grad).all()


def test_se3_series_coefficients(monkeypatch):
    import hold.geometry.rotations as rot

    monkeypatch.setattr(rot, "_small_angle_threshold", lambda dtype: 0.2)
    g = torch.Generator().manual_seed(5)
    axis = torch.nn.functional.normalize(torch.randn(20, 3, generator=g, dtype=F64), dim=-1)
    phi = axis * torch.linspace(0, 0.199, 20, dtype=F64)[:, None]
    xi = torch.cat([torch.randn(20, 3, generator=g, dtype=F64), phi], -1)
    T = se3_exp(xi)
    assert close(T, torch.linalg.matrix_exp(twist_matrix(xi)), atol=1e-11)
    assert close(se3_log(T), xi, atol=1e-11)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_umeyama_recovers_similarity(dtype):
    g = torch.Generator().manual_seed(6)
    src = torch.randn(3, 50, 3, generator=g, dtype=F64)
    R = axis_angle_to_matrix(torch.randn(3, 3, generator=g, dtype=F64))
    s = torch.tensor([0.5, 1.0, 3.2], dtype=F64)
    t = torch.randn(3, 3, generator=g, dtype=F64)
    dst = s[:, None, None] * src @ R.transpose(-1, -2) + t[:, None]
    s_hat, R_hat, t_hat = umeyama(src.to(dtype), dst.to(dtype))
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert s_hat.shape == (3,) and R_hat.shape == (3, 3, 3) and t_hat.shape == (3, 3)
    assert close(s_hat.double(), s, atol=tol)
    assert close(R_hat.double(), R, atol=tol)
    assert close(t_hat.double(), t, atol=tol * 10)
    # Rigid fit of rigid data: s == 1, same R, t.
    dst_rigid = src @ R.transpose(-1, -2) + t[:, None]
    s1, R1, t1 = umeyama(src, dst_rigid, with_scale=False)
    assert torch.equal(s1, torch.ones(3, dtype=F64))
    assert close(R1, R, atol=1e-10) and close(t1, t, atol=1e-10)


def test_umeyama_weights_and_reflection():
    g = torch.Generator().manual_seed(7)
    src = torch.randn(40, 3, generator=g, dtype=F64)
    R = axis_angle_to_matrix(torch.tensor([0.3, -1.0, 2.0], dtype=F64))
    dst = 2.0 * src @ R.T + torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    w = torch.ones(40, dtype=F64)
    dst_bad = dst.clone()
    dst_bad[:10] += 5.0 * torch.randn(10, 3, generator=g, dtype=F64)  # outliers...
    w[:10] = 0.0  # ...with zero weight are ignored exactly
    s, R_hat, t = umeyama(src, dst_bad, weights=w)
    assert abs(s.item() - 2.0) < 1e-10 and close(R_hat, R, atol=1e-10)
    s_u, _, _ = umeyama(src, dst_bad)
    assert abs(s_u.item() - 2.0) > 1e-3  # (and they matter without weights)
    # A mirrored target: the best proper rotation is returned, never a reflection.
    _, R_m, _ = umeyama(src, src * torch.tensor([-1.0, 1.0, 1.0], dtype=F64))
    assert close(torch.linalg.det(R_m), torch.tensor(1.0, dtype=F64))
    with pytest.raises(ValueError, match="N >= 3"):
        umeyama(src[:2], dst[:2])


def test_bad_shapes():
    with pytest.raises(ValueError, match="se3_exp: argument 'xi'"):
        se3_exp(torch.zeros(3))
    with pytest.raises(ValueError, match="'T'"):
        invert_transform(torch.zeros(3, 3))
