"""`hold render RUN`: videos, frames, turntables, per-frame meshes and an animated GLB of a trained run.

RUN is a trained run or a reconstruction directory (then RUN/final, else RUN/fit is rendered); the
run must have been exported (`hold export`, which `hold reconstruct` runs before rendering).
Everything is written under OUT (default RUN/render):

  overlay.mp4  overlay/<frame>.png   hand/object meshes (flat colours, lit) over the input frames
  rgb.mp4      rgb/<frame>.png       mesh re-render with the colour field's vertex colours over the
                                     learned background (the cheap per-frame RGB)
  normals.mp4  normals/<frame>.png   camera-frame normal maps (normal-map colours, render.raster.normals_to_rgb)
  masks/<frame>.png                  rendered labels (build mask values: 1 object, 2 right hand, 3 left hand)
  neural.mp4   neural/<frame>.png    the neural volume render (HoldModel.render_image) on chosen frames,
                                     at a downscale (slow on CPU: see docs/render.md)
  turntable_object.mp4 (+ frames/)   the canonical object spun about the vertical axis
  turntable_<frame>.mp4 (+ frames/)  the posed hand + object of a frame, spun
  meshes/<frame>_<entity>.{ply,obj}  posed meshes per frame with vertex colours (camera frame, metres)
  animation.glb                      one animated glTF: the object with a node animation, each hand with
                                     per-frame morph targets, the video camera
  render.json                        config, frames, outputs and wall time per part

No display or GPU is needed (pyrender EGL offscreen; Mesa's software rasterizer on CPU machines).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from hold.data.io import atomic_write_json, write_mask
from hold.mesh_io import write_mesh
from hold.progress import track
from hold.run_dir import MODEL_PT, TrainedRun, find_trained_run, load_trained_model
from hold.synth.render import composite
from render.gltf_anim import write_animated_glb
from render.raster import CameraMesh, MeshRasterizer, OffscreenUnavailable
from render.scene import RunScene, load_run_scene
from render.turntable import turntable_intrinsics, turntable_poses
from hold.video import write_frames, write_mp4


@dataclass
class RenderConfig:
    """What `hold render` produces and at which cost."""

    frames: list[int] | None = None
    """Frame indices to render (None = every frame)."""
    fps: float | None = None
    """Frame rate of the per-frame videos (frames per second; None = the build's fps, else 10)."""
    overlay_opacity: float = 0.6
    """Opacity of the coloured meshes over the input frames (0 = invisible, 1 = opaque)."""
    normals: bool = True
    """Write the normal maps."""
    rgb: bool = True
    """Write the mesh-based RGB re-render (vertex colours over the learned background)."""
    neural: bool = True
    """Render the neural volume render on `neural_frames` (slow on CPU)."""
    neural_frames: list[int] | None = None
    """Frames for the neural render (None = the middle rendered frame)."""
    neural_downscale: int = 8
    """Render every n-th pixel in x and y for the neural render (1 = full resolution; cost ~ 1/n^2).
    8 keeps the default render stage of a 20-frame 256^2 sequence under ~30 CPU seconds (docs/render.md)."""
    neural_chunk: int = 4096
    """Rays per batch of the neural render (memory vs speed)."""
    device: str = "cpu"
    """Device of the neural render ('cpu' or 'cuda')."""
    turntable_frames: list[int] | None = None
    """Frames whose posed hand + object get a turntable (None = first, middle and last rendered frame)."""
    turntable_object: bool = True
    """Write the turntable of the canonical object."""
    turntable_views: int = 36
    """Views per full turn."""
    turntable_size: int = 256
    """Turntable image width = height (pixels)."""
    turntable_fps: float = 12.0
    """Frame rate of the turntable videos (frames per second)."""
    meshes: bool = True
    """Write posed per-frame meshes (PLY + OBJ with vertex colours)."""
    glb: bool = True
    """Write the animated GLB."""
    png: bool = True
    """Write PNG frames next to every mp4."""
    crf: int = 18
    """x264 quality (0 lossless .. 51 worst; 18 ~ visually lossless)."""


def parse_frames(text: str, num_frames: int, what: str = "--frames") -> list[int]:
    """'3', '0,5,9', '0:20' or '0:20:2' (python slice, end exclusive; negatives count from the end)."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [int(p) if p.strip() else None for p in text.split(":")]
            if len(parts) > 3:
                raise ValueError
            out = list(range(num_frames))[slice(*parts)]
        else:
            out = [int(p) for p in text.split(",") if p.strip()]
            out = [i + num_frames if i < 0 else i for i in out]
    except ValueError:
        raise ValueError(f"{what} {text!r}: expected frame indices like '5', '0,5,9' or a slice '0:20:2'.") from None
    return check_frames(out, num_frames, what)


def check_frames(frames: list[int], num_frames: int, what: str) -> list[int]:
    bad = [i for i in frames if not 0 <= i < num_frames]
    if bad or not frames:
        raise ValueError(f"{what}: frames {bad or frames} are outside the sequence's 0..{num_frames - 1}; "
                         f"pick indices in that range.")
    return sorted(set(int(i) for i in frames))


def _checkpoint_background_logits(run: Path):
    """The learned background logits (H,W,3) of a run's checkpoint, read without rebuilding the model
    (None when it has none)."""
    import torch

    try:
        state = torch.load(run / MODEL_PT, map_location="cpu", weights_only=False).get("state_dict", {})
    except Exception as e:  # truncated / foreign file
        raise ValueError(f"{run / MODEL_PT}: cannot be read as a `hold train` checkpoint ({type(e).__name__}: "
                         f"{e}); re-run the training command (it rewrites it).") from None
    return state.get("background.logits")


def _background(logits, H: int, W: int) -> np.ndarray:
    """The learned background image (H,W,3) uint8 of its logits (mid grey when there are none)."""
    import torch

    if logits is None or tuple(logits.shape) != (H, W, 3):
        return np.full((H, W, 3), 128, np.uint8)
    return (torch.sigmoid(logits.detach().float().cpu()).numpy() * 255).round().astype(np.uint8)


class _Timer:
    """Wall and process CPU seconds per named part (CPU time: what the part costs on a shared machine)."""

    def __init__(self):
        self.s: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t0, self.c0 = time.perf_counter(), time.process_time()

            def __exit__(self, *exc):
                timer.s[name] = round(timer.s.get(name, 0.0) + time.perf_counter() - self.t0, 3)
                timer.cpu[name] = round(timer.cpu.get(name, 0.0) + time.process_time() - self.c0, 3)

        return _Ctx()


def _video(out: Path, name: str, frames: dict[int, np.ndarray], fps: float, cfg: RenderConfig,
           result: dict[str, Path]) -> None:
    result[f"{name}_mp4"] = write_mp4(out / f"{name}.mp4", [frames[i] for i in sorted(frames)], fps, cfg.crf)
    if cfg.png:
        write_frames(out / name, frames)
        result[f"{name}_frames"] = out / name


def _per_frame(scene: RunScene, frames: list[int], cfg: RenderConfig, background: np.ndarray, out: Path,
               fps: float, result: dict[str, Path], timer: _Timer, progress: bool) -> None:
    """Overlay, RGB re-render, normals and label masks of every chosen frame (one rasterizer)."""
    W, H = scene.seq.intrinsics.image_size
    overlay, rgb, normals = {}, {}, {}
    colors = scene.overlay_colors()
    with timer("per_frame_raster"), MeshRasterizer(scene.seq.intrinsics.K, W, H) as r:
        for t in track(frames, "render: frames", len(frames), enabled=progress):
            meshes = scene.meshes(t)
            overlay[t] = composite(r.shaded(meshes, colors), scene.seq.load_image(t), cfg.overlay_opacity)
            if cfg.rgb:
                rgb[t] = composite(r.shaded(meshes), background)
            if cfg.normals:
                normals[t] = composite(r.normals(meshes), np.zeros((H, W, 3), np.uint8))
            write_mask(out / "masks" / f"{t:06d}.png", r.labels(meshes)[0])
    result["masks"] = out / "masks"
    with timer("per_frame_encode"):
        _video(out, "overlay", overlay, fps, cfg, result)
        if cfg.rgb:
            _video(out, "rgb", rgb, fps, cfg, result)
        if cfg.normals:
            _video(out, "normals", normals, fps, cfg, result)


def _turntables(scene: RunScene, frames: list[int], cfg: RenderConfig, out: Path, result: dict[str, Path],
                timer: _Timer, progress: bool) -> None:
    size = int(cfg.turntable_size)
    K = turntable_intrinsics(size)
    backdrop = np.full((size, size, 3), 235, np.uint8)
    groups: dict[str, list[CameraMesh]] = {}
    if cfg.turntable_object and scene.object is not None:
        o = scene.object
        R0 = o.T_cam_from_obj[frames[0], :3, :3]  # start as the object is seen in the first rendered frame
        groups["turntable_object"] = [CameraMesh((o.vertices_obj @ R0.T).astype(np.float32), o.faces, o.colors, 1)]
    tt_frames = cfg.turntable_frames
    if tt_frames is None:
        tt_frames = sorted({frames[0], frames[len(frames) // 2], frames[-1]})
    for t in check_frames(list(tt_frames), scene.num_frames, "turntable_frames"):
        groups[f"turntable_{t:06d}"] = scene.meshes(t)
    with timer("turntables"), MeshRasterizer(K, size, size) as r:
        for name, meshes in track(list(groups.items()), "render: turntables", len(groups), enabled=progress):
            pts = np.concatenate([m.vertices for m in meshes if len(m.faces)] or [np.zeros((1, 3))])
            rgba = r.shaded_views(meshes, turntable_poses(pts, K, size, cfg.turntable_views))
            views = {k: composite(v, backdrop) for k, v in enumerate(rgba)}
            _video(out, name, views, cfg.turntable_fps, cfg, result)


def _neural(trained: TrainedRun, frames: list[int], cfg: RenderConfig, out: Path, fps: float,
            result: dict[str, Path], timer: _Timer, progress: bool) -> dict:
    chosen = cfg.neural_frames if cfg.neural_frames is not None else [frames[len(frames) // 2]]
    chosen = check_frames(list(chosen), trained.model.num_frames, "neural_frames")
    W, H = trained.model.image_size
    s = max(1, int(cfg.neural_downscale))
    images, per_frame = {}, []
    with timer("neural_render"):
        for t in track(chosen, f"render: neural (1/{s} res)", len(chosen), enabled=progress):
            t0, c0 = time.perf_counter(), time.process_time()
            o = trained.model.render_image(t, chunk=int(cfg.neural_chunk), downscale=s)
            per_frame.append((time.perf_counter() - t0, time.process_time() - c0))
            small = (np.clip(o["rgb"], 0, 1) * 255).round().astype(np.uint8)
            images[t] = np.repeat(np.repeat(small, s, 0), s, 1)[:H, :W]  # nearest upsampling to the video size
    _video(out, "neural", images, fps, cfg, result)
    return {"frames": chosen, "downscale": s, "pixels_per_frame": int(np.ceil(H / s) * np.ceil(W / s)),
            "wall_s_per_frame": round(float(np.mean([p[0] for p in per_frame])), 3),
            "cpu_s_per_frame": round(float(np.mean([p[1] for p in per_frame])), 3)}


def _meshes_and_glb(scene: RunScene, frames: list[int], cfg: RenderConfig, out: Path, fps: float,
                    result: dict[str, Path], timer: _Timer, progress: bool) -> None:
    if cfg.meshes:
        with timer("meshes"):
            for t in track(frames, "render: meshes", len(frames), enabled=progress):
                for m in scene.meshes(t):
                    name = "object" if m.label == 1 else f"hand_{'right' if m.label == 2 else 'left'}"
                    for ext in ("ply", "obj"):
                        write_mesh(out / "meshes" / f"{t:06d}_{name}.{ext}", m.vertices, m.faces, m.colors)
        result["meshes"] = out / "meshes"
    if cfg.glb:
        with timer("glb"):
            obj = None
            if scene.object is not None:
                obj = replace(scene.object, T_cam_from_obj=scene.object.T_cam_from_obj[frames])
            hands = {s: replace(h, vertices_cam=h.vertices_cam[frames]) for s, h in scene.hands.items()}
            result["glb"] = write_animated_glb(out / "animation.glb", obj, hands, fps, scene.seq.intrinsics.K,
                                               scene.seq.intrinsics.image_size)


def render_run(run: Path, out: Path | None = None, cfg: RenderConfig | None = None,
               progress: bool = True, scene: RunScene | None = None) -> dict[str, Path]:
    """Render an exported trained run (or a reconstruction directory's final/fit stage) into `out`
    (default RUN/render). Returns the output paths by name (e.g. 'overlay_mp4', 'glb', 'render_json').
    `scene`: the run's `load_run_scene`, when the caller has it already (it is loaded otherwise)."""
    cfg = cfg or RenderConfig()
    run = Path(run)
    trained = find_trained_run(run)
    out = Path(out) if out is not None else run / "render"
    t_start, c_start = time.perf_counter(), time.process_time()
    timer = _Timer()
    with timer("load"):
        scene = load_run_scene(trained) if scene is None else scene
    T = scene.num_frames
    frames = check_frames(list(range(T)) if cfg.frames is None else list(cfg.frames), T, "frames")
    fps = float(cfg.fps or scene.seq.fps or 10.0)
    W, H = scene.seq.intrinsics.image_size
    loaded = None
    if cfg.neural:  # loaded once: the neural render and the learned background
        with timer("neural_load"):
            loaded = load_trained_model(trained, cfg.device)
    with timer("load"):
        background = None
        if cfg.rgb:
            logits = loaded.model.background.logits if loaded is not None else _checkpoint_background_logits(trained)
            background = _background(logits, H, W)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Path] = {}
    _per_frame(scene, frames, cfg, background, out, fps, result, timer, progress)
    _turntables(scene, frames, cfg, out, result, timer, progress)
    _meshes_and_glb(scene, frames, cfg, out, fps, result, timer, progress)
    neural = _neural(loaded, frames, cfg, out, fps, result, timer, progress) if loaded is not None else None
    info = {"run": str(trained), "frames": frames, "fps": fps, "image_size": [W, H], "config": asdict(cfg),
            "neural": neural, "wall_s": {**timer.s, "total": round(time.perf_counter() - t_start, 3)},
            "cpu_s": {**timer.cpu, "total": round(time.process_time() - c_start, 3)},
            "outputs": {k: str(v) for k, v in result.items()}}
    result["render_json"] = out / "render.json"
    atomic_write_json(out / "render.json", info)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hold render", description="Videos (overlay, RGB, normals, neural), turntables, "
                                "per-frame meshes and an animated GLB of an exported run. No display or GPU needed.")
    p.add_argument("run", type=Path, help="trained run, or reconstruction directory (renders RUN/final, else RUN/fit)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default RUN/render)")
    p.add_argument("--frames", default=None, help="frames to render: '0:20', '0:60:2', '0,5,9' (default all)")
    p.add_argument("--fps", type=float, default=None, help="video frame rate (default: the build's, else 10)")
    p.add_argument("--no-neural", action="store_true", help="skip the neural volume render")
    p.add_argument("--neural-frames", default=None, help="frames for the neural render (default: the middle one)")
    p.add_argument("--neural-downscale", type=int, default=RenderConfig.neural_downscale,
                   help="render every n-th pixel in the neural render (1 = full resolution, ~n^2 times slower)")
    p.add_argument("--device", default="cpu", help="device of the neural render: cpu or cuda")
    p.add_argument("--turntable-frames", default=None, help="frames with a hand+object turntable "
                   "(default: first, middle, last)")
    p.add_argument("--turntable-views", type=int, default=RenderConfig.turntable_views, help="views per turn")
    p.add_argument("--turntable-size", type=int, default=RenderConfig.turntable_size, help="turntable size (pixels)")
    p.add_argument("--no-meshes", action="store_true", help="skip the per-frame PLY/OBJ meshes")
    p.add_argument("--no-glb", action="store_true", help="skip the animated GLB")
    p.add_argument("--no-png", action="store_true", help="only mp4s, no PNG frames")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    args = p.parse_args(argv)
    try:
        # frame arguments need the frame count: the scene is loaded here once and handed to render_run
        scene = (load_run_scene(find_trained_run(args.run))
                 if any((args.frames, args.neural_frames, args.turntable_frames)) else None)
        T = scene.num_frames if scene is not None else 0
        cfg = RenderConfig(
            frames=parse_frames(args.frames, T) if args.frames else None, fps=args.fps, neural=not args.no_neural,
            neural_frames=parse_frames(args.neural_frames, T, "--neural-frames") if args.neural_frames else None,
            neural_downscale=args.neural_downscale, device=args.device,
            turntable_frames=(parse_frames(args.turntable_frames, T, "--turntable-frames")
                              if args.turntable_frames else None),
            turntable_views=args.turntable_views, turntable_size=args.turntable_size, meshes=not args.no_meshes,
            glb=not args.no_glb, png=not args.no_png)
        result = render_run(args.run, args.out, cfg, progress=not args.quiet, scene=scene)
    except (FileNotFoundError, ValueError, OffscreenUnavailable) as e:
        print(f"hold render: {e}", file=sys.stderr)
        return 1
    out = result["render_json"].parent
    print(f"hold render: {len(result) - 1} outputs in {out} (overlay.mp4, animation.glb, ...; list in render.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
