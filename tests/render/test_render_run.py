"""`hold render` on a fake run whose exported meshes ARE the ground truth: the rendered object/hand
silhouettes must coincide with the build's masks, every output must exist with the right frame counts
and sizes, and the animated GLB must round-trip."""
import json
import shutil

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation
import trimesh

from hold.data import load_sequence
from hold.data.io import atomic_write_json
from hold.mesh_io import read_mesh, write_mesh
from hold.synth.sequence import EstimateNoise, SynthConfig, generate
from render.cli import RenderConfig, main, parse_frames, render_run
from hold.video import read_mp4
from tests.render.gltf_check import accessor_array, read_glb, validate_gltf

W, H, T = 41, 32, 4  # odd width: the mp4 must be padded to 42


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "build"
    return generate(SynthConfig(num_frames=T, width=W, height=H, seed=1, noise=EstimateNoise(drop_rate=0.0)),
                    out, progress=False)


def gt_run(build, root):
    """A trained-run folder whose export is the exact ground truth (meshes/ with colours, pred/ = gt/)."""
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    # mesh renders read only the learned background from the checkpoint: a flat one (logit 0 = grey 0.5)
    torch.save({"state_dict": {"background.logits": torch.zeros(H, W, 3)}}, run / "checkpoints" / "model.pt")
    (run / "config.yaml").write_text("max_steps: 1\n")
    atomic_write_json(run / "run.json", {"build": str(build), "poses_from": None})
    shutil.copytree(build / "gt", run / "pred", ignore=shutil.ignore_patterns("depth"))
    v, f, _ = read_mesh(build / "gt" / "object_mesh.ply")
    rng = np.random.default_rng(0)
    write_mesh(run / "meshes" / "object.ply", v, f, rng.integers(0, 256, (len(v), 4)).astype(np.uint8))
    with np.load(build / "gt" / "hands.npz") as d:
        hv, hf = d["right/vertices"], d["right/faces"]
    write_mesh(run / "meshes" / "hand_right.ply", hv[0], hf, np.full((hv.shape[1], 3), 0.8))
    return run


CHEAP = dict(neural=False, turntable_views=6, turntable_size=48)


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_overlay_and_masks_coincide_with_ground_truth(build, tmp_path):
    run = gt_run(build, tmp_path)
    out = render_run(run, cfg=RenderConfig(**CHEAP), progress=False)
    assert out["render_json"] == run / "render" / "render.json"  # default output folder
    seq = load_sequence(build)
    for t in range(T):
        gt = seq.load_mask(t)
        known = gt != 255
        from PIL import Image
        rendered = np.asarray(Image.open(out["masks"] / f"{t:06d}.png"))
        assert iou((rendered == 1) & known, (gt == 1) & known) > 0.9, t
        assert iou((rendered == 2) & known, (gt == 2) & known) > 0.9, t
        overlay = np.asarray(Image.open(out["overlay_frames"] / f"{t:06d}.png"))
        image = seq.load_image(t)
        changed = np.abs(overlay.astype(int) - image.astype(int)).max(-1) > 8
        # the tint is where the meshes are: inside their silhouette, and nowhere beyond its anti-aliased edge
        drawn = rendered > 0
        assert changed[drawn].mean() > 0.95
        assert not (changed & ~binary_dilation(drawn, iterations=1)).any()
        obj = rendered == 1
        # orange object tint: red up, blue down relative to the frame
        d = overlay[obj].astype(int) - image[obj].astype(int)
        assert (d[:, 0] - d[:, 2]).mean() > 40
    for name in ("overlay", "rgb", "normals"):
        frames, fps = read_mp4(out[f"{name}_mp4"])
        assert len(frames) == T and frames[0].shape == (H, W + 1, 3) and fps == 10.0
        assert len(list(out[f"{name}_frames"].glob("*.png"))) == T
    info = json.loads(out["render_json"].read_text())
    assert info["frames"] == list(range(T)) and info["wall_s"]["total"] > 0
    # turntables: the canonical object and first / middle / last frame, CHEAP["turntable_views"] views each
    for name in ("turntable_object", "turntable_000000", "turntable_000002", "turntable_000003"):
        frames, _ = read_mp4(out[f"{name}_mp4"])
        assert len(frames) == 6 and frames[0].shape == (48, 48, 3)
        assert (np.abs(frames[0].astype(int) - 235).max(-1) > 30).mean() > 0.05  # something is drawn
    # posed meshes per frame: exactly the ground truth vertices, with colours
    traj_v = np.load(build / "gt" / "hands.npz")["right/vertices"]
    for t in range(T):
        v, _, c = read_mesh(out["meshes"] / f"{t:06d}_hand_right.ply")
        np.testing.assert_allclose(v, traj_v[t], atol=1e-6)
        assert c is not None
        assert (out["meshes"] / f"{t:06d}_object.obj").stat().st_size > 0


