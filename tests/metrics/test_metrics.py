"""hold.metrics: known answers for HOLD's metrics (units: mm, cm², degrees, fractions)."""
import hold  # noqa: F401  (import order: zlib first)
import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from hold.metrics import (
    MetricsConfig,
    cd_hand_relative,
    chamfer_distance,
    evaluate_trajectories,
    fscore,
    mpjpe,
    mpjpe_per_frame,
    object_metrics,
    pose_errors,
    sample_surface,
)

FAST = MetricsConfig(rotation_starts="identity", n_samples_hand_relative=800)


def _sphere(n: int, radius_m: float, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 3))
    return radius_m * x / np.linalg.norm(x, axis=1, keepdims=True)


def _rot(deg: float, axis) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64)
    return Rotation.from_rotvec(np.deg2rad(deg) * axis / np.linalg.norm(axis)).as_matrix()


def _pose(R: np.ndarray, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


BOX = trimesh.creation.box((0.10, 0.10, 0.10))  # 10 cm cube centred at the origin


# ---- chamfer / F-score ---------------------------------------------------------------------


def test_chamfer_concentric_spheres_one_cm_apart():
    inner, outer = _sphere(5000, 0.01, 0), _sphere(5000, 0.02, 1)
    # Every point is 1 cm from the other sphere: each directed term is (1 cm)^2.
    assert chamfer_distance(inner, outer, reduction="mean") == pytest.approx(1.0, rel=0.03)
    assert chamfer_distance(inner, outer) == pytest.approx(2.0, rel=0.03)  # HOLD sums both terms
    assert chamfer_distance(outer, inner) == pytest.approx(chamfer_distance(inner, outer))
    with pytest.raises(ValueError, match="reduction"):
        chamfer_distance(inner, outer, reduction="max")


def test_chamfer_of_box_translated_3cm_matches_the_analytic_value():
    # Continuous surfaces, cube side 10 cm shifted 3 cm along x, per face mean of d²:
    # 4 side faces 0.3 * E[U(0,3)²] = 0.9; trailing face 9; leading face E[min(3,a,b)²] = 3.42
    # with a, b ~ U(0,5): (4*0.9 + 9 + 3.42) / 6 = 2.67 cm² per direction.
    a = sample_surface(BOX.vertices, BOX.faces, 20000, seed=0)
    b = sample_surface(BOX.vertices + [0.03, 0.0, 0.0], BOX.faces, 20000, seed=1)
    assert chamfer_distance(a, b, reduction="mean") == pytest.approx(2.67, rel=0.03)
    assert chamfer_distance(a, b) == pytest.approx(5.34, rel=0.03)


def test_fscore_known_answers():
    pts = _sphere(3000, 0.02, 0)
    assert fscore(pts, pts, 0.005) == 1.0
    r20, r22, r27 = _sphere(5000, 0.020, 1), _sphere(5000, 0.022, 2), _sphere(5000, 0.027, 3)
    # Concentric spheres are at least |r1 - r2| apart everywhere, and dense samples at most a
    # little more: 2 mm gap -> nothing under 1 mm, everything under 5 mm.
    assert fscore(r20, r22, 0.001) == 0.0
    assert fscore(r20, r22, 0.005) == 1.0
    assert fscore(r20, r22, 0.010) == 1.0
    # 7 mm gap -> 0 at 5 mm, 1 at 10 mm.
    assert fscore(r20, r27, 0.005) == 0.0
    assert fscore(r20, r27, 0.010) == 1.0


def test_fscore_with_known_precision_and_recall():
    rng = np.random.default_rng(0)
    shared = rng.uniform(-0.01, 0.01, size=(300, 3))  # matched exactly
    missed = rng.uniform(-0.01, 0.01, size=(100, 3)) + [1.0, 0, 0]  # gt only, 1 m away
    spurious = rng.uniform(-0.01, 0.01, size=(200, 3)) + [0, 1.0, 0]  # pred only
    pred, gt = np.vstack([shared, spurious]), np.vstack([shared, missed])
    p, r = 300 / 500, 300 / 400
    assert fscore(pred, gt, 0.005) == pytest.approx(2 * p * r / (p + r), abs=1e-12)
    # Half the prediction on the gt sphere, half 7 mm outside: precision 1/2, recall 1 -> F = 2/3
    # at 5 mm; at 10 mm everything counts.
    gt_sphere = _sphere(3000, 0.02, 4)
    half = np.vstack([_sphere(2500, 0.02, 5), _sphere(2500, 0.027, 6)])
    assert fscore(half, gt_sphere, 0.005) == pytest.approx(2 / 3, abs=1e-12)
    assert fscore(gt_sphere, half, 0.005) == pytest.approx(2 / 3, abs=1e-12)  # symmetric
    assert fscore(half, gt_sphere, 0.010) == 1.0


# ---- surface sampling ----------------------------------------------------------------------


def test_sample_surface_is_deterministic_on_surface_and_area_weighted():
    mesh = trimesh.creation.box((0.02, 0.04, 0.08))
    a = sample_surface(mesh.vertices, mesh.faces, 6000, seed=7)
    np.testing.assert_array_equal(a, sample_surface(mesh.vertices, mesh.faces, 6000, seed=7))
    assert not np.allclose(a, sample_surface(mesh.vertices, mesh.faces, 6000, seed=8))
    half = np.array([0.01, 0.02, 0.04])
    on_face = np.isclose(np.abs(a), half, atol=1e-12)  # which face each point lies on
    assert np.all(on_face.any(axis=1)) and np.all(np.abs(a) <= half + 1e-12)
    # Face pairs normal to x, y, z have areas 4*8, 2*8, 2*4 cm² -> fractions 32/56, 16/56, 8/56.
    frac = on_face.mean(axis=0)
    np.testing.assert_allclose(frac, [32 / 56, 16 / 56, 8 / 56], atol=0.02)
    with pytest.raises(ValueError, match="`faces`"):
        sample_surface(mesh.vertices, np.array([[0, 1, 99]]), 10)


# ---- object metrics ------------------------------------------------------------------------


def test_object_metrics_translated_box_without_and_with_alignment():
    moved = (BOX.vertices + [0.03, 0.0, 0.0], BOX.faces)
    raw = object_metrics(moved, BOX, n_samples=5000, seed=0, align="none")
    assert raw["cd"] == pytest.approx(5.34, rel=0.05)  # the analytic value above
    assert raw["f10"] < 0.8
    aligned = object_metrics(moved, BOX, n_samples=5000, seed=0, config=FAST)
    assert aligned["cd"] < 1e-4
    assert aligned["f5"] == 1.0 and aligned["f10"] == 1.0
    assert aligned["align_scale"] == pytest.approx(1.0, abs=1e-6)


def test_object_metrics_removes_a_similarity_but_not_a_shape_change():
    R = _rot(15.0, [1, 1, 0])
    verts = 0.8 * BOX.vertices @ R.T + [0.1, 0.0, 0.5]
    res = object_metrics((verts, BOX.faces), (BOX.vertices, BOX.faces), n_samples=3000, config=FAST)
    assert res["cd"] < 1e-4 and res["align_scale"] == pytest.approx(1.25, abs=1e-4)
    # A genuinely different shape (flattened box) keeps a positive CD after alignment.
    flat = (BOX.vertices * [1.0, 1.0, 0.4], BOX.faces)
    assert object_metrics(flat, BOX, n_samples=3000, config=FAST)["cd"] > 0.1


# ---- hand joints ---------------------------------------------------------------------------


def test_mpjpe_is_root_relative_and_counts_joints():
    rng = np.random.default_rng(0)
    gt = rng.normal(scale=0.05, size=(4, 21, 3)) + [0.0, 0.0, 0.5]
    assert mpjpe(gt + [0.1, -0.2, 0.3], gt) == pytest.approx(0.0, abs=1e-9)
    tip = gt.copy()
    tip[:, 8] += [0.0, 0.010, 0.0]  # index tip 10 mm off
    assert mpjpe(tip, gt) == pytest.approx(10.0 / 21.0, rel=1e-9)
    wrist = gt.copy()
    wrist[:, 0] += [0.010, 0.0, 0.0]  # root off: the other 20 joints move relative to it
    assert mpjpe(wrist, gt) == pytest.approx(200.0 / 21.0, rel=1e-9)
    per = mpjpe_per_frame(tip, gt, valid=[True, False, True, True])
    assert per.shape == (4,) and np.isnan(per[1])
    one_bad = gt.copy()
    one_bad[1, 5] += [0.021, 0.0, 0.0]  # 21 mm on one joint of frame 1 -> 1 mm that frame
    assert mpjpe(one_bad, gt, valid=[True, False, True, True]) == pytest.approx(0.0, abs=1e-9)
    assert mpjpe(one_bad, gt) == pytest.approx(21.0 / 21.0 / 4.0, rel=1e-9)
    with pytest.raises(ValueError, match="`pred_kp`"):
        mpjpe(gt[:, :20], gt)


# ---- object pose ---------------------------------------------------------------------------


def test_pose_errors_known_rotation_and_translation():
    rng = np.random.default_rng(0)
    gt = np.stack([_pose(_rot(rng.uniform(0, 180), rng.normal(size=3)), rng.normal(size=3)) for _ in range(5)])
    pred = gt.copy()
    pred[:, :3, :3] = _rot(10.0, [0.2, 1.0, -0.3]) @ gt[:, :3, :3]
    pred[:, :3, 3] += [0.003, 0.004, 0.0]
    err = pose_errors(pred, gt)
    np.testing.assert_allclose(err["rot_deg"], 10.0, atol=1e-9)
    np.testing.assert_allclose(err["trans_mm"], 5.0, atol=1e-9)
    assert err["rot_deg_median"] == pytest.approx(10.0) and err["trans_mm_mean"] == pytest.approx(5.0)
    scaled = pred.copy()
    scaled[:, :3, :3] *= 1.7  # a folded-in object scale is not a rotation error
    np.testing.assert_allclose(pose_errors(scaled, gt)["rot_deg"], 10.0, atol=1e-9)


def test_relative_pose_errors_ignore_the_canonical_frame():
    rng = np.random.default_rng(1)
    gt = np.stack([_pose(_rot(rng.uniform(0, 180), rng.normal(size=3)), rng.normal(size=3)) for _ in range(5)])
    other_canonical = _pose(_rot(70.0, [1, 0, 1]), [0.1, 0.2, 0.0])
    pred = gt @ other_canonical  # same motion, different object frame
    assert pose_errors(pred, gt)["rot_deg_median"] > 60.0
    rel = pose_errors(pred, gt, relative_to_first=True)
    np.testing.assert_allclose(rel["rot_deg"], 0.0, atol=1e-6)
    np.testing.assert_allclose(rel["trans_mm"], 0.0, atol=1e-6)


# ---- hand-relative object chamfer ----------------------------------------------------------


def test_cd_hand_relative_invariances():
    rng = np.random.default_rng(0)
    T = 3
    obj = np.stack([_sphere(2000, 0.03, t) + [0.0, 0.0, 0.5] for t in range(T)])
    root = rng.normal(scale=0.05, size=(T, 3)) + [0.0, 0.0, 0.5]
    assert cd_hand_relative(obj, root, obj, root) == 0.0
    shift = rng.normal(scale=0.2, size=(T, 1, 3))  # hand and object moved together, per frame
    assert cd_hand_relative(obj + shift, root + shift[:, 0], obj, root) == pytest.approx(0.0, abs=1e-12)
    d = np.array([0.01, 0.0, 0.0])  # only the object moves by 1 cm
    cd = cd_hand_relative(obj + d, root, obj, root)
    assert 0.5 < cd <= 2.0 + 1e-9  # each directed term is at most (1 cm)²
    # Lists with a different point count per frame, and a frame excluded by `valid`.
    pred_list = [obj[0], obj[1][:1500], obj[2] + 0.05]
    assert cd_hand_relative(pred_list, root, obj, root, valid=[True, True, False]) < 0.01
    with pytest.raises(ValueError, match="frame counts"):
        cd_hand_relative(obj, root[:2], obj, root)


# ---- whole sequences -----------------------------------------------------------------------


def _sequence(T: int = 3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    kp = rng.normal(scale=0.04, size=(T, 21, 3)) + [0.0, 0.0, 0.5]
    verts = rng.normal(scale=0.04, size=(T, 60, 3)) + [0.0, 0.0, 0.5]
    faces = np.array([[0, 1, 2]])
    obj_verts = np.asarray(trimesh.creation.box((0.04, 0.06, 0.10)).vertices)
    obj_faces = np.asarray(trimesh.creation.box((0.04, 0.06, 0.10)).faces)
    poses = np.stack([_pose(_rot(20.0 * t, [0, 1, 1]), [0.02 * t, 0.0, 0.55]) for t in range(T)])
    return {
        "hands": {"right": {"keypoints": kp, "vertices": verts, "faces": faces}},
        "object": {"vertices": obj_verts, "faces": obj_faces, "T_cam_from_obj": poses},
    }


def _copy(d):
    if isinstance(d, dict):
        return {k: _copy(v) for k, v in d.items()}
    return np.array(d, copy=True) if isinstance(d, np.ndarray) else d


def test_evaluate_trajectories_gt_against_itself_is_perfect():
    gt = _sequence()
    res = evaluate_trajectories(_copy(gt), gt, n_samples=2000, config=FAST)
    assert res["num_frames"] == 3 and res["num_valid_frames"] == 3
    for key in ("mpjpe_ra_r", "hand_v2v_mm_r", "hand_v2v_mm", "cd_h", "mrrpe_ho_mm",
                "obj_rot_err_deg_median", "obj_trans_err_mm_median"):
        assert res[key] == pytest.approx(0.0, abs=1e-6), key
    assert res["cd_obj"] < 1e-6
    for key in ("f5_obj", "f10_obj", "f5_h", "f10_h"):
        assert res[key] == 1.0, key
    assert "mpjpe_ra_l" not in res
    assert all(isinstance(v, (int, float)) for v in res.values())


def test_evaluate_trajectories_object_offset_shows_in_relative_metrics_only():
    gt = _sequence()
    pred = _copy(gt)
    pred["object"]["T_cam_from_obj"][:, :3, 3] += [0.02, 0.0, 0.0]  # object 2 cm off in every frame
    pred["hands"]["right"]["keypoints"] += [0.0, 0.05, 0.0]  # hand globally off: mpjpe ignores it
    pred["hands"]["right"]["vertices"] += [0.0, 0.05, 0.0]
    pred["hands"]["right"]["vertices"][:, 7] += [0.0, 0.0, 0.012]  # one of 60 vertices 12 mm off
    res = evaluate_trajectories(pred, gt, n_samples=2000, config=FAST)
    assert res["mpjpe_ra_r"] == pytest.approx(0.0, abs=1e-9)
    assert res["hand_v2v_mm_r"] == pytest.approx(12.0 / 60.0, abs=1e-9)
    assert res["hand_v2v_mm"] == pytest.approx(12.0 / 60.0, abs=1e-9)
    assert res["cd_obj"] < 1e-6  # shape is fine once aligned
    assert res["obj_rot_err_deg_median"] == pytest.approx(0.0, abs=1e-6)
    assert res["obj_trans_err_mm_median"] == pytest.approx(20.0, abs=1e-6)
    assert res["mrrpe_ho_mm"] == pytest.approx(np.hypot(20.0, 50.0), abs=1e-6)
    assert res["cd_h"] > 1.0 and res["f5_h"] < 0.9


def test_evaluate_trajectories_ignores_the_predicted_canonical_frame_and_scale():
    gt = _sequence()
    pred = _copy(gt)
    Q, c, sigma = _rot(90.0, [0, 0, 1]), np.array([0.01, -0.02, 0.03]), 0.07
    # pred canonical space: rotated, shifted and normalized; scale restores metric size
    pred["object"]["vertices"] = (gt["object"]["vertices"] @ Q.T + c) / sigma
    pred["object"]["scale"] = sigma
    M = _pose(Q.T, -Q.T @ c)  # pred canonical (metric) -> gt canonical
    pred["object"]["T_cam_from_obj"] = gt["object"]["T_cam_from_obj"] @ M
    pred["valid"] = None
    gt["valid"] = np.array([True, True, False])
    res = evaluate_trajectories(pred, gt, n_samples=2000, config=FAST)
    assert res["num_valid_frames"] == 2
    for key in ("cd_h", "obj_rot_err_deg_median", "obj_trans_err_mm_median", "mrrpe_ho_mm"):
        assert res[key] == pytest.approx(0.0, abs=1e-6), key
    assert res["cd_obj"] < 1e-6


def test_evaluate_trajectories_reports_missing_fields_clearly():
    gt = _sequence()
    pred = _copy(gt)
    del pred["hands"]["right"]["keypoints"]
    with pytest.raises(ValueError, match=r"pred\['hands'\]\['right'\].*keypoints"):
        evaluate_trajectories(pred, gt, n_samples=500, config=FAST)
    pred = _copy(gt)
    pred["object"] = None  # no object predicted: object keys are left out, hands still scored
    res = evaluate_trajectories(pred, gt, n_samples=500, config=FAST)
    assert "cd_obj" not in res and res["mpjpe_ra_r"] == 0.0


def test_hand_chamfer_is_zero_for_itself_and_grows_with_an_offset():
    import trimesh

    from hold.metrics import hand_chamfer

    m = trimesh.creation.icosphere(subdivisions=2, radius=0.04)
    v = np.stack([m.vertices + [0, 0, 0.5]] * 3)
    valid = np.ones(3, bool)
    assert hand_chamfer(v, m.faces, v, m.faces, valid) < 1e-12
    shifted = v + [0.01, 0.0, 0.0]  # 1 cm: summed CD of two surfaces 1 cm apart is below 2 x 1 cm²
    cd = hand_chamfer(shifted, m.faces, v, m.faces, valid)
    assert 0.3 < cd < 2.0
