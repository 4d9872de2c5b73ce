import math

import numpy as np
import pytest
import roma
import torch
from scipy.spatial.transform import Rotation

import hold  # noqa: F401  (import-order side effects)
from hold.geometry import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    interpolate_linear,
    interpolate_rotations,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    quaternion_multiply,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rotation_6d_to_matrix,
    rotation_angle_between,
    slerp,
    slerp_axis_angle,
)

DTYPES = [torch.float32, torch.float64]
# Angles that exercise every branch: exactly 0, tiny, both sides of the Taylor switches
# (0.01 for float64, 0.1 for float32), generic, and up to exactly pi.
ANGLES = [0.0, 1e-9, 1e-6, 1e-4, 0.0099, 0.0101, 0.099, 0.101, 0.5, 1.0, 2.0, 3.0,
          math.pi - 1e-3, math.pi - 1e-5, math.pi]


def close(a, b, atol=1e-12):
    """Absolute-tolerance comparison (no relative slack, unlike torch.allclose's default)."""
    return torch.allclose(a, b, rtol=0.0, atol=atol)


def assert_close_np(a, b, atol):
    np.testing.assert_allclose(a, b, rtol=0.0, atol=atol)



def random_axis_angles(shape, dtype, seed=0):
    """Axis-angles with shape (*shape, len(ANGLES), 3): random unit axes times every test angle."""
    g = torch.Generator().manual_seed(seed)
    axes = torch.randn(*shape, len(ANGLES), 3, generator=g, dtype=torch.float64)
    axes = axes / axes.norm(dim=-1, keepdim=True)
    return (axes * torch.tensor(ANGLES, dtype=torch.float64)[:, None]).to(dtype)


def tol(dtype):
    return 1e-5 if dtype == torch.float32 else 1e-10


@pytest.mark.parametrize("dtype", DTYPES)
def test_axis_angle_to_matrix_matches_scipy_and_is_a_rotation(dtype):
    aa = random_axis_angles((2, 3), dtype)
    R = axis_angle_to_matrix(aa)
    assert R.shape == (2, 3, len(ANGLES), 3, 3) and R.dtype == dtype
    ref = Rotation.from_rotvec(aa.reshape(-1, 3).double().numpy()).as_matrix()
    assert_close_np(R.reshape(-1, 3, 3).double().numpy(), ref, atol=tol(dtype))
    eye = torch.eye(3, dtype=dtype).expand_as(R)
    assert (R.transpose(-1, -2) @ R - eye).abs().max() < tol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trips(dtype):
    aa = random_axis_angles((4,), dtype, seed=1)
    R = axis_angle_to_matrix(aa)
    q = axis_angle_to_quaternion(aa)
    t = tol(dtype)
    # Quaternion convention: scalar-last, identical to scipy's (x, y, z, w), w >= 0 up to pi.
    ref_q = Rotation.from_rotvec(aa.reshape(-1, 3).double().numpy()).as_quat()
    assert_close_np(q.reshape(-1, 4).double().numpy(), ref_q, atol=t)
    # aa -> R -> aa and aa -> q -> aa: exact away from pi, where +-axis is ambiguous; compare
    # rotations there.
    aa_from_R = matrix_to_axis_angle(R)
    aa_from_q = quaternion_to_axis_angle(q)
    away = torch.tensor(ANGLES) < math.pi - 1e-4
    assert (aa_from_R[:, away] - aa[:, away]).abs().max() < t
    assert (aa_from_q[:, away] - aa[:, away]).abs().max() < t
    assert (axis_angle_to_matrix(aa_from_R) - R).abs().max() < t
    assert (axis_angle_to_matrix(aa_from_q) - R).abs().max() < t
    # Angle recovered exactly, including at pi (the weak spot of trace/skew formulas).
    assert (aa_from_R.norm(dim=-1) - aa.norm(dim=-1)).abs().max() < t
    # q <-> R
    assert (quaternion_to_matrix(q) - R).abs().max() < t
    q_back = matrix_to_quaternion(R)
    assert torch.minimum((q_back - q).abs().amax(-1), (q_back + q).abs().amax(-1)).max() < t
    assert (q_back[..., 3] >= 0).all()
    # 6D: first two columns; round trip exact
    d6 = matrix_to_rotation_6d(R)
    assert torch.equal(d6[..., :3], R[..., :, 0]) and torch.equal(d6[..., 3:], R[..., :, 1])
    assert (rotation_6d_to_matrix(d6) - R).abs().max() < t