def test_animated_glb_round_trip(build, tmp_path):
    run = gt_run(build, tmp_path)
    frames = [0, 2, 3]
    out = render_run(run, tmp_path / "r", RenderConfig(frames=frames, rgb=False, normals=False, turntable_object=False,
                                                       turntable_frames=[1], png=False, meshes=False, **CHEAP),
                     progress=False)
    assert "overlay_frames" not in out and len(read_mp4(out["overlay_mp4"])[0]) == 3
    data = out["glb"].read_bytes()
    gltf, blob = read_glb(data)
    assert validate_gltf(gltf, blob) == []
    with np.load(build / "gt" / "object.npz") as d:
        T_obj = d["T_cam_from_obj"][frames].astype(np.float64)
    hands = np.load(build / "gt" / "hands.npz")["right/vertices"][frames]
    anim = gltf["animations"][0]
    node_names = [n["name"] for n in gltf["nodes"]]
    by_path = {(node_names[c["target"]["node"]], c["target"]["path"]): anim["samplers"][c["sampler"]]
               for c in anim["channels"]}
    times = accessor_array(gltf, blob, by_path["object", "translation"]["input"])[:, 0]
    np.testing.assert_allclose(times, np.arange(3) / 10.0, atol=1e-7)  # key k at k / fps
    transl = accessor_array(gltf, blob, by_path["object", "translation"]["output"])
    np.testing.assert_allclose(transl, T_obj[:, :3, 3], atol=1e-6)
    # the hand: base + the target switched on at each key = the posed vertices of that frame
    hand_mesh = gltf["meshes"][gltf["nodes"][node_names.index("hand_right")]["mesh"]]
    prim = hand_mesh["primitives"][0]
    base = accessor_array(gltf, blob, prim["attributes"]["POSITION"])
    w = accessor_array(gltf, blob, by_path["hand_right", "weights"]["output"]).reshape(3, 2)
    targets = np.stack([accessor_array(gltf, blob, tg["POSITION"]) for tg in prim["targets"]])
    for k in range(3):
        np.testing.assert_allclose(base + np.tensordot(w[k], targets, 1), hands[k], atol=1e-6)
    # trimesh reads it: the object at frame 0 sits where the camera saw it (root turns OpenCV to y-up)
    scene = trimesh.load(out["glb"], file_type="glb")
    flip = np.diag([1.0, -1.0, -1.0])
    v_obj, _, _ = read_mesh(build / "gt" / "object_mesh.ply")
    geoms = scene.dump(concatenate=False)  # in world coordinates (node transforms applied)
    assert sorted(len(g.vertices) for g in geoms) == sorted([len(v_obj), hands.shape[1]])
    world = [g for g in geoms if len(g.vertices) == len(v_obj)][0]
    want = (v_obj.astype(np.float64) @ T_obj[0, :3, :3].T + T_obj[0, :3, 3]) @ flip.T
    np.testing.assert_allclose(world.vertices, want, atol=1e-5)
    # a corrupted file is caught by the validator
    bad = json.loads(json.dumps(gltf))
    inp = by_path["object", "translation"]["input"]
    bad["accessors"][inp]["max"] = [0.0]
    assert any("min/max" in p for p in validate_gltf(bad, blob))


