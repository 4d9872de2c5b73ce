"""HO3D ground truth: joint order, OpenGL -> OpenCV conversion, missing frames, MANO optional."""
import json
import pickle

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.transform import Rotation

from hold.cli import main
from hold.data.groundtruth import (
    HandObjectTrajectory, HandTrajectory, ObjectTrajectory, load_trajectory, save_trajectory,
)
from hold.evaluate import load_ground_truth, trajectory_as_dict
from hold.hands.base import KEYPOINT_NAMES, KEYPOINT_PARENTS
from hold.hands.mano import TIP_VERTEX_IDS, load_mano
from hold.hands.testing import write_fake_mano_dir
from hold.ho3d import CV_FROM_GL, HO3D_TO_COMMON, joints_to_common, load_ho3d_sequence, object_pose_cv
from hold.metrics import evaluate_trajectories

OBJ = "006_mustard_bottle"
BOX = trimesh.creation.box(extents=(0.04, 0.06, 0.1))
T_FRAMES = 4
MISSING = 2  # an evaluation-split style frame: root joint only, no object pose
# HO3D / MANO joint names in handJoints3D order (16 MANO joints, then the 5 tips).
HO3D_JOINT_NAMES: tuple[str, ...] = (
    "wrist", "index1", "index2", "index3", "middle1", "middle2", "middle3", "little1", "little2", "little3",
    "ring1", "ring2", "ring3", "thumb1", "thumb2", "thumb3", "thumb_tip", "index_tip", "middle_tip",
    "ring_tip", "little_tip",
)


def rodrigues(rotvec) -> np.ndarray:
    """Rotation matrix of an axis-angle vector (radians), as HO3D's cv2.Rodrigues."""
    return Rotation.from_rotvec(np.ravel(rotvec)).as_matrix()


def test_joint_order_is_a_permutation_wrist_first_each_finger_base_to_tip():
    assert sorted(HO3D_TO_COMMON) == list(range(21)) and HO3D_TO_COMMON[0] == 0
    names = [HO3D_JOINT_NAMES[i] for i in HO3D_TO_COMMON]
    assert names[0] == "wrist"
    for f, finger in enumerate(("thumb", "index", "middle", "ring", "little")):
        chain = names[1 + 4 * f: 5 + 4 * f]
        assert chain == [f"{finger}1", f"{finger}2", f"{finger}3", f"{finger}_tip"], chain
        assert all(KEYPOINT_NAMES[1 + 4 * f + k].startswith(finger) for k in range(4))
        # hold's skeleton: each finger hangs off the wrist and runs base -> tip
        assert [KEYPOINT_PARENTS[1 + 4 * f + k] for k in range(4)] == [0, 1 + 4 * f, 2 + 4 * f, 3 + 4 * f]


def _mano_ho3d_order(hand, pose, trans):
    """MANO posed in its own frame (taken as HO3D's OpenGL frame): vertices and HO3D-order joints."""
    with torch.no_grad():
        out = hand(torch.as_tensor(pose[:, :3]), torch.as_tensor(pose[:, 3:]), None, torch.as_tensor(trans))
    v = out.vertices.numpy().astype(np.float64)
    joints = np.concatenate([out.joints.numpy(), v[:, list(TIP_VERTEX_IDS)]], axis=1)  # 16 joints + 5 tips
    return v, joints, out.keypoints.numpy().astype(np.float64)