def test_quaternion_to_matrix_normalizes_and_multiply_composes():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(10, 4, generator=g, dtype=torch.float64)
    R = quaternion_to_matrix(q)
    assert close(R, quaternion_to_matrix(3.7 * q), atol=1e-12)
    assert close(torch.linalg.det(R), torch.ones(10, dtype=torch.float64))
    q1 = torch.randn(10, 4, generator=g, dtype=torch.float64)
    # Hamilton product = rotation composition (q * q1 applies q1 first), checked against roma.
    assert close(quaternion_to_matrix(quaternion_multiply(q, q1)), R @ quaternion_to_matrix(q1), atol=1e-12)
    assert close(quaternion_multiply(q, q1), roma.quat_product(q, q1), atol=1e-12)


def test_rotation_6d_of_arbitrary_input_is_gram_schmidt_of_columns():
    g = torch.Generator().manual_seed(3)
    d6 = torch.randn(5, 7, 6, generator=g, dtype=torch.float64)
    R = rotation_6d_to_matrix(d6)
    assert close(R.transpose(-1, -2) @ R, torch.eye(3, dtype=torch.float64).expand_as(R), atol=1e-12)
    assert close(torch.linalg.det(R), torch.ones(5, 7, dtype=torch.float64))
    a1 = d6[..., :3] / d6[..., :3].norm(dim=-1, keepdim=True)
    assert close(R[..., :, 0], a1, atol=1e-12)
    # The second column lies in the plane of the two input vectors.
    normal = torch.linalg.cross(d6[..., :3], d6[..., 3:])
    assert (R[..., :, 1] * normal).sum(-1).abs().max() < 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_finite_at_zero_rotation(dtype):
    aa = torch.zeros(2, 3, dtype=dtype, requires_grad=True)
    for fn in (axis_angle_to_matrix, axis_angle_to_quaternion,
               lambda a: quaternion_to_axis_angle(axis_angle_to_quaternion(a)),
               lambda a: matrix_to_axis_angle(axis_angle_to_matrix(a)),
               lambda a: slerp_axis_angle(a, a, 0.3),
               lambda a: rotation_angle_between(axis_angle_to_matrix(a), torch.eye(3, dtype=dtype))):
        out = fn(aa)
        weights = torch.arange(1, out.numel() + 1, dtype=dtype).reshape(out.shape)
        (grad,) = torch.autograd.grad((out * weights).sum(), aa)
        assert torch.isfinite(grad).all()
    # d R / d aa_i at 0 is the generator skew(e_i) (a real value, not just "finite").
    jac = torch.autograd.functional.jacobian(axis_angle_to_matrix, torch.zeros(3, dtype=dtype))
    gens = torch.tensor([[[0, 0, 0], [0, 0, -1], [0, 1, 0]],
                         [[0, 0, 1], [0, 0, 0], [-1, 0, 0]],
                         [[0, -1, 0], [1, 0, 0], [0, 0, 0]]], dtype=dtype)
    assert close(jac.permute(2, 0, 1), gens, atol=1e-6)
    # d aa / d aa through quaternions is the identity at 0.
    jac_q = torch.autograd.functional.jacobian(lambda a: quaternion_to_axis_angle(axis_angle_to_quaternion(a)),
                                               torch.zeros(3, dtype=dtype))
    assert close(jac_q, torch.eye(3, dtype=dtype), atol=1e-6)


