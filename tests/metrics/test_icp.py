"""hold.icp: Umeyama and similarity ICP recover known transforms."""
import hold  # noqa: F401  (import order: zlib first)
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hold.icp import (
    apply_transform,
    decompose_similarity,
    icp_with_scale,
    icp_with_scale_multistart,
    octahedral_rotations,
    similarity_matrix,
    umeyama_np,
)
from hold.metrics import sample_surface


def _rot(deg: float, axis) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64)
    return Rotation.from_rotvec(np.deg2rad(deg) * axis / np.linalg.norm(axis)).as_matrix()


def _box_points(n: int, seed: int = 0) -> np.ndarray:
    """Surface samples of a 4 x 6 x 10 cm box: no rotational symmetry within +-90 degrees."""
    ext = np.array([0.04, 0.06, 0.10])
    corners = np.array([[x, y, z] for x in (-.5, .5) for y in (-.5, .5) for z in (-.5, .5)]) * ext
    # 12 triangles of the box (corner index = 4*ix + 2*iy + iz)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return sample_surface(corners, faces, n, seed)


def test_umeyama_recovers_exact_similarity_and_ignores_zero_weight_outlier():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 3))
    s, R, t = 0.7, _rot(63.0, [0.3, -1.0, 0.2]), np.array([0.1, -0.4, 2.0])
    dst = s * src @ R.T + t
    s_hat, R_hat, t_hat = umeyama_np(src, dst)
    assert s_hat == pytest.approx(s, abs=1e-12)
    np.testing.assert_allclose(R_hat, R, atol=1e-12)
    np.testing.assert_allclose(t_hat, t, atol=1e-12)

    dst_bad = dst.copy()
    dst_bad[0] += 5.0  # a gross outlier, weighted out
    w = np.ones(50)
    w[0] = 0.0
    s_w, R_w, t_w = umeyama_np(src, dst_bad, weights=w)
    assert s_w == pytest.approx(s, abs=1e-12)
    np.testing.assert_allclose(R_w, R, atol=1e-12)
    s_u, _, _ = umeyama_np(src, dst_bad)  # unweighted: the outlier does bias it
    assert abs(s_u - s) > 1e-3

    s1, R1, t1 = umeyama_np(src, dst, with_scale=False)
    assert s1 == 1.0
    np.testing.assert_allclose(R1, R, atol=1e-9)  # rotation is scale-independent


def test_umeyama_returns_a_proper_rotation_for_mirrored_points():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(40, 3))
    dst = src * np.array([1.0, 1.0, -1.0])  # a reflection: no rotation fits exactly
    s, R, t = umeyama_np(src, dst)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    # Given R, the least-squares scale is sum(xd . R xs) / sum|xs|^2 (centred points).
    xs, xd = src - src.mean(0), dst - dst.mean(0)
    assert s == pytest.approx(np.sum(xd * (xs @ R.T)) / np.sum(xs * xs), rel=1e-12)
    assert s < 1.0  # the unfittable mirrored axis shrinks the scale


def test_icp_with_scale_recovers_known_similarity_from_default_init():
    src = _box_points(5000)
    s, R, t = 1.3, _rot(20.0, [1.0, 2.0, 3.0]), np.array([0.05, -0.02, 0.03])
    T_true = similarity_matrix(s, R, t)
    dst = apply_transform(T_true, src)
    T, info = icp_with_scale(src, dst)
    np.testing.assert_allclose(T, T_true, atol=1e-4)
    s_hat, R_hat, t_hat = decompose_similarity(T)
    assert s_hat == pytest.approx(1.3, abs=1e-4)
    assert info["converged"] and info["rmse"] < 1e-6 and info["scale"] == pytest.approx(1.3, abs=1e-4)
    assert 1 <= info["iters"] <= 50


def test_icp_rigid_from_explicit_init_keeps_unit_scale():
    src = _box_points(3000, seed=3)
    T_true = similarity_matrix(1.0, _rot(8.0, [0.0, 1.0, 1.0]), np.array([0.01, 0.0, -0.02]))
    dst = apply_transform(T_true, src)
    init = similarity_matrix(1.0, np.eye(3), np.array([0.01, 0.0, -0.02]))
    T, info = icp_with_scale(src, dst, init=init, with_scale=False)
    np.testing.assert_allclose(T, T_true, atol=1e-6)
    assert info["scale"] == pytest.approx(1.0, abs=1e-12)
    # A single iteration budget does not reach it: the stopping rule is what gets us there.
    _, info1 = icp_with_scale(src, dst, init=init, with_scale=False, max_iters=1)
    assert info1["iters"] == 1 and info1["rmse"] > 1e-4


def test_multistart_escapes_where_single_start_icp_is_stuck():
    src = _box_points(1000, seed=5)
    T_true = similarity_matrix(1.3, _rot(130.0, [1.0, -2.0, 0.5]), np.array([0.05, -0.02, 0.03]))
    dst = apply_transform(T_true, src)
    _, info_single = icp_with_scale(src, dst)
    assert info_single["rmse"] > 1e-3  # a 130 degree error is outside plain ICP's basin
    T, info = icp_with_scale_multistart(src, dst, rotation_starts="octahedral")
    np.testing.assert_allclose(T, T_true, atol=1e-6)
    assert info["start"] != 0


def test_octahedral_rotations_form_the_cube_group():
    Rs = octahedral_rotations()
    assert Rs.shape == (24, 3, 3)
    np.testing.assert_array_equal(Rs[0], np.eye(3))
    np.testing.assert_allclose(np.linalg.det(Rs), 1.0)
    keys = {tuple(np.rint(R).astype(int).ravel()) for R in Rs}
    assert len(keys) == 24
    for A in Rs[::5]:  # closed under composition
        for B in Rs[::7]:
            assert tuple(np.rint(A @ B).astype(int).ravel()) in keys


def test_decompose_similarity_round_trip_and_errors():
    R = _rot(33.0, [1, 1, 0])
    s, R2, t = decompose_similarity(similarity_matrix(2.5, R, np.array([1.0, 2.0, 3.0])))
    assert s == pytest.approx(2.5)
    np.testing.assert_allclose(R2, R, atol=1e-12)
    np.testing.assert_allclose(t, [1, 2, 3])
    with pytest.raises(ValueError, match="determinant"):
        decompose_similarity(np.diag([1.0, 1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="`src`"):
        icp_with_scale(np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="`init`"):
        icp_with_scale(_box_points(10), _box_points(10), init=np.eye(3))
    with pytest.raises(ValueError, match="rotation_starts"):
        icp_with_scale_multistart(_box_points(10), _box_points(10), rotation_starts="all")