@pytest.fixture(scope="module")
def mini_ho3d(tmp_path_factory):
    """A 4-frame HO3D sequence made by code: pickles like the dataset's, a YCB-like mesh, fake MANO."""
    root = tmp_path_factory.mktemp("ho3d")
    mano_dir = write_fake_mano_dir(root / "mano")
    hand = load_mano(mano_dir, "right", flat_hand_mean=True).double()
    rng = np.random.default_rng(0)
    pose = rng.normal(scale=0.2, size=(T_FRAMES, 48))
    trans = np.array([0.02, -0.01, -0.5]) + rng.normal(scale=0.01, size=(T_FRAMES, 3))  # in front: -z (OpenGL)
    verts_gl, joints_gl, _ = _mano_ho3d_order(hand, pose, trans)
    obj_rot = rng.normal(scale=0.8, size=(T_FRAMES, 3, 1))
    obj_trans = np.array([0.05, 0.0, -0.55]) + rng.normal(scale=0.01, size=(T_FRAMES, 3))
    cam = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    seq = root / "train" / "ABF10"
    (seq / "meta").mkdir(parents=True)
    for t in range(T_FRAMES):
        meta = {"handPose": pose[t].astype(np.float32), "handTrans": trans[t].astype(np.float32),
                "handBeta": np.zeros(10, np.float32), "handJoints3D": joints_gl[t].astype(np.float32),
                "objRot": obj_rot[t].astype(np.float32), "objTrans": obj_trans[t].astype(np.float32),
                "objName": OBJ, "camMat": cam}
        if t == MISSING:
            meta.update(handJoints3D=joints_gl[t, 0].astype(np.float32), handPose=None, handTrans=None,
                        handBeta=None, objRot=None, objTrans=None)
        with open(seq / "meta" / f"{t:04d}.pkl", "wb") as f:
            pickle.dump(meta, f, protocol=2)
    ycb = root / "ycb"
    (ycb / "models" / OBJ).mkdir(parents=True)
    BOX.export(ycb / "models" / OBJ / "textured_simple.obj")
    return {"seq": seq, "ycb": ycb, "mano": mano_dir, "verts_gl": verts_gl, "joints_gl": joints_gl,
            "obj_rot": obj_rot, "obj_trans": obj_trans, "cam": cam, "root": root}


def test_mapping_agrees_with_hold_mano_keypoints(mini_ho3d):
    hand = load_mano(mini_ho3d["mano"], "right").double()
    pose = np.random.default_rng(1).normal(scale=0.3, size=(2, 48))
    _, joints, keypoints = _mano_ho3d_order(hand, pose, np.zeros((2, 3)))
    # joints_to_common flips y, z (OpenGL -> OpenCV): flip back to compare in MANO's frame.
    np.testing.assert_allclose(joints_to_common(joints) @ CV_FROM_GL.T, keypoints, atol=1e-12)


def test_object_pose_round_trip_and_axis_flip():
    rng = np.random.default_rng(2)
    rot, tr = rng.normal(size=3), np.array([0.1, -0.05, -0.6])
    x_obj = rng.normal(scale=0.05, size=(10, 3))
    x_gl = x_obj @ rodrigues(rot).T + tr  # HO3D: x_gl = R(objRot) x + objTrans
    T = object_pose_cv(rot, tr)
    x_cv = x_obj @ T[:3, :3].T + T[:3, 3]
    np.testing.assert_allclose(x_cv, x_gl * [1, -1, -1], atol=1e-12)
    assert np.all(x_cv[:, 2] > 0)  # in front of an OpenCV camera
    np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(T[:3, :3]) == pytest.approx(1.0)  # still a rotation after the flip
    # objRot is axis-angle: 90 degrees about z turns x into y (then y flips to -y in OpenCV)
    np.testing.assert_allclose(object_pose_cv(np.array([0, 0, np.pi / 2]), np.zeros(3))[:3, :3] @ [1, 0, 0],
                               [0, -1, 0], atol=1e-12)


