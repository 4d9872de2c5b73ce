"""Stage final's two training options: `poses_from` (initial poses from a pose folder) and `init_from`
(warm start: network weights, not poses, from a finished run), recorded in run.json and honoured on load."""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("pytorch_lightning")

from hold.config import resolve_config  # noqa: E402
from hold.data import load_sequence  # noqa: E402
from hold.data.errors import SequenceError  # noqa: E402
from hold.data.poses import save_poses  # noqa: E402
from hold.data.schema import ObjectTrack  # noqa: E402
from hold.synth.sequence import EstimateNoise, SynthConfig, generate  # noqa: E402
from recon.config import TrainConfig  # noqa: E402
from recon.export import load_run  # noqa: E402
from recon.final import train_final  # noqa: E402
from recon.train import resolve_preset, train  # noqa: E402

TINY = ["max_steps=6", "checkpoint_every=3", "log_every=3", "sampler.rays_per_batch=32", "sampler.frames_per_batch=2",
        "model.hand_prefit_steps=2", "model.object.n_coarse=4", "model.object.n_importance=4",
        "model.hand.n_coarse=4", "model.hand.n_importance=4", "model.losses.eikonal_random_points=16",
        "model.losses.hand_prior_points=32", "model.hand.prior_bank_size=256", "mesh_resolution=16",
        "model.object.sdf.hash_grid.log2_hashmap_size=10", "model.hand.sdf.hash_grid.log2_hashmap_size=10"]
SHIFT_M = np.array([0.01, -0.005, 0.02], np.float32)


def _cfg(*extra):
    return resolve_config(TrainConfig(), [resolve_preset("cpu_smoke")], TINY + list(extra))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny finished fit run and a pose folder whose object poses are the build's shifted by SHIFT_M."""
    root = tmp_path_factory.mktemp("final")
    build = generate(SynthConfig(num_frames=3, width=32, height=24, seed=1, noise=EstimateNoise(drop_rate=0.0)),
                     root / "build", progress=False)
    train(build, root / "fit", _cfg(), progress=False)
    seq = load_sequence(build)
    T = seq.object.T_cam_from_obj.copy()
    T[:, :3, 3] += SHIFT_M
    save_poses(root / "poses", seq, object=ObjectTrack(T_cam_from_obj=T, scale=seq.object.scale,
                                                        points=seq.object.points, valid=seq.object.valid))
    return root, build, seq


def _state(run):
    return torch.load(run / "checkpoints" / "model.pt", map_location="cpu", weights_only=False)["state_dict"]


def test_warm_start_copies_networks_not_poses_and_poses_come_from_the_folder(fitted):
    root, build, seq = fitted
    # lr=0: the final run's weights are exactly what it started from
    train_final(root / "fit", root / "poses", root / "warm", _cfg("lr=0.0"), warm_start=True, progress=False)
    train_final(root / "fit", root / "poses", root / "fresh", _cfg("lr=0.0"), warm_start=False, progress=False)
    fit, warm, fresh = _state(root / "fit"), _state(root / "warm"), _state(root / "fresh")
    model, _, _ = load_run(root / "warm")
    nets = list(model.named_network_parameters())
    assert any(k.startswith("object.sdf") for k in nets) and not any(k.endswith("pose_delta") for k in nets)
    for k in nets:
        assert torch.equal(warm[k], fit[k]), k  # warm: the fit's networks
    assert any(not torch.equal(fresh[k], fit[k]) for k in nets if k.startswith("object.sdf"))  # fresh: new ones
    want = seq.object.T_cam_from_obj[:, :3, 3] + SHIFT_M
    for state in (warm, fresh):  # poses: the pose folder's, not the fit's trained ones
        np.testing.assert_allclose(state["object.T_init"][:, :3, 3].numpy(), want, atol=1e-6)
    rec = json.loads((root / "warm" / "run.json").read_text())
    assert rec["poses_from"] == str((root / "poses").resolve())
    assert rec["init_from"] == str((root / "fit" / "checkpoints" / "model.pt").resolve())
    assert json.loads((root / "fresh" / "run.json").read_text())["init_from"] is None
    assert json.loads((root / "warm" / "timings.json").read_text())["fit"]["warm_started"] is True
    # loading the run rebuilds it over the pose folder, as it was trained
    np.testing.assert_allclose(model.object.T_init[:, :3, 3].numpy(), want, atol=1e-6)


def test_warm_start_needs_the_same_model_config(fitted, tmp_path):
    root, _, _ = fitted
    with pytest.raises(ValueError, match="init_from=.*same model config"):
        train_final(root / "fit", root / "poses", tmp_path / "bad",
                    _cfg("model.object.sdf.hash_grid.log2_hashmap_size=11"), warm_start=True, progress=False)


def test_bad_pose_folders_and_changed_inputs_stop_before_training(fitted, tmp_path):
    root, build, seq = fitted
    # a pose folder without the sequence's right hand
    save_poses(tmp_path / "wrong", object=seq.object)
    with pytest.raises(SequenceError, match="hands"):
        train(build, tmp_path / "run", _cfg(), progress=False, poses_from=tmp_path / "wrong")
    assert not (tmp_path / "run" / "checkpoints").exists()
    # an unfinished run only resumes with the inputs it was started with
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "run.json").write_text(json.dumps({"build": str(build.resolve()), "poses_from": None,
                                                            "init_from": None}))
    with pytest.raises(ValueError, match="poses_from"):
        train(build, tmp_path / "half", _cfg(), progress=False, poses_from=root / "poses")