def test_cli_errors_and_frame_parsing(build, tmp_path, capsys):
    assert parse_frames("0:4:2", 4) == [0, 2] and parse_frames("3,1", 4) == [1, 3] and parse_frames("-1", 4) == [3]
    with pytest.raises(ValueError, match="outside"):
        parse_frames("7", 4)
    # a reconstruction directory renders its fit stage (no final yet) into RUN/render
    run = gt_run(build, tmp_path)
    recon = tmp_path / "recon"
    recon.mkdir()
    shutil.move(run, recon / "fit")
    assert main([str(recon), "--quiet", "--no-neural", "--no-meshes", "--no-png", "--turntable-views", "2",
                 "--turntable-size", "16", "--frames", "1:3"]) == 0
    assert len(read_mp4(recon / "render" / "overlay.mp4")[0]) == 2
    assert json.loads((recon / "render" / "render.json").read_text())["run"] == str(recon / "fit")
    run = recon / "fit"
    shutil.rmtree(run / "pred")
    assert main([str(run), "--quiet", "--no-neural"]) == 1
    err = capsys.readouterr().err
    assert "hold export" in err and "Traceback" not in err
    assert main([str(tmp_path / "nothing"), "--quiet"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_neural_render_loads_the_model_once_and_its_background_feeds_the_rgb(build, tmp_path, monkeypatch):
    import render.cli as cli
    from hold.model import HoldModel
    from hold.run_dir import model_config

    run = gt_run(build, tmp_path)
    small = {"n_levels": 2, "log2_hashmap_size": 8, "max_resolution": 16}
    config = {"model": {"object": {"n_coarse": 4, "n_importance": 2, "sdf": {"hash_grid": small}},
                        "hand": {"n_coarse": 4, "n_importance": 2, "prior_bank_size": 64, "sdf": {"hash_grid": small}}}}
    (run / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    model = HoldModel(load_sequence(build), model_config(config))
    with torch.no_grad():
        model.background.logits.fill_(-1.0)  # a dark grey that the checkpoint-only path never sees
    torch.save({"state_dict": model.state_dict()}, run / "checkpoints" / "model.pt")
    # with the neural render on, the background comes from the loaded model, not a second checkpoint read
    monkeypatch.setattr(cli, "_checkpoint_background_logits", lambda run: pytest.fail("checkpoint read twice"))
    out = render_run(run, tmp_path / "r", RenderConfig(**{**CHEAP, "neural": True, "neural_downscale": 4},
                                                       normals=False, meshes=False, glb=False),
                     progress=False)
    frames, _ = read_mp4(out["neural_mp4"])
    assert len(frames) == 1 and frames[0].shape == (H, W + 1, 3)  # upsampled (nearest) and cropped to W x H
    info = json.loads(out["render_json"].read_text())
    assert info["neural"]["frames"] == [T // 2]
    assert info["neural"]["pixels_per_frame"] == 8 * 11  # ceil(32 / 4) x ceil(41 / 4)
    assert info["neural"]["cpu_s_per_frame"] > 0 and "neural_load" in info["wall_s"]
    from PIL import Image

    rgb = np.asarray(Image.open(out["rgb_frames"] / "000000.png"))
    drawn = np.asarray(Image.open(out["masks"] / "000000.png")) > 0
    empty = ~binary_dilation(drawn, iterations=1)  # beyond the anti-aliased edge
    assert empty.any() and (np.abs(rgb[empty].astype(int) - round(255 / (1 + np.e))) <= 1).all()  # sigmoid(-1)
