"""`hold evaluate`: where PRED and GT are found, prediction-only statistics, metrics.json."""
import json

import numpy as np
import pytest
import trimesh

from hold.cli import main
from hold.data.groundtruth import HandObjectTrajectory, HandTrajectory, ObjectTrajectory, save_trajectory
from hold.evaluate import evaluate_paths, fill_invalid_frames, resolve_inputs

BOX = trimesh.creation.box(extents=(0.1, 0.1, 0.1))
BALL = trimesh.creation.uv_sphere(radius=0.02, count=[16, 16])  # poles on ±z
T = 3


def _trajectory(folder, ball_z=0.07):
    """Box at z=0.5 m; a ball 'hand' above its top face whose bottom pole is at box z + ball_z - 0.02."""
    pose = np.tile(np.eye(4, dtype=np.float32), (T, 1, 1))
    pose[:, 2, 3] = 0.5
    verts = np.repeat(np.asarray(BALL.vertices, np.float32)[None], T, 0) + [0, 0, 0.5 + ball_z]
    kp = verts[:, :21].copy()
    traj = HandObjectTrajectory(hands={"right": HandTrajectory("right", kp, verts, np.asarray(BALL.faces))},
                                object=ObjectTrajectory(np.asarray(BOX.vertices, np.float32), np.asarray(BOX.faces),
                                                        pose), num_frames=T)
    save_trajectory(traj, folder)
    return folder


def _trained_run(folder, build, with_pred=True, ball_z=0.07):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"build": str(build)}))
    if with_pred:
        _trajectory(folder / "pred", ball_z)
    return folder


def test_a_reconstruction_directory_uses_final_then_fit_and_its_build_gt(tmp_path):
    run = tmp_path / "RUN"
    _trajectory(run / "build" / "gt")
    _trained_run(run / "fit", run / "build")
    _trained_run(run / "final", run / "build")
    inp = resolve_inputs(run)
    assert inp.pred == run / "final" / "pred" and inp.gt == run / "build" / "gt" and inp.gt_format == "hold"
    assert inp.default_out == run / "metrics.json"
    import shutil

    shutil.rmtree(run / "final" / "pred")
    assert resolve_inputs(run).pred == run / "fit" / "pred"
    # An explicit GT wins over the build's.
    other = _trajectory(tmp_path / "other_gt")
    assert resolve_inputs(run, other).gt == other


def test_a_trained_run_finds_its_build_gt_or_reports_prediction_only(tmp_path):
    build = tmp_path / "build"
    _trajectory(build / "gt")
    inp = resolve_inputs(_trained_run(tmp_path / "run", build))
    assert inp.pred == tmp_path / "run" / "pred" and inp.gt == build / "gt"
    assert inp.default_out == tmp_path / "run" / "metrics.json"
    nogt = tmp_path / "build_nogt"
    nogt.mkdir()
    inp = resolve_inputs(_trained_run(tmp_path / "run2", nogt))
    assert inp.gt is None and "no ground truth" in inp.notes[0]
    with pytest.raises(FileNotFoundError, match="hold export"):
        resolve_inputs(_trained_run(tmp_path / "run3", build, with_pred=False))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_inputs(tmp_path / "run", tmp_path / "missing_gt")
    with pytest.raises(FileNotFoundError, match="holds no prediction"):
        resolve_inputs(nogt)


def test_prediction_only_statistics_without_ground_truth(tmp_path, capsys):
    # The ball sits 20 mm deep in the box's top face: known penetration, no ground truth anywhere.
    run = _trained_run(tmp_path / "run", tmp_path / "no_build", ball_z=0.05)
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    rec = json.loads((run / "metrics.json").read_text())
    m = rec["metrics"]
    assert rec["gt"] is None and any("no ground truth" in n for n in rec["notes"])
    assert m["num_frames"] == T and m["pen_max_mm"] == pytest.approx(20.0, abs=1e-4)
    assert m["pen_ratio"] == 1.0 and m["contact_ratio"] == 1.0 and "mpjpe_ra_r" not in m
    assert "pen 20.0 mm" in out and "note: no ground truth" in out