def test_load_with_mano_and_ycb(mini_ho3d):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # MANO joints must agree with handJoints3D: no mismatch warning
        seq = load_ho3d_sequence(mini_ho3d["seq"], ycb_dir=mini_ho3d["ycb"], mano_dir=mini_ho3d["mano"])
    traj = seq.trajectory
    ok = [t for t in range(T_FRAMES) if t != MISSING]
    assert seq.valid.tolist() == [t != MISSING for t in range(T_FRAMES)]
    assert seq.frame_ids == ["0000", "0001", "0002", "0003"] and seq.object_name == OBJ
    hand = traj.hands["right"]
    flip = np.array([1.0, -1.0, -1.0])
    np.testing.assert_allclose(hand.keypoints[ok], (mini_ho3d["joints_gl"][ok][:, list(HO3D_TO_COMMON)] * flip),
                               atol=1e-6)
    np.testing.assert_allclose(hand.vertices[ok], mini_ho3d["verts_gl"][ok] * flip, atol=1e-6)
    assert np.isnan(hand.keypoints[MISSING]).all() and np.isnan(hand.vertices[MISSING]).all()
    assert hand.vertices.shape[1:] == (778, 3) and hand.faces.shape == (1538, 3)
    # Object: the known pose, flipped; the mesh as written.
    np.testing.assert_allclose(np.sort(traj.object.vertices, axis=0), np.sort(BOX.vertices, axis=0), atol=1e-6)
    for t in ok:
        x_gl = BOX.vertices @ rodrigues(mini_ho3d["obj_rot"][t]).T + mini_ho3d["obj_trans"][t]
        Tt = traj.object.T_cam_from_obj[t].astype(np.float64)
        np.testing.assert_allclose(BOX.vertices @ Tt[:3, :3].T + Tt[:3, 3], x_gl * flip, atol=1e-6)
    assert np.isnan(traj.object.T_cam_from_obj[MISSING]).all()
    np.testing.assert_allclose(seq.K[:2, 2], [320.5, 240.5])  # hold's pixel centres at +0.5
    assert seq.mano_dir == mini_ho3d["mano"]  # has them
    # The ground truth scored against itself: perfect where valid, invalid frame ignored.
    from tests.metrics.test_metrics import FAST

    d = trajectory_as_dict(traj, seq.valid)  # NaN frames filled (skipped through valid)
    assert np.isfinite(d["object"]["T_cam_from_obj"]).all() and np.isfinite(d["hands"]["right"]["vertices"]).all()
    res = evaluate_trajectories(d, d, n_samples=500, config=FAST)
    assert res["num_valid_frames"] == 3 and res["mpjpe_ra_r"] == pytest.approx(0.0, abs=1e-9)
    assert res["cd_obj"] < 1e-6 and res["cd_h"] < 1e-6
    # an object moved 1 cm along x in every frame: a 10 mm translation error, the shape still exact
    moved = {**d, "object": {**d["object"], "T_cam_from_obj": d["object"]["T_cam_from_obj"].copy()}}
    moved["object"]["T_cam_from_obj"][:, 0, 3] += 0.01
    res = evaluate_trajectories(moved, d, n_samples=500, config=FAST)
    assert res["obj_trans_err_mm_median"] == pytest.approx(10.0, abs=1e-3) and res["cd_obj"] < 1e-6
    assert res["mrrpe_ho_mm"] == pytest.approx(10.0, abs=1e-3)


def test_without_mano_joints_still_give_mpjpe_and_vertices_fail_clearly(mini_ho3d):
    seq = load_ho3d_sequence(mini_ho3d["seq"])  # neither MANO nor YCB
    assert seq.mano_dir is None and seq.trajectory.object is None
    assert seq.trajectory.hands["right"].vertices.shape == (T_FRAMES, 0, 3)
    _, notes = load_ground_truth(mini_ho3d["seq"], "ho3d")  # what `hold evaluate` says: name --mano-dir
    assert any("--mano-dir" in n and "no hand vertices" in n for n in notes)
    with pytest.raises(FileNotFoundError, match="textured_simple.obj"):
        load_ho3d_sequence(mini_ho3d["seq"], ycb_dir=mini_ho3d["root"] / "nowhere")
    with pytest.raises(FileNotFoundError, match="meta"):
        load_ho3d_sequence(mini_ho3d["root"])


