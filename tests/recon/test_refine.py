"""Stage `refine` on a small synthetic sequence with emulated noisy estimates.

The fit run is made without training: the build's (noisy) poses, the hand model as the hand
surface, and an object SDF field pre-fitted for a few hundred steps to the ground-truth mesh's SDF
(a "trained-like" field). Refinement must bring the poses closer to the truth.
"""
import json

import numpy as np
import pytest
import torch
import trimesh

from hold.config import resolve_config, to_yaml
from hold.data import load_sequence
from hold.data.groundtruth import load_trajectory
from hold.data.io import atomic_write_json
from hold.data.poses import with_poses_from
from hold.synth.sdf import MeshSDF
from hold.synth.sequence import EstimateNoise, SynthConfig, generate

pytest.importorskip("pytorch_lightning")

from recon.config import TrainConfig  # noqa: E402
from recon.refine import RefineConfig, RefineProblem, refine, refine_command  # noqa: E402
from recon.train import build_model, resolve_preset  # noqa: E402

FIT_OVERRIDES = ["model.object.sdf.encoding=frequency", "model.hand.prior_bank_size=512"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small tensors: one thread is several times faster than two on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("refine")
    # smooth motion (a steady turn, as at video frame rates) and SfM-like object pose noise
    noise = EstimateNoise(drop_rate=0.0, object_rot_deg=4.0, object_transl_m=0.005)
    build = generate(SynthConfig(num_frames=8, width=96, height=96, seed=0, yaw_range_deg=40.0, pitch_amp_deg=0.0,
                                 roll_amp_deg=0.0, transl_amp_m=0.0, noise=noise), root / "build", progress=False)
    cfg = resolve_config(TrainConfig(), [resolve_preset("cpu_smoke")], FIT_OVERRIDES)
    torch.manual_seed(0)  # field initialisation
    model, _ = build_model(build, cfg)
    seq, gt = load_sequence(build), load_trajectory(build / "gt")
    radius = seq.object.scale  # synthetic builds: canonical object = GT mesh / radius
    sdf = MeshSDF(trimesh.Trimesh(gt.object.vertices, gt.object.faces, process=False))
    rng = np.random.default_rng(0)
    u = rng.normal(size=(6000, 3))
    u *= rng.uniform(size=(6000, 1)) ** (1 / 3) / np.linalg.norm(u, axis=1, keepdims=True)
    near = seq.object.points[rng.integers(0, len(seq.object.points), 6000)] + rng.normal(size=(6000, 3)) * 0.03
    x = np.concatenate([u, near]).astype(np.float32)
    y = torch.as_tensor(sdf(x * radius) / radius, dtype=torch.float32)
    x = torch.as_tensor(x)
    opt = torch.optim.Adam(model.object.sdf.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        idx = torch.randint(0, len(x), (2048,), generator=g)
        loss = (model.object.sdf(x[idx])[0] - y[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    run = root / "fit"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": model.state_dict()}, run / "checkpoints" / "model.pt")
    (run / "config.yaml").write_text(to_yaml(cfg))
    atomic_write_json(run / "run.json", {"build": str(build), "poses_from": None})
    return run


@pytest.fixture(scope="module")
def refined(fit_run):
    out = fit_run.parent / "refine"
    refine(fit_run, out, RefineConfig(steps=100), progress=False)
    return out


def test_refine_brings_poses_closer_to_the_truth(refined):
    report = json.loads((refined / "refine.json").read_text())
    b, a = report["metrics"]["before"], report["metrics"]["after"]
    lb, la = report["losses"]["before"], report["losses"]["after"]
    print("\nrefine before -> after:")
    for k in b:
        print(f"  {k:26s} {b[k]:9.3f} -> {a[k]:9.3f}")
    for k in ("keypoint_err_px", "penetration", "penetration_max_m", "total"):
        print(f"  {k:26s} {lb[k]:9.4g} -> {la[k]:9.4g}")
    assert a["obj_rot_err_abs_deg"] < b["obj_rot_err_abs_deg"]
    assert a["obj_rot_err_deg"] < b["obj_rot_err_deg"]
    assert a["obj_center_err_mm"] < b["obj_center_err_mm"]
    assert a["hand_right_root_err_mm"] < 0.7 * b["hand_right_root_err_mm"]
    assert la["penetration_max_m"] < 0.5 * lb["penetration_max_m"] and la["penetration"] < lb["penetration"]
    assert la["keypoint_err_px"] < lb["keypoint_err_px"]
    assert la["total"] < lb["total"]
    assert abs(np.log(report["object_scale"]["after"] / report["object_scale"]["before"])) < 0.1


def test_outputs_follow_the_contract(refined, fit_run):
    report = json.loads((refined / "refine.json").read_text())
    assert (refined / "qa" / "before_after.mp4").stat().st_size > 1000
    assert not list(refined.rglob(".*tmp*"))
    build = report["build"]
    seq = load_sequence(build)
    new = with_poses_from(seq, refined)  # same keys and shapes as the build's hands.npz / object.npz
    with np.load(f"{build}/hands.npz") as h0, np.load(refined / "hands.npz") as h1:
        assert sorted(h0.files) == sorted(h1.files)
        np.testing.assert_array_equal(h0["right/hand_pose"], h1["right/hand_pose"])  # fingers off by default
        assert np.abs(h0["right/transl"] - h1["right/transl"]).max() > 1e-3  # the poses did move
    assert new.object.scale == pytest.approx(report["object_scale"]["after"])
    assert set(report["timings"]) >= {"load_s", "optimize_s", "total_s", "device"}
    assert report["config"]["steps"] == 100 and report["hands"] == ["right"]


def test_rigid_shortcut_matches_the_hand_model(fit_run):
    from recon.export import load_run

    model, _, build = load_run(fit_run)
    model.requires_grad_(False)
    problem = RefineProblem(model, load_sequence(build), RefineConfig(object_mesh_resolution=24), "cpu")
    var = problem.variables()
    with torch.no_grad():
        var.hand_rot["right"][:] = torch.randn(8, 3) * 0.2
        var.hand_transl["right"][:] = torch.randn(8, 3) * 0.01
        frames = torch.tensor([1, 5])
        posed = problem.pose(var, frames)
        node = model.hands["right"]
        rig = problem.hands["right"]
        from hold.geometry.rotations import matrix_to_axis_angle

        full = node.model(matrix_to_axis_angle(posed.hand_R["right"]), node.hand_pose[frames],
                          node.betas.expand(2, -1), posed.hand_transl["right"])
    assert torch.allclose(posed.hand_keypoints["right"], full.keypoints, atol=1e-5)
    assert torch.allclose(posed.hand_points["right"], full.vertices[:, rig.points], atol=1e-5)


def test_rerun_is_a_no_op_and_cli(refined, fit_run, capsys):
    stamp = (refined / "refine.json").stat().st_mtime_ns
    refine(fit_run, refined, RefineConfig(steps=100), progress=True)
    assert (refined / "refine.json").stat().st_mtime_ns == stamp
    assert "up to date" in capsys.readouterr().out
    out = fit_run.parent / "refine_cli"
    args = ["steps=3", "qa_video=false", "refine_fingers=true", "batch_frames=3"]
    assert refine_command([str(fit_run), "--out", str(out), "--quiet", *args]) == 0
    report = json.loads((out / "refine.json").read_text())
    assert report["config"]["steps"] == 3 and report["timings"]["steps"] == 9  # batches of 3, 3 and 2 frames
    assert not (out / "qa").exists()
    with np.load(f"{report['build']}/hands.npz") as h0, np.load(out / "hands.npz") as h1:
        moved = np.abs(h0["right/hand_pose"] - h1["right/hand_pose"]).max(axis=1)
        assert (moved > 1e-4).all()  # every batch refined its frames' finger poses
    with pytest.raises(ValueError, match="steps"):
        refine_command([str(fit_run), "--out", str(out), "steps=many"])
    with pytest.raises(FileNotFoundError, match="not a finished training run"):
        refine(out, out / "x")


def test_object_rotation_prior_is_a_gaussian_on_the_correction(fit_run):
    """The prior adds w |dw|² per frame (mean over frames) for the object's rotation correction dw,
    and nothing at the fit's rotation; off when object rotation is not refined."""
    from recon.export import load_run

    model, _, build = load_run(fit_run)
    model.requires_grad_(False)
    seq = load_sequence(build)
    cfg = RefineConfig(object_mesh_resolution=24, w_object_rotation_prior=7.0)
    problem = RefineProblem(model, seq, cfg, "cpu")
    frames = torch.arange(8)
    var = problem.variables()
    t0 = problem.terms(problem.pose(var, frames), frames)
    assert torch.equal(t0["object_rotation_prior"], torch.zeros(8))
    dw = torch.randn(8, 3, generator=torch.Generator().manual_seed(0)) * 0.05
    with torch.no_grad():
        var.obj_rot[:] = dw
        t1 = problem.terms(problem.pose(var, frames), frames)
        assert torch.allclose(t1["object_rotation_prior"], dw.square().sum(-1))
        no_prior = {k: v for k, v in t1.items() if k != "object_rotation_prior"}
        extra = float(problem.total(t1) - problem.total(no_prior))  # float32 totals of ~10: 1e-4 absolute
    assert extra == pytest.approx(7.0 * float(dw.square().sum(-1).mean()), abs=1e-4)
    off = RefineProblem(model, seq, RefineConfig(object_mesh_resolution=24, refine_object_rotation=False), "cpu")
    with torch.no_grad():
        assert "object_rotation_prior" not in off.terms(off.pose(var, frames), frames)


@pytest.mark.parametrize("f", [1, 2, 3, 4])
def test_working_pixels_match_the_subsampled_masks(f):
    """Label maps are subsampled as labels[f // 2::f]: original pixel f i + f // 2 is working pixel i,
    so its centre must land on i + 0.5 (uv / f put it half an original pixel off for even f)."""
    from recon.refine import to_working_pixels

    i = torch.arange(5, dtype=torch.float64)
    uv = torch.stack([f * i + f // 2 + 0.5, f * (i + 1) + f // 2 + 0.5], -1)
    assert torch.allclose(to_working_pixels(uv, f), torch.stack([i + 0.5, i + 1.5], -1))