def test_prediction_vs_gt_side_by_side(tmp_path, capsys):
    build = tmp_path / "build"
    _trajectory(build / "gt", ball_z=0.07)  # ground truth: resting on the box
    run = _trained_run(tmp_path / "run", build, ball_z=0.065)  # prediction: 5 mm into it
    metrics = evaluate_paths(run)
    assert metrics["pen_max_mm"] == pytest.approx(5.0, abs=1e-4) and metrics["gt_pen_max_mm"] == pytest.approx(0.0, abs=1e-4)
    assert metrics["gt_contact_ratio"] == 1.0 and metrics["mpjpe_ra_r"] == pytest.approx(0.0, abs=1e-6)
    assert json.loads((run / "metrics.json").read_text())["gt"] == str(build / "gt")


def test_fill_invalid_frames_repeats_the_first_valid_one():
    a = np.array([[np.nan], [2.0], [np.nan], [4.0]])
    filled = fill_invalid_frames(a, np.array([False, True, False, True]))
    np.testing.assert_array_equal(filled, [[2.0], [2.0], [2.0], [4.0]])
    assert np.isnan(a[0, 0])  # input untouched


def test_a_build_as_pred_means_its_ground_truth_and_nothing_is_written_into_it(tmp_path, capsys):
    build = tmp_path / "build"
    _trajectory(build / "gt", ball_z=0.065)
    _trajectory(build)  # a build's own hands.npz / object.npz are estimates: never taken as the prediction
    (build / "sequence.json").write_text("{}")
    inp = resolve_inputs(build)
    assert inp.pred == build / "gt" and inp.gt is None and inp.default_out is None
    before = sorted(p.name for p in build.rglob("*"))
    assert main(["evaluate", str(build)]) == 0
    assert sorted(p.name for p in build.rglob("*")) == before
    assert "pen 5.0 mm" in capsys.readouterr().out
    (build / "gt" / "hands.npz").unlink()
    (build / "gt" / "object.npz").unlink()
    with pytest.raises(FileNotFoundError, match="sequence build"):
        resolve_inputs(build)


def test_a_run_json_that_is_not_a_trained_runs_is_one_clear_error(tmp_path, capsys):
    run = _trained_run(tmp_path / "run", tmp_path / "build")
    (run / "run.json").write_text("[1, 2]")  # valid JSON, not a dict
    assert main(["evaluate", str(run)]) == 1
    err = capsys.readouterr().err
    assert "run.json" in err and "'build'" in err and "Traceback" not in err


def test_the_note_says_why_there_are_no_contact_statistics(tmp_path, capsys):
    from hold.metrics import contact_unavailable_reason

    hands_only = HandObjectTrajectory(hands={"right": HandTrajectory(
        "right", np.zeros((T, 21, 3), np.float32), np.asarray(BALL.vertices, np.float32)[None].repeat(T, 0) + 0.5,
        np.asarray(BALL.faces))}, object=None, num_frames=T)
    save_trajectory(hands_only, tmp_path / "hands_only")
    assert main(["evaluate", str(tmp_path / "hands_only")]) == 0
    assert "no contact/penetration statistics either: the prediction has no object" in capsys.readouterr().out
    box = {"vertices": BOX.vertices, "faces": BOX.faces, "T_cam_from_obj": np.tile(np.eye(4), (T, 1, 1))}
    hand = {"keypoints": np.zeros((T, 21, 3)), "vertices": np.zeros((T, 8, 3)) + 0.5}
    assert contact_unavailable_reason({"hands": {"right": hand}, "object": box}) is None
    assert contact_unavailable_reason({"hands": {"right": {"keypoints": hand["keypoints"]}}, "object": box}) \
        == "no hand vertices"
    growing = {**box, "T_cam_from_obj": box["T_cam_from_obj"] * np.linspace(1, 2, T)[:, None, None]}
    growing["T_cam_from_obj"][:, 3, 3] = 1.0
    assert "scale changes over time" in contact_unavailable_reason({"hands": {"right": hand}, "object": growing})
