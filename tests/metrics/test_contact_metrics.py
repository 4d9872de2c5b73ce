"""Contact and penetration statistics: exact distances, known answers, frame invariance."""
import numpy as np
import pytest
import trimesh

from hold.contact_metrics import CONTACT_KEYS, ContactConfig, MeshDistance, contact_metrics, contact_per_frame
from hold.geometry.triangles import REGION_EDGE, REGION_FACE, REGION_VERTEX, closest_point_on_triangles_np
from hold.metrics import evaluate_trajectories

BOX = trimesh.creation.box(extents=(0.1, 0.1, 0.1))  # half-size 5 cm, centred at the origin
# UV sphere: poles on ±z, so a vertex sits exactly at the centre -/+ radius along z.
BALL = trimesh.creation.uv_sphere(radius=0.02, count=[16, 16])


def _brute(points, mesh):
    tri = np.asarray(mesh.vertices)[np.asarray(mesh.faces)]
    out = []
    for p in points:
        q = np.repeat(p[None], len(tri), 0)
        out.append(np.linalg.norm(q - closest_point_on_triangles_np(tri, q)[0], axis=1).min())
    return np.array(out)


def _rigid(seed):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = q, rng.normal(scale=0.1, size=3) + [0, 0, 0.6]
    return T


def test_closest_point_on_a_triangle_in_every_voronoi_region():
    a, b, c = np.array([0.0, 0, 0]), np.array([1.0, 0, 0]), np.array([0.0, 1, 0])
    cases = {  # query -> expected closest point
        (0.2, 0.2, 0.5): (0.2, 0.2, 0.0),  # face interior
        (-1.0, -1.0, 0.3): (0.0, 0.0, 0.0),  # vertex A
        (2.0, -0.5, 0.0): (1.0, 0.0, 0.0),  # vertex B
        (-0.5, 2.0, 1.0): (0.0, 1.0, 0.0),  # vertex C
        (0.5, -1.0, 0.0): (0.5, 0.0, 0.0),  # edge AB
        (-1.0, 0.5, 0.2): (0.0, 0.5, 0.0),  # edge AC
        (1.0, 1.0, -0.4): (0.5, 0.5, 0.0),  # edge BC
    }
    p = np.array(list(cases.keys()))
    n = len(p)
    got, region = closest_point_on_triangles_np(np.tile(np.stack([a, b, c]), (n, 1, 1)), p)
    np.testing.assert_allclose(got, np.array(list(cases.values())), atol=1e-12)
    assert region.tolist() == [REGION_FACE, REGION_VERTEX, REGION_VERTEX + 1, REGION_VERTEX + 2, REGION_EDGE,
                               REGION_EDGE + 2, REGION_EDGE + 1]  # edges ab, bc, ca = 0, 1, 2


@pytest.mark.parametrize("mesh", [trimesh.creation.icosphere(2, 0.05), BOX,
                                  trimesh.creation.cylinder(0.03, 0.12, sections=24)], ids=["sphere", "box", "cyl"])
def test_mesh_distance_is_exact_and_honours_the_cap(mesh):
    rng = np.random.default_rng(0)
    p = rng.normal(scale=0.05, size=(300, 3))
    md = MeshDistance(mesh.vertices, mesh.faces)
    truth = _brute(p, mesh)
    np.testing.assert_allclose(md.unsigned(p), truth, atol=1e-12)
    capped = md.unsigned(p, cap=0.01)
    near = truth <= 0.01
    np.testing.assert_allclose(capped[near], truth[near], atol=1e-12)
    assert np.all(capped[~near] > 0.01)
    s = md.signed(p, cap=0.01)
    inside = mesh.contains(p)
    np.testing.assert_allclose(s[inside], -truth[inside], atol=1e-12)  # inside: always exact, negative
    out_near = ~inside & near
    np.testing.assert_allclose(s[out_near], truth[out_near], atol=1e-12)
    assert np.all(np.isinf(s[~inside & ~near]))


