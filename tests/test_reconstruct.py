"""`hold reconstruct`: config sections and overrides, the stage plan, skip/redo by fingerprint, and a
tiny real pipeline that is interrupted inside stage `final`, resumed, and matches an uninterrupted run."""
import json
import shutil

import numpy as np
import pytest

from hold.reconstruct import (
    MissingApp, RunRecord, Stage, _execute, PipelineProgress, build_fingerprint, input_kind, plan_stages,
    require_apps, resolve_reconstruct_config,
)

pytest.importorskip("pytorch_lightning")


def test_config_sections_presets_and_overrides():
    cfg = resolve_reconstruct_config(["demo_quick"], ["fit.max_steps=7", "final.lr=0.002", "final_warm_start=false"])
    assert cfg.fit.max_steps == 7 and cfg.final.max_steps == 8  # the preset's, untouched by the fit override
    assert cfg.final.lr == 0.002 and cfg.final_warm_start is False
    assert cfg.fit.model.hand.prior_bank_size == 512  # nested preset values reach the TrainConfig
    with pytest.raises(ValueError, match="fit.no_such_key"):
        resolve_reconstruct_config([], ["fit.no_such_key=1"])
    with pytest.raises(ValueError, match="until='nope'"):
        resolve_reconstruct_config([], ["until=nope"])
    with pytest.raises(FileNotFoundError, match="demo_quick"):  # the error lists the presets
        resolve_reconstruct_config(["no_such_preset"])


def test_preprocess_step_sections_are_typed_configs():
    """`preprocess.hand_detect.*` (and mask_estimate / align) overrides give the step's config, not a dict."""
    from preprocess.align import AlignConfig
    from preprocess.hand_detect import HandDetectConfig
    from preprocess.mask_estimate import MaskEstimateConfig

    cfg = resolve_reconstruct_config([], ["preprocess.hands.side=left", "preprocess.hand_detect.static_image_mode=true",
                                          "preprocess.mask_estimate.box=[1,2,30,40]", "preprocess.align.hand_points=100"])
    p = cfg.preprocess
    assert isinstance(p.hand_detect, HandDetectConfig) and p.hand_detect.static_image_mode and p.hands.side == "left"
    assert isinstance(p.mask_estimate, MaskEstimateConfig) and tuple(p.mask_estimate.box) == (1.0, 2.0, 30.0, 40.0)
    assert isinstance(p.align, AlignConfig) and p.align.hand_points == 100
    assert resolve_reconstruct_config().preprocess.hand_detect is None  # the detector's defaults
    with pytest.raises(ValueError, match="no_such_key"):
        resolve_reconstruct_config([], ["preprocess.hand_detect.no_such_key=1"])


def test_stage_plan(tmp_path):
    assert plan_stages("build", "render", has_gt=True) == ["fit", "refine", "final", "export", "evaluate", "render"]
    assert plan_stages("video", "final", has_gt=False) == ["preprocess", "fit", "refine", "final"]
    assert plan_stages("images", "render", has_gt=False)[-2:] == ["export", "render"]  # no gt: no evaluate
    (tmp_path / "seq").mkdir()
    (tmp_path / "seq" / "sequence.json").write_text("{}")
    (tmp_path / "frames").mkdir()
    (tmp_path / "clip.mp4").write_bytes(b"x")
    assert [input_kind(tmp_path / n) for n in ("seq", "frames", "clip.mp4")] == ["build", "images", "video"]
    with pytest.raises(FileNotFoundError, match="missing"):
        input_kind(tmp_path / "missing")


def test_a_missing_app_is_one_clear_error(monkeypatch):
    import hold.reconstruct as rc

    monkeypatch.setitem(rc.APPS, "render", ("no_such_app.cli", "render_run"))
    with pytest.raises(MissingApp, match="stage 'render' needs no_such_app.cli.render_run.*until="):
        require_apps(["fit", "render"])
    require_apps(["fit", "export"])  # stages before it are fine


def test_stages_skip_when_done_and_redo_when_their_fingerprint_changes(tmp_path):
    calls = []
    out = tmp_path / "stage_out"

    def work():
        calls.append(1)
        out.mkdir(exist_ok=True)
        (out / "result.txt").write_text(str(len(calls)))
        return {"result": out / "result.txt"}

    record, display = RunRecord(tmp_path), PipelineProgress({}, enabled=False)
    stage = lambda fp: Stage("s", fp, lambda: (out / "result.txt").exists(), [out], work, 1.0)  # noqa: E731
    assert _execute(stage("a"), record, display, 1, 1, print) is True
    assert _execute(stage("a"), RunRecord(tmp_path), display, 1, 1, print) is False  # same inputs: skipped
    (out / "stale.txt").write_text("left by the old inputs")
    assert _execute(stage("b"), RunRecord(tmp_path), display, 1, 1, print) is True  # changed: redone from scratch
    assert len(calls) == 2 and not (out / "stale.txt").exists()
    shutil.rmtree(out)  # done marker gone (e.g. deleted by hand): redone even with the same fingerprint
    assert _execute(stage("b"), RunRecord(tmp_path), display, 1, 1, print) is True and len(calls) == 3
    data = json.loads((tmp_path / "reconstruct.json").read_text())["stages"]["s"]
    assert data["status"] == "done" and data["fingerprint"] == "b"
    assert "s" in json.loads((tmp_path / "timings.json").read_text())["stages_s"]


