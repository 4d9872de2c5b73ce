"""`hold train`: refuses bad builds before training; a killed run resumes at the same step with the
same losses as an uninterrupted one; the run directory has what DESIGN.md lists."""
import json
import shutil

import numpy as np
import pytest

pl = pytest.importorskip("pytorch_lightning")

from hold.cli import main  # noqa: E402
from hold.config import resolve_config  # noqa: E402
from hold.synth.sequence import EstimateNoise, SynthConfig, generate  # noqa: E402
from recon.config import TrainConfig  # noqa: E402
from recon.train import resolve_preset, train  # noqa: E402

TINY = ["max_steps=12", "checkpoint_every=4", "log_every=4", "sampler.rays_per_batch=48", "sampler.frames_per_batch=2",
        "model.hand_prefit_steps=3", "model.object.n_coarse=6", "model.object.n_importance=4",
        "model.hand.n_coarse=6", "model.hand.n_importance=4", "model.losses.eikonal_random_points=32",
        "model.losses.hand_prior_points=64", "model.hand.prior_bank_size=512", "mesh_resolution=24"]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "build"
    return generate(SynthConfig(num_frames=4, width=40, height=32, seed=0, noise=EstimateNoise(drop_rate=0.0)),
                    out, progress=False)


def _cfg(*extra):
    return resolve_config(TrainConfig(), [resolve_preset("cpu_smoke")], TINY + list(extra))


class Recorder(pl.Callback):
    def __init__(self, crash_at: int | None = None):
        self.losses, self.crash_at = {}, crash_at

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses[trainer.global_step] = module.last_terms["loss"]
        if trainer.global_step == self.crash_at:
            raise RuntimeError("simulated kill")


def test_resume_after_a_kill_repeats_the_same_losses(build, tmp_path):
    straight = Recorder()
    train(build, tmp_path / "a", _cfg(), progress=False, callbacks=[straight])
    killed = Recorder(crash_at=6)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(build, tmp_path / "b", _cfg(), progress=False, callbacks=[killed])
    assert not (tmp_path / "b" / "checkpoints" / "model.pt").exists()  # not mistaken for finished
    resumed = Recorder()
    train(build, tmp_path / "b", _cfg(), progress=False, callbacks=[resumed])
    assert min(resumed.losses) == 5  # continued after the step-4 checkpoint
    for step in range(5, 13):
        assert np.isclose(resumed.losses[step], straight.losses[step], rtol=1e-5, atol=1e-7), step
    assert (tmp_path / "b" / "logs" / "fit" / "metrics.csv").exists()  # the killed segment's logs survive
    assert (tmp_path / "b" / "logs" / "fit_resumed_at_4" / "metrics.csv").exists()
    timings = json.loads((tmp_path / "b" / "timings.json").read_text())["fit"]
    assert timings["resumed_from_step"] == 4 and timings["steps"] == 8


def test_run_directory_layout_and_export(build, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(build), "--out", str(run), "--config", "cpu_smoke", "--quiet", *TINY]) == 0
    for name in ("config.yaml", "run.json", "timings.json", "checkpoints/model.pt", "checkpoints/last.ckpt",
                 "logs/fit/metrics.csv"):
        assert (run / name).exists(), name
    assert "max_steps: 12" in (run / "config.yaml").read_text()
    assert main(["export", str(run), "--quiet"]) == 0
    assert (run / "pred" / "hands.npz").exists() and (run / "metrics.json").exists()
    m = json.loads((run / "metrics.json").read_text())["metrics"]
    assert np.isfinite(m["mpjpe_ra_r"]) and "cd_obj" in m
    # a finished run is not trained again
    assert main(["train", str(build), "--out", str(run), "--config", "cpu_smoke", "--quiet", *TINY]) == 0
    assert "already trained" in capsys.readouterr().out


@pytest.mark.parametrize("fault", ["no_masks", "nan_pose", "no_frames"])
def test_bad_builds_stop_before_training(build, tmp_path, capsys, fault):
    bad = tmp_path / "bad"
    shutil.copytree(build, bad)
    if fault == "no_masks":
        shutil.rmtree(bad / "masks")
    elif fault == "nan_pose":
        with np.load(bad / "hands.npz") as d:
            arrays = dict(d)
        arrays["right/transl"][1, 0] = np.nan
        np.savez(bad / "hands.npz", **arrays)
    else:
        shutil.rmtree(bad / "images")
    assert main(["train", str(bad), "--out", str(tmp_path / "run"), "--config", "cpu_smoke", *TINY]) == 1
    err = capsys.readouterr().err
    assert "cannot be trained" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()
    want = {"no_masks": "masks", "nan_pose": "right/transl", "no_frames": "images"}[fault]
    assert want in err