def test_gradcheck_across_branch_switches():
    g = torch.Generator().manual_seed(4)
    axes = torch.randn(len(ANGLES) - 1, 3, generator=g, dtype=torch.float64)
    axes = axes / axes.norm(dim=-1, keepdim=True)
    # Skip exactly pi (the axis sign flips there: a genuine discontinuity of the log).
    aa = (axes * torch.tensor(ANGLES[:-1], dtype=torch.float64)[:, None]).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (aa,))
    assert torch.autograd.gradcheck(axis_angle_to_quaternion, (aa,))
    small = aa[:12].detach().clone().requires_grad_(True)  # angles <= 3.0: away from the flip at pi
    assert torch.autograd.gradcheck(lambda a: matrix_to_axis_angle(axis_angle_to_matrix(a)), (small,))


def test_slerp_endpoints_midpoint_and_shortest_path():
    g = torch.Generator().manual_seed(5)
    q0 = torch.nn.functional.normalize(torch.randn(6, 4, generator=g, dtype=torch.float64), dim=-1)
    q1 = torch.nn.functional.normalize(torch.randn(6, 4, generator=g, dtype=torch.float64), dim=-1)
    same = lambda a, b: torch.minimum((a - b).abs().amax(-1), (a + b).abs().amax(-1)).max() < 1e-12
    assert same(slerp(q0, q1, 0.0), q0) and same(slerp(q0, q1, 1.0), q1)
    R0, R1 = quaternion_to_matrix(q0), quaternion_to_matrix(q1)
    total = rotation_angle_between(R0, R1)
    mid = quaternion_to_matrix(slerp(q0, q1, 0.5))
    assert close(rotation_angle_between(R0, mid), total / 2, atol=1e-12)
    assert close(rotation_angle_between(mid, R1), total / 2, atol=1e-12)
    # Shortest path: q1 and -q1 are the same rotation and give the same interpolant.
    assert same(slerp(q0, q1, 0.3), slerp(q0, -q1, 0.3))
    # Against roma's slerp (independent implementation), with t broadcasting (5,1) x (6,) -> (5,6).
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    ours = slerp(q0, q1, t[:, None])
    assert ours.shape == (5, 6, 4)
    assert same(ours, roma.unitquat_slerp(q0, q1, t))
    # Axis-angle convenience: rotating about one axis interpolates the angle linearly.
    z = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    assert close(slerp_axis_angle(0.2 * z, 1.4 * z, 0.25), 0.5 * z, atol=1e-12)


def test_slerp_gradient_finite_for_identical_inputs():
    q = torch.nn.functional.normalize(torch.tensor([[0.1, -0.2, 0.3, 0.9]], dtype=torch.float64), dim=-1)
    q0 = q.clone().requires_grad_(True)
    q1 = q.clone().requires_grad_(True)
    out = slerp(q0, q1, torch.tensor(0.4, dtype=torch.float64))
    out.sum().backward()
    assert torch.isfinite(q0.grad).all() and torch.isfinite(q1.grad).all()


def test_interpolate_rotations_fills_gaps_like_slerp_and_holds_edges():
    g = torch.Generator().manual_seed(6)
    T, K = 12, 4
    aa = 0.8 * torch.randn(T, K, 3, generator=g, dtype=torch.float64)
    valid = torch.zeros(T, dtype=torch.bool)
    valid[[2, 3, 7, 9]] = True
    corrupted = aa.clone()
    corrupted[~valid] = float("nan")  # detector failures: values must be ignored
    out = interpolate_rotations(corrupted, valid)
    assert torch.isfinite(out).all()
    assert torch.equal(out[valid], aa[valid])  # valid frames untouched (bit-exact)
    R = axis_angle_to_matrix(out)
    # Edges hold the first / last valid frame.
    for i in (0, 1):
        assert (R[i] - axis_angle_to_matrix(aa[2])).abs().max() < 1e-12
    for i in (10, 11):
        assert (R[i] - axis_angle_to_matrix(aa[9])).abs().max() < 1e-12
    # Gap 3 -> 7 and 7 -> 9: roma slerp between the bracketing frames.
    q = roma.rotvec_to_unitquat(aa)
    for i, (a, b) in {4: (3, 7), 5: (3, 7), 6: (3, 7), 8: (7, 9)}.items():
        frac = torch.tensor([(i - a) / (b - a)], dtype=torch.float64)
        ref = roma.unitquat_to_rotmat(roma.unitquat_slerp(q[a], q[b], frac)[0])
        assert (R[i] - ref).abs().max() < 1e-12