def _write_prediction(folder, mini, joint_offset_m):
    """A finite prediction of the mini sequence: gt keypoints with joint 5 moved, MANO mesh, the box."""
    seq = load_ho3d_sequence(mini["seq"], ycb_dir=mini["ycb"], mano_dir=mini["mano"])
    h, o = seq.trajectory.hands["right"], seq.trajectory.object
    fill = lambda a, like: np.where(np.isnan(a), like, a)  # noqa: E731
    kp = fill(h.keypoints, h.keypoints[0])
    kp[:, 5, 0] += joint_offset_m
    verts = fill(h.vertices, h.vertices[0])
    pose = fill(o.T_cam_from_obj, o.T_cam_from_obj[0])
    save_trajectory(HandObjectTrajectory(hands={"right": HandTrajectory("right", kp, verts, h.faces)},
                                         object=ObjectTrajectory(o.vertices, o.faces, pose), num_frames=T_FRAMES),
                    folder)
    return folder


def test_hold_evaluate_against_ho3d_with_and_without_mano(mini_ho3d, tmp_path, capsys):
    pred = _write_prediction(tmp_path / "pred", mini_ho3d, joint_offset_m=0.0042)
    out = tmp_path / "m.json"
    argv = ["evaluate", str(pred), str(mini_ho3d["seq"]), "--ycb-models", str(mini_ho3d["ycb"]), "--out", str(out)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    rec = json.loads(out.read_text())
    m = rec["metrics"]
    assert rec["gt_format"] == "ho3d" and m["num_valid_frames"] == 3
    assert m["mpjpe_ra_r"] == pytest.approx(4.2 / 21, abs=1e-3)  # one of 21 joints 4.2 mm off
    assert m["cd_obj"] < 1e-4 and m["obj_trans_err_mm_median"] < 1e-3
    assert "cd_hand_r" not in m and "gt_pen_depth_mm" not in m and "pen_depth_mm" in m
    assert "--mano-dir" in stdout and "MPJPE_r" in stdout
    # With MANO the hand surface metrics and the ground truth's own contact statistics appear
    # (same path as the command, the fast ICP settings).
    from tests.metrics.test_metrics import FAST

    gt, notes = load_ground_truth(mini_ho3d["seq"], "ho3d", mano_dir=mini_ho3d["mano"], ycb_models=mini_ho3d["ycb"])
    assert notes == ["HO3D: 1 of 4 frames have no full annotation and are not scored"]
    m = evaluate_trajectories(trajectory_as_dict(load_trajectory(pred)), gt, n_samples=500, config=FAST)
    assert m["cd_hand_r"] < 1e-6 and m["hand_v2v_mm_r"] < 1e-3 and m["num_valid_frames"] == 3
    assert m["gt_pen_depth_mm"] == pytest.approx(m["pen_depth_mm"], abs=1e-3)
    # A frame count that does not match is one clear error.
    short = tmp_path / "short"
    save_trajectory(HandObjectTrajectory(hands={}, object=ObjectTrajectory(
        BOX.vertices.astype(np.float32), BOX.faces, np.tile(np.eye(4, dtype=np.float32), (3, 1, 1))), num_frames=3),
        short)
    assert main(["evaluate", str(short), str(mini_ho3d["seq"])]) == 1
    assert "3 frames but GT" in capsys.readouterr().err


def test_an_evaluation_split_sequence_is_one_clear_error(tmp_path):
    seq = tmp_path / "evaluation" / "SM1"
    (seq / "meta").mkdir(parents=True)
    for t in range(2):  # what the evaluation split ships: the root joint only, no hand pose
        meta = {"handJoints3D": np.array([0.0, 0.0, -0.5], np.float32), "handPose": None, "handTrans": None,
                "objRot": np.zeros(3, np.float32), "objTrans": np.array([0, 0, -0.5], np.float32), "objName": OBJ}
        with open(seq / "meta" / f"{t:04d}.pkl", "wb") as f:
            pickle.dump(meta, f, protocol=2)
    with pytest.raises(ValueError, match="evaluation split"):
        load_ground_truth(seq, "ho3d")
