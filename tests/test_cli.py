"""The `hold` command: subcommands listed, errors are one clear line, evaluate writes metrics.json."""
import json
import subprocess
import sys

import numpy as np

from hold.cli import main
from hold.data.groundtruth import HandObjectTrajectory, HandTrajectory, ObjectTrajectory, save_trajectory


def test_help_lists_the_subcommands():
    r = subprocess.run([sys.executable, "-m", "hold.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for cmd in ("demo", "synth", "validate", "evaluate"):
        assert cmd in r.stdout


def _toy_trajectory(folder, shift=0.0):
    rng = np.random.default_rng(0)
    T = 3
    verts = rng.normal(size=(T, 30, 3)).astype(np.float32) * 0.05 + [0, 0, 0.5]
    box_v = np.array([[x, y, z] for x in (-.03, .03) for y in (-.03, .03) for z in (-.03, .03)], np.float32)
    box_f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    pose = np.tile(np.eye(4, dtype=np.float32), (T, 1, 1))
    pose[:, :3, 3] = [0.0, 0.0, 0.5 + shift]
    traj = HandObjectTrajectory(
        hands={"right": HandTrajectory("right", verts[:, :21].copy(), verts, np.array([[0, 1, 2]]))},
        object=ObjectTrajectory(box_v, box_f, pose), num_frames=T)
    save_trajectory(traj, folder)
    return folder


def test_evaluate_gt_against_itself_and_a_shifted_copy(tmp_path, capsys):
    gt = _toy_trajectory(tmp_path / "gt")
    pred = _toy_trajectory(tmp_path / "pred", shift=0.01)
    assert main(["evaluate", str(gt), str(gt), "--out", str(tmp_path / "self.json")]) == 0
    m = json.loads((tmp_path / "self.json").read_text())["metrics"]
    assert m["cd_obj"] < 1e-8 and m["f10_obj"] == 1.0 and m["mpjpe_ra_r"] == 0.0
    assert main(["evaluate", str(pred), str(gt)]) == 0
    m = json.loads((pred / "metrics.json").read_text())["metrics"]
    assert abs(m["obj_trans_err_mm_median"] - 10.0) < 1e-3
    assert "MPJPE_r" in capsys.readouterr().out


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing"), str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hold evaluate: error:") and "missing" in err and "Traceback" not in err
    assert main(["synth", "--out", str(tmp_path / "s"), "no_such_field=3"]) == 1
    assert "no_such_field" in capsys.readouterr().err


def test_validate_exit_codes(tmp_path, capsys):
    assert main(["validate", str(tmp_path)]) == 1
    assert "sequence.json" in capsys.readouterr().out


def test_pass_through_commands_show_their_own_help(capsys):
    import pytest

    for cmd in (["train", "--help"], ["export", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(cmd)
        assert e.value.code == 0
        assert f"hold {cmd[0]}" in capsys.readouterr().out
    assert main(["preprocess", "--help"]) == 0
    assert "frames" in capsys.readouterr().out