# --- the real pipeline on a tiny synthetic sequence -----------------------------------------------
@pytest.fixture(scope="module")
def build(tmp_path_factory):
    from hold.demo import synthesize

    return synthesize(tmp_path_factory.mktemp("recon") / "build", 4, (40, 32), 0, progress=False)


@pytest.fixture(scope="module")
def straight(build, tmp_path_factory):
    """An uninterrupted reconstruction (up to render when the render app is importable)."""
    pytest.importorskip("recon.refine")
    from hold.reconstruct import reconstruct

    try:
        import render.cli  # noqa: F401
        until = "render"
    except ImportError:
        until = "evaluate"
    run = tmp_path_factory.mktemp("recon") / "straight"
    cfg = resolve_reconstruct_config(["demo_quick"], [f"until={until}"])
    return run, reconstruct(build, run, cfg, progress=False), until


def _final_poses(run):
    import torch

    state = torch.load(run / "final" / "checkpoints" / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
    pose_keys = ("transl", "global_orient", "pose_delta", "log_scale")
    return {k: v.numpy() for k, v in state.items() if k.endswith(pose_keys)}


def test_pipeline_outputs_and_a_rerun_skips_everything(build, straight):
    from hold.reconstruct import reconstruct

    run, summary, until = straight
    assert list(summary["stages"]) == plan_stages("build", until, has_gt=True)
    for name in ("fit/checkpoints/model.pt", "refine/refine.json", "refine/hands.npz", "final/checkpoints/model.pt",
                 "final/meshes/object.ply", "final/pred/hands.npz", "metrics.json", "timings.json", "config.yaml"):
        assert (run / name).exists(), name
    final_json = json.loads((run / "final" / "run.json").read_text())
    assert final_json["poses_from"] == str(run / "refine")  # stage final trained over the refined poses
    assert final_json["init_from"] == str(run / "fit" / "checkpoints" / "model.pt")  # warm start is the default
    m = summary["metrics"]
    assert np.isfinite(m["cd_obj"]) and np.isfinite(m["mpjpe_ra_r"])
    if until == "render":
        assert any(str(p).endswith(".mp4") for p in summary["stages"]["render"]["outputs"].values())
    timings = json.loads((run / "timings.json").read_text())
    assert set(timings["stages_s"]) == set(summary["stages"]) and timings["total_s"] > 0
    again = reconstruct(build, run, resolve_reconstruct_config(["demo_quick"], [f"until={until}"]), progress=False)
    assert not any(s["ran"] for s in again["stages"].values())
    assert again["metrics"] == m


class Interrupt:
    """A Lightning callback standing in for Ctrl+C at a given step."""

    def __new__(cls, at_step: int):
        import pytorch_lightning as pl

        class _Interrupt(pl.Callback):
            def on_train_batch_end(self, trainer, *args):
                if trainer.global_step == at_step:
                    raise KeyboardInterrupt

        return _Interrupt()


def test_interrupted_in_final_resumes_and_matches_the_uninterrupted_run(build, straight, tmp_path):
    from hold.reconstruct import reconstruct

    ref, ref_summary, _ = straight
    run = tmp_path / "killed"
    # start from the same finished fit + refine (a run killed in final has exactly these on disk)
    run.mkdir()
    for stage in ("fit", "refine"):
        shutil.copytree(ref / stage, run / stage)
    record = json.loads((ref / "reconstruct.json").read_text())
    record["stages"] = {k: v for k, v in record["stages"].items() if k in ("fit", "refine")}
    (run / "reconstruct.json").write_text(json.dumps(record))
    # stage final must resume over THIS run's refine folder, so the copied refine is the one it reads
    cfg = resolve_reconstruct_config(["demo_quick"], ["until=evaluate"])
    with pytest.raises(KeyboardInterrupt, match="final"):
        reconstruct(build, run, cfg, progress=False, train_callbacks={"final": [Interrupt(6)]})
    stages = json.loads((run / "reconstruct.json").read_text())["stages"]
    assert stages["final"]["status"] == "running" and not (run / "final" / "checkpoints" / "model.pt").exists()
    resumed = reconstruct(build, run, cfg, progress=False)
    assert not resumed["stages"]["fit"]["ran"] and not resumed["stages"]["refine"]["ran"]  # not redone
    assert resumed["stages"]["final"]["ran"]
    assert json.loads((run / "final" / "timings.json").read_text())["fit"]["resumed_from_step"] == 4
    got, want = _final_poses(run), _final_poses(ref)
    assert set(got) == set(want) and got
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-5, err_msg=k)
    for k in ("cd_obj", "mpjpe_ra_r", "cd_h"):
        assert resumed["metrics"][k] == pytest.approx(ref_summary["metrics"][k], rel=1e-3, abs=1e-6), k


def test_build_fingerprint_follows_content(build, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(build, copy)
    assert build_fingerprint(copy) == build_fingerprint(build)  # content, not paths or times
    with np.load(copy / "hands.npz") as d:
        arrays = dict(d)
    arrays["right/transl"][0, 0] += 1e-3
    np.savez(copy / "hands.npz", **arrays)
    assert build_fingerprint(copy) != build_fingerprint(build)


def test_cli_bad_input_is_one_clear_line(tmp_path, capsys):
    from hold.cli import main

    assert main(["reconstruct", str(tmp_path / "no_video.mp4"), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hold reconstruct: error:") and "no_video.mp4" in err and "Traceback" not in err
    assert main(["reconstruct", str(tmp_path), "--out", str(tmp_path / "run"), "fit.bogus=1"]) == 1
    assert "fit.bogus" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written for a command that could not start
