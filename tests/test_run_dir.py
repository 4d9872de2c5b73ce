"""hold.run_dir: finding a trained run (also inside a reconstruction directory) and loading its model
from hold alone, with the exact trained weights, the run's config and its pose override."""
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

pl = pytest.importorskip("pytorch_lightning")

from hold.config import resolve_config  # noqa: E402
from hold.data import SequenceError, load_sequence  # noqa: E402
from hold.data.poses import save_poses  # noqa: E402
from hold.run_dir import find_trained_run, load_trained_model  # noqa: E402
from hold.synth.sequence import EstimateNoise, SynthConfig, generate  # noqa: E402
from recon.config import TrainConfig  # noqa: E402
from recon.train import resolve_preset, train  # noqa: E402

TINY = ["max_steps=2", "checkpoint_every=4", "log_every=4", "sampler.rays_per_batch=32", "sampler.frames_per_batch=2",
        "model.hand_prefit_steps=1", "model.object.n_coarse=5", "model.object.n_importance=3",
        "model.hand.n_coarse=5", "model.hand.n_importance=3", "model.losses.eikonal_random_points=16",
        "model.losses.hand_prior_points=32", "model.hand.prior_bank_size=256"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("run_dir")
    build = generate(SynthConfig(num_frames=4, width=32, height=32, seed=0, noise=EstimateNoise(drop_rate=0.0)),
                     root / "build", progress=False)
    run = root / "recon" / "fit"
    train(build, run, resolve_config(TrainConfig(), [resolve_preset("cpu_smoke")], TINY), progress=False)
    return build, run


def test_find_trained_run(trained, tmp_path):
    build, run = trained
    recon = run.parent
    assert find_trained_run(run) == run
    assert find_trained_run(recon) == run  # no final stage yet: fit
    final = tmp_path / "recon" / "final"
    shutil.copytree(run, final)
    assert find_trained_run(tmp_path / "recon") == final  # final wins
    (final / "checkpoints" / "model.pt").unlink()
    with pytest.raises(FileNotFoundError, match="unfinished training run"):
        find_trained_run(final)
    with pytest.raises(FileNotFoundError, match="neither a trained run"):
        find_trained_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_trained_run(tmp_path / "missing")


def test_load_trained_model_restores_weights_and_config(trained):
    build, run = trained
    loaded = load_trained_model(run.parent)  # via the reconstruction directory
    assert loaded.path == run and loaded.build == build.resolve() and loaded.poses_from is None
    assert loaded.config["max_steps"] == 2 and loaded.model.cfg.object.n_coarse == 5
    state = torch.load(run / "checkpoints" / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
    got = loaded.model.state_dict()
    assert set(got) == set(state)
    for k in state:
        assert torch.equal(got[k], state[k]), k
    assert not loaded.model.training
    # the trained poses (not the build's) are what the model now holds
    seq = load_sequence(build)
    assert not np.allclose(loaded.model.hands["right"].transl.detach().numpy(), seq.hands["right"].transl, atol=0)
    # and it renders deterministically
    a = loaded.model.render_image(1, downscale=8)["rgb"]
    b = load_trained_model(run).model.render_image(1, downscale=8)["rgb"]
    assert a.shape == (4, 4, 3) and np.array_equal(a, b)


def test_poses_from_is_honoured(trained, tmp_path):
    build, run = trained
    seq = load_sequence(build)
    copy = tmp_path / "fit"
    shutil.copytree(run, copy)
    info = json.loads((run / "run.json").read_text())
    poses = save_poses(tmp_path / "refine", seq)
    (copy / "run.json").write_text(json.dumps({**info, "poses_from": str(poses)}))
    assert load_trained_model(copy).poses_from == poses
    # a pose folder of another sequence (different frame count) is refused by name
    short = dataclasses.replace(seq, num_frames=3, hands={s: dataclasses.replace(
        h, global_orient=h.global_orient[:3], hand_pose=h.hand_pose[:3], transl=h.transl[:3], valid=h.valid[:3],
        keypoints_2d=None) for s, h in seq.hands.items()}, object=dataclasses.replace(
        seq.object, T_cam_from_obj=seq.object.T_cam_from_obj[:3], valid=seq.object.valid[:3]))
    save_poses(tmp_path / "other", short)
    (copy / "run.json").write_text(json.dumps({**info, "poses_from": str(tmp_path / "other")}))
    with pytest.raises(SequenceError, match="hands.npz"):
        load_trained_model(copy)
    # a build that moved away: one clear error naming run.json's field
    (copy / "run.json").write_text(json.dumps({**info, "build": str(tmp_path / "gone")}))
    with pytest.raises(FileNotFoundError, match="'build'"):
        load_trained_model(copy)


def test_render_run_neural_frames_use_the_loaded_model(trained, tmp_path):
    """render's neural part goes through load_trained_model: its frames equal render_image's output."""
    from render.cli import RenderConfig, render_run
    from hold.video import read_mp4

    build, run = trained
    copy = tmp_path / "fit"
    shutil.copytree(run, copy)
    shutil.copytree(build / "gt", copy / "pred", ignore=shutil.ignore_patterns("depth"))  # GT stands in for export
    cfg = RenderConfig(neural_frames=[1, 3], neural_downscale=8, rgb=False, normals=False, turntable_object=False,
                       turntable_frames=[0], turntable_views=2, turntable_size=16, meshes=False, glb=False)
    out = render_run(copy, cfg=cfg, progress=False)
    frames, _ = read_mp4(out["neural_mp4"])
    assert len(frames) == 2 and frames[0].shape == (32, 32, 3)
    from PIL import Image
    png = np.asarray(Image.open(out["neural_frames"] / "000003.png"))
    want = load_trained_model(copy).model.render_image(3, downscale=8)["rgb"]
    np.testing.assert_array_equal(png[::8, ::8], (np.clip(want, 0, 1) * 255).round().astype(np.uint8))
    info = json.loads(out["render_json"].read_text())["neural"]
    assert info["frames"] == [1, 3] and info["pixels_per_frame"] == 16 and info["cpu_s_per_frame"] > 0