def test_interpolate_linear_and_errors():
    x = torch.arange(8, dtype=torch.float32)[:, None].repeat(1, 3) * torch.tensor([1.0, 2.0, -1.0])
    valid = torch.tensor([False, True, False, False, True, False, True, False])
    expected = x.clone()
    expected[0] = x[1]
    expected[7] = x[6]
    out = interpolate_linear(torch.where(valid[:, None], x, torch.full_like(x, 1e6)), valid)
    assert close(out, expected)  # x is linear in t, so the interior gaps are exact
    with pytest.raises(ValueError, match="no frame is valid"):
        interpolate_linear(x, torch.zeros(8, dtype=torch.bool))
    with pytest.raises(ValueError, match="no frame is valid"):
        interpolate_rotations(torch.zeros(8, 2, 3), torch.zeros(8, dtype=torch.bool))
    with pytest.raises(ValueError, match="'valid'"):
        interpolate_rotations(torch.zeros(8, 2, 3), torch.ones(7, dtype=torch.bool))


@pytest.mark.parametrize("dtype", DTYPES)
def test_rotation_angle_between_known_values(dtype):
    angles = torch.tensor([0.0, 1e-7, 1e-3, 0.7, 2.5, math.pi - 1e-6, math.pi], dtype=torch.float64)
    axis = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64), dim=0)
    R_base = axis_angle_to_matrix(torch.tensor([0.4, 1.0, -0.2], dtype=torch.float64))
    R0 = R_base.expand(len(angles), 3, 3)
    R1 = R_base @ axis_angle_to_matrix(angles[:, None] * axis)
    got = rotation_angle_between(R0.to(dtype), R1.to(dtype))
    assert got.dtype == dtype
    assert close(got.double(), angles, atol=1e-5 if dtype == torch.float32 else 1e-12)
    R = R0[:1].to(dtype).clone().requires_grad_(True)
    rotation_angle_between(R, R.detach()).sum().backward()
    assert torch.isfinite(R.grad).all()


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match=r"axis_angle_to_matrix: argument 'aa' must have shape \(\.\.\., 3\)"):
        axis_angle_to_matrix(torch.zeros(5, 4))
    with pytest.raises(ValueError, match="'R'"):
        matrix_to_axis_angle(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="'d6'"):
        rotation_6d_to_matrix(torch.zeros(9))


def test_taylor_series_coefficients(monkeypatch):
    """Force the small-angle series up to 0.2 rad (normally 0.01/0.1) and compare with scipy: a
    wrong coefficient up to the 6th-order term would show, the truncation error stays < 1e-9."""
    import hold.geometry.rotations as rot

    monkeypatch.setattr(rot, "_small_angle_threshold", lambda dtype: 0.2)
    aa = random_axis_angles((3,), torch.float64, seed=7)
    aa = aa / aa.norm(dim=-1, keepdim=True).clamp_min(1e-30) * torch.linspace(0.0, 0.199, aa.shape[-2],
                                                                             dtype=torch.float64)[:, None]
    ref = Rotation.from_rotvec(aa.reshape(-1, 3).numpy())
    assert_close_np(axis_angle_to_matrix(aa).reshape(-1, 3, 3).numpy(), ref.as_matrix(), atol=1e-11)
    assert_close_np(axis_angle_to_quaternion(aa).reshape(-1, 4).numpy(), ref.as_quat(), atol=1e-11)
    # quaternion -> axis-angle: |v| = sin(t/2) < 0.2 -> t < 0.4 takes the atan series (error < 1e-8).
    aa2 = 2 * aa
    q = torch.from_numpy(Rotation.from_rotvec(aa2.reshape(-1, 3).numpy()).as_quat())
    assert_close_np(quaternion_to_axis_angle(q).numpy(), aa2.reshape(-1, 3).numpy(), atol=1e-8)
