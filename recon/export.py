"""`hold export RUN`: meshes of the trained fields, posed per frame, the prediction trajectory, metrics.

RUN/meshes/  object.{ply,obj,glb} and hand_<side>.{ply,obj,glb} in canonical metric space, with
             vertex colours from the colour field; posed/<frame>_<entity>.ply per frame.
RUN/pred/    the prediction in the gt/ layout (hold.data.groundtruth), what `hold evaluate` reads.
RUN/metrics.json  HOLD's metrics against the build's gt/ when it has one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from hold.config import resolve_config
from hold.data.groundtruth import HandObjectTrajectory, HandTrajectory, ObjectTrajectory, save_trajectory
from hold.evaluate import evaluate_paths, summary_line
from hold.geometry.lbs import lbs, surface_skinning_weights
from hold.mesh import MeshConfig, color_vertices, extract_mesh
from hold.mesh_io import write_mesh
from hold.progress import track
from hold.run_dir import load_trained_model
from recon.config import TrainConfig
from recon.train import device_of


def load_run(run: Path) -> tuple:
    """(model with trained weights, config, build path) of a finished run (built over the pose folder
    its run.json names in `poses_from`, as it was trained)."""
    run = Path(run)
    model_pt = run / "checkpoints" / "model.pt"
    if not model_pt.exists():
        raise FileNotFoundError(f"{model_pt} does not exist: {run} is not a finished training run. "
                                f"Fix: run `hold train BUILD --out {run}` first (it resumes if interrupted)")
    trained = load_trained_model(run)  # one loader for export, refine and render (no image I/O)
    return trained.model, resolve_config(TrainConfig(), [run / "config.yaml"]), trained.build


def _field_colors(node, x_field: torch.Tensor, R_cam_from_field: torch.Tensor) -> torch.Tensor:
    """Colour-field RGB at field-space points, shaded with the frame-0 camera-frame normal."""
    with torch.enable_grad():
        _, feat, grad = node.sdf.sdf_and_gradient(x_field, create_graph=False)
    n = grad.detach() @ R_cam_from_field.T
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    app = node.appearance.weight.mean(0, keepdim=True).expand(x_field.shape[0], -1)
    return node.color(feat.detach(), n, None, app)


def export_run(run: Path, resolution: int | None = None, progress: bool = True) -> dict:
    model, cfg, build = load_run(run)
    run = Path(run)
    device = device_of(cfg)
    model.to(device)
    mcfg = MeshConfig(resolution=resolution or cfg.mesh_resolution)
    meshes, posed_dir = run / "meshes", run / "meshes" / "posed"
    posed_dir.mkdir(parents=True, exist_ok=True)
    T = model.num_frames
    frames = torch.arange(T, device=device)
    traj_hands, obj_traj = {}, None
    lo, hi = -torch.ones(3), torch.ones(3)

    with torch.no_grad():
        if model.object is not None:
            node = model.object
            v_field, faces = extract_mesh(lambda x: node.sdf(x)[0], lo, hi, mcfg, device)
            if len(faces):
                T_obj = node.T_cam_from_obj(frames).cpu().numpy().astype(np.float64)
                R0 = torch.as_tensor(T_obj[0, :3, :3], dtype=torch.float32, device=device)
                colors = color_vertices(lambda x: _field_colors(node, x, R0), v_field, device=device)
                v_metric = v_field * float(node.scale)
                for ext in ("ply", "obj", "glb"):
                    write_mesh(meshes / f"object.{ext}", v_metric, faces, colors)
                obj_traj = ObjectTrajectory(vertices=v_metric.astype(np.float32), faces=faces,
                                            T_cam_from_obj=T_obj.astype(np.float32), K=model.K.cpu().numpy())
                for t in track(range(T), "export: posed object meshes", T, enabled=progress):
                    write_mesh(posed_dir / f"{t:06d}_object.ply", v_metric @ T_obj[t, :3, :3].T + T_obj[t, :3, 3], faces)

        for side, node in model.hands.items():
            v_field, faces = extract_mesh(lambda x: node.sdf(x)[0], lo, hi, mcfg, device)
            out = node.posed(frames)
            if len(faces):
                v_cano = torch.as_tensor(v_field, dtype=torch.float32, device=device) * node.field_radius + node.field_center
                # skin the extracted canonical mesh with the weights of the closest rest hand-model surface
                w, _ = surface_skinning_weights(v_cano[None], node.rest_vertices[None], node.model.faces,
                                                out.skinning_weights, vf_table=node.vf_table)
                posed = lbs(v_cano[None].expand(T, -1, -1), w[0], out.bone_transforms).cpu().numpy()
                R0 = out.bone_transforms[0, 0, :3, :3]
                colors = color_vertices(lambda x: _field_colors(node, x, R0), v_field, device=device)
                for ext in ("ply", "obj", "glb"):
                    write_mesh(meshes / f"hand_{side}.{ext}", v_cano.cpu().numpy(), faces, colors)
                for t in track(range(T), f"export: posed {side} hand meshes", T, enabled=progress):
                    write_mesh(posed_dir / f"{t:06d}_hand_{side}.ply", posed[t], faces)
                traj_hands[side] = HandTrajectory(side=side, keypoints=out.keypoints.cpu().numpy(),
                                                  vertices=posed.astype(np.float32), faces=faces)

    if not traj_hands and obj_traj is None:
        raise ValueError(f"{run}: no surface found in any field (the SDFs have no zero crossing); "
                         f"training probably diverged — check {run / 'logs'}")
    save_trajectory(HandObjectTrajectory(hands=traj_hands, object=obj_traj, num_frames=T), run / "pred")
    metrics = {}
    if (build / "gt").is_dir():
        metrics = evaluate_paths(run / "pred", build / "gt", run / "metrics.json")
    return metrics


def export_command(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hold export", description="Meshes, posed meshes, prediction and metrics of a run.")
    p.add_argument("run", type=Path)
    p.add_argument("--resolution", type=int, default=None, help="marching-cubes voxels per side")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    metrics = export_run(args.run, args.resolution, progress=not args.quiet)
    print(f"hold export: meshes in {args.run / 'meshes'}, prediction in {args.run / 'pred'}")
    if metrics:
        print(f"hold export: {summary_line(metrics)}  ->  {args.run / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(export_command())
