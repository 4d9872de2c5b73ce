"""`hold demo --quick`: synthesize, reconstruct end to end, leave meshes, an mp4 and metrics.json; a re-run
resumes (every stage skipped)."""
import json

import numpy as np
import pytest

from hold.cli import main

pytest.importorskip("pytorch_lightning")
pytest.importorskip("recon.refine")
pytest.importorskip("render.cli")


def test_quick_demo_leaves_meshes_an_mp4_and_metrics(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--quick", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "hold reconstruct: done" in out and "metrics:" in out
    for name in ("build/sequence.json", "build/gt", "final/meshes/object.ply", "final/meshes/hand_right.ply",
                 "refine/refine.json", "metrics.json", "preview.png"):
        assert (tmp_path / name).exists(), name
    assert list((tmp_path / "render").glob("*.mp4"))
    assert (tmp_path / "final" / "meshes" / "object.ply").stat().st_size > 1000  # a real surface, not empty
    m = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert np.isfinite(m["cd_obj"]) and 0.0 <= m["f10_obj"] <= 1.0 and np.isfinite(m["mpjpe_ra_r"])
    build = json.loads((tmp_path / "build" / "sequence.json").read_text())
    assert build["num_frames"] == 4
    # the build's hand estimates are noisy (emulated off-the-shelf estimates), the ground truth exact
    with np.load(tmp_path / "build" / "hands.npz") as est, np.load(tmp_path / "build" / "gt" / "hands.npz") as gt:
        err_m = np.linalg.norm(est["right/transl"] - gt["right/transl"], axis=-1)
        assert err_m.shape == (4,) and 0.001 < err_m.mean() < 0.05  # DEMO_NOISE: ~1 cm per axis
    # a second run finds everything done
    assert main(["demo", "--out", str(tmp_path), "--quick", "--quiet"]) == 0
    rec = json.loads((tmp_path / "reconstruct.json").read_text())["summary"]["stages"]
    assert not any(s["ran"] for s in rec.values())