def _ball_frames(centres):
    v = np.asarray(BALL.vertices)
    return np.stack([v + c for c in centres])


def test_known_answers_half_inside_touching_and_apart_under_any_object_pose():
    # Frame 0: ball centre on the top face (deepest vertex, the bottom pole, 20 mm inside);
    # frame 1: ball resting on the face (pole exactly on it); frame 2: 10 mm above it.
    centres = [(0, 0, 0.05), (0, 0, 0.07), (0, 0, 0.08)]
    verts_obj = _ball_frames(centres)
    tips_obj = np.repeat(verts_obj[:, np.argmin(BALL.vertices[:, 2])][:, None], 21, axis=1)  # all at the pole
    for seed in range(2):  # the same scene seen under two object poses: identical numbers
        T = np.stack([_rigid(seed + t) for t in range(3)])
        to_cam = lambda x: np.einsum("tij,tvj->tvi", T[:, :3, :3], x) + T[:, None, :3, 3]  # noqa: E731
        res = contact_metrics({"right": (to_cam(verts_obj), to_cam(tips_obj))}, BOX.vertices, BOX.faces, T)
        assert res["pen_max_mm"] == pytest.approx(20.0, abs=1e-6)
        assert res["pen_depth_mm"] == pytest.approx(20.0 / 3, abs=1e-6)
        assert res["pen_ratio"] == pytest.approx(1 / 3)
        assert res["contact_ratio"] == pytest.approx(2 / 3)
        assert res["tip_dist_mm"] == pytest.approx((20.0 + 0.0 + 10.0) / 3, abs=1e-6)
        assert res["tip_min_dist_mm"] == pytest.approx(10.0, abs=1e-6)
        per = contact_per_frame({"right": (to_cam(verts_obj), None)}, BOX.vertices, BOX.faces, T)
        np.testing.assert_allclose(per["pen_depth"], [0.02, 0.0, 0.0], atol=1e-9)
        assert per["min_dist"][1] == pytest.approx(0.0, abs=1e-9) and np.isinf(per["min_dist"][2])
        assert list(per["in_contact"]) == [True, True, False]
        # The mean depth of the inside vertices: the lower half of the ball, below z = 0.05.
        inside_depth = 0.05 - verts_obj[0][verts_obj[0, :, 2] < 0.05 - 1e-9][:, 2]
        assert per["pen_mean"][0] == pytest.approx(inside_depth.mean(), abs=1e-9)
        assert set(res) == set(CONTACT_KEYS)


def test_thresholds_two_hands_and_valid_frames():
    T = np.tile(np.eye(4), (2, 1, 1))
    T[:, 2, 3] = 0.5
    near = _ball_frames([(0, 0, 0.0705), (0, 0, 0.0705)]) + [0, 0, 0.5]  # 0.5 mm off the surface
    deep = _ball_frames([(0, 0, 0.1), (0, 0, 0.0695)]) + [0, 0, 0.5]  # frame 1: 0.5 mm inside
    res = contact_metrics({"right": (near, None), "left": (deep, None)}, BOX.vertices, BOX.faces, T)
    assert res["contact_ratio"] == 1.0 and res["pen_ratio"] == 0.0  # 0.5 mm < the 1 mm penetration threshold
    assert res["pen_max_mm"] == pytest.approx(0.5, abs=1e-6)
    assert np.isnan(res["tip_dist_mm"])  # no keypoints given
    strict = ContactConfig(pen_threshold_m=0.0002, contact_threshold_m=0.0001)
    res = contact_metrics({"right": (near, None), "left": (deep, None)}, BOX.vertices, BOX.faces, T, config=strict)
    assert res["pen_ratio"] == 0.5 and res["contact_ratio"] == 0.5
    res = contact_metrics({"right": (near, None), "left": (deep, None)}, BOX.vertices, BOX.faces, T,
                          valid=[True, False])
    assert res["pen_max_mm"] == 0.0 and res["pen_ratio"] == 0.0
    bad = T.copy()
    bad[:, :3, :3] *= 2.0
    with pytest.raises(ValueError, match="not rigid"):
        contact_metrics({"right": (near, None)}, BOX.vertices, BOX.faces, bad)
    with pytest.raises(ValueError, match=r"\(2, V, 3\)"):
        contact_metrics({"right": (near[:1], None)}, BOX.vertices, BOX.faces, T)


