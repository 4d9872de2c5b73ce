"""`hold preprocess build`: sequence.json rebuilt from the step records of a synthetic build (K scaled to the
frames, hands, provenance of every artefact), validated, loadable and trainable (recon.train.check_build);
a missing step or an invalid build stops with one clear message and leaves no bad sequence.json behind."""
import json
import shutil

import numpy as np
import pytest

from hold.data import SequenceError, load_sequence
from hold.synth.sequence import SynthConfig, generate
from preprocess.build import BuildError, main, run_build
from preprocess.records import write_record

T, SIZE = 6, 64


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "synth"
    generate(SynthConfig(num_frames=T, width=SIZE, height=SIZE, seed=0), out, progress=False)
    return out


def fake_records(seq_dir, K_at_double_size):
    """Records as the steps write them; align's K is for frames twice this size (frames re-extracted smaller)."""
    write_record(seq_dir, "frames", "f", options={"stride": 2}, inputs=[], outputs=["images"],
                 info={"num_frames": T, "image_size": [SIZE, SIZE], "fps": 15.0, "stride": 2, "scale_xy": [0.5, 0.5],
                       "source": {"path": "/videos/clip.mp4", "kind": "video", "backend": "pyav"}})
    write_record(seq_dir, "masks", "m", options={"mode": "estimate"}, inputs=[], outputs=["masks"],
                 info={"source": "estimated: hand from the fitted hand, object by GrabCut"}, estimated=["masks"])
    write_record(seq_dir, "hands", "h", options={"keypoints": "kp.json"}, inputs=[], outputs=["hands.npz"],
                 info={"sequence_fields": {"hands": ["right"], "hand_model": "anny",
                                           "sources": {"hands": "hold preprocess hands: keypoints kp.json"}}},
                 estimated=["hands/right"])
    write_record(seq_dir, "sfm", "s", options={}, inputs=[], outputs=["object.npz"],
                 info={"K": K_at_double_size.tolist(), "image_size": [2 * SIZE, 2 * SIZE]})
    write_record(seq_dir, "align", "a", options={}, inputs=[], outputs=["hands.npz", "object.npz"],
                 info={"K": K_at_double_size.tolist(), "K_source": "preprocess/sfm.json (SfM estimate)",
                       "image_size": [2 * SIZE, 2 * SIZE], "num_frames": T, "hands": ["right"], "hand_model": "anny",
                       "scale_m": 0.05})


@pytest.fixture()
def seq_dir(synth, tmp_path):
    dst = tmp_path / "seq"
    shutil.copytree(synth, dst)
    K = np.asarray(json.loads((dst / "sequence.json").read_text())["K"])
    (dst / "sequence.json").unlink()
    K2 = np.diag([2.0, 2.0, 1.0]) @ K
    fake_records(dst, K2)
    return dst, K


def test_build_reconstructs_a_valid_trainable_sequence(seq_dir, capsys):
    from recon.train import check_build

    root, K = seq_dir
    assert run_build(root) == root
    assert "OK:" in capsys.readouterr().out
    seq = load_sequence(root)
    np.testing.assert_allclose(seq.intrinsics.K, K, atol=1e-9)  # scaled back to the frames' size
    assert seq.num_frames == T and seq.intrinsics.image_size == (SIZE, SIZE) and seq.fps == 15.0
    assert list(seq.hands) == ["right"] and seq.hand_model == "anny" and seq.object is not None
    src = seq.sources
    assert set(src) == {"images", "masks", "hands", "object", "intrinsics"}
    assert src["images"]["step"] == "frames" and src["images"]["input"] == "/videos/clip.mp4"
    assert src["masks"]["estimated"] is True and "GrabCut" in src["masks"]["tool"]
    assert src["hands"]["tool"].startswith("hold preprocess hands") and src["object"]["sfm"]["step"] == "sfm"
    assert "scaled from 128x128 to 64x64" in src["intrinsics"]["tool"]
    assert all(s["finished"] for s in src.values())
    check_build(root)  # the reconstruction's own gate
    # unchanged: skipped; --force rewrites the same content
    before = (root / "sequence.json").read_text()
    assert main([str(root)]) == 0
    assert "up to date" in capsys.readouterr().err
    stamp = (root / "sequence.json").stat().st_mtime_ns
    assert main([str(root), "--force"]) == 0
    assert "up to date" not in capsys.readouterr().err
    assert (root / "sequence.json").stat().st_mtime_ns != stamp  # rewritten ...
    assert json.loads((root / "sequence.json").read_text())["K"] == json.loads(before)["K"]  # ... the same K


def test_missing_step_is_one_clear_message(seq_dir):
    root, _ = seq_dir
    (root / "preprocess" / "align.json").unlink()
    with pytest.raises(SequenceError, match=r"align\.json.*`align` step has not run.*hold preprocess align"):
        run_build(root)
    assert not (root / "sequence.json").exists()


def test_invalid_build_stops_with_the_report_and_keeps_no_bad_json(seq_dir):
    root, _ = seq_dir
    (root / "masks" / "000003.png").unlink()
    with pytest.raises(BuildError, match=r"(?s)NOT valid.*masks.*missing 1 of 6 masks.*hold preprocess masks"):
        run_build(root)
    assert not (root / "sequence.json").exists()