def test_evaluate_trajectories_reports_prediction_and_gt_contact_side_by_side():
    T = np.tile(np.eye(4), (2, 1, 1))
    T[:, 2, 3] = 0.5
    ball_v = _ball_frames([(0, 0, 0.07), (0, 0, 0.07)]) + [0, 0, 0.5]
    kp = np.repeat(ball_v[:, :1], 21, axis=1)
    gt = {"hands": {"right": {"keypoints": kp, "vertices": ball_v, "faces": np.asarray(BALL.faces)}},
          "object": {"vertices": np.asarray(BOX.vertices), "faces": np.asarray(BOX.faces), "T_cam_from_obj": T}}
    pred = {"hands": {"right": {"keypoints": kp - [0, 0, 0.01], "vertices": ball_v - [0, 0, 0.01],
                                "faces": np.asarray(BALL.faces)}},
            # canonical mesh at half size with scale 2 (x_cam = T @ (scale * x_obj)): the same metric box
            "object": {"vertices": np.asarray(BOX.vertices) / 2, "faces": np.asarray(BOX.faces),
                       "T_cam_from_obj": T, "scale": 2.0}}
    from tests.metrics.test_metrics import FAST

    res = evaluate_trajectories(pred, gt, n_samples=500, config=FAST)
    assert res["gt_pen_max_mm"] == pytest.approx(0.0, abs=1e-6) and res["gt_contact_ratio"] == 1.0
    assert res["pen_max_mm"] == pytest.approx(10.0, abs=1e-6) and res["pen_ratio"] == 1.0
    assert res["mpjpe_ra_r"] == pytest.approx(0.0, abs=1e-9)  # existing keys unchanged


@pytest.mark.parametrize("mesh", [trimesh.creation.icosphere(2, 0.05), BOX,
                                  trimesh.creation.cylinder(0.03, 0.12, sections=24)], ids=["sphere", "box", "cyl"])
def test_pseudonormal_sign_agrees_with_ray_parity_on_closed_meshes(mesh):
    p = np.random.default_rng(1).normal(scale=0.05, size=(400, 3))
    parity = MeshDistance(mesh.vertices, mesh.faces, sign="parity").signed(p, cap=0.01)
    normal = MeshDistance(mesh.vertices, mesh.faces, sign="pseudonormal").signed(p, cap=0.01)
    np.testing.assert_allclose(normal, parity, atol=1e-12)
    assert (parity < 0).sum() > 50  # both signs are exercised


def test_an_open_mesh_keeps_the_right_sign_away_from_its_hole():
    # The box without its top face (a hole like a marching-cubes cut), and inverted winding on top.
    top = np.asarray(BOX.triangles_center)[:, 2] > 0.049
    open_box = trimesh.Trimesh(BOX.vertices, np.asarray(BOX.faces)[~top][:, ::-1], process=False)
    md = MeshDistance(open_box.vertices, open_box.faces)
    assert not md.watertight and not md.use_parity
    p = np.array([[0.0, 0.0, -0.04],  # 10 mm above the bottom face, inside
                  [0.0, 0.0, -0.06],  # 10 mm below it, outside
                  [0.045, 0.0, 0.0],  # 5 mm inside the +x wall
                  [0.0535, 0.01, -0.02]])  # 3.5 mm outside it
    np.testing.assert_allclose(md.signed(p, cap=0.02), [-0.01, 0.01, -0.005, 0.0035], atol=1e-12)
