"""What a render is made of: a trained run's exported meshes and trajectories, and its build's frames.

`hold export` writes, inside the trained run:
  meshes/object.ply, meshes/hand_<side>.ply   canonical meshes with vertex colours
  pred/object_mesh.ply + pred/object.npz       the object mesh (metric canonical) and T_cam_from_obj per frame
  pred/hands.npz                               posed hand vertices per frame (vertex order of meshes/hand_<side>.ply)
This module reads them back into one `RunScene` (camera frame, metres) without loading any network.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from jaxtyping import UInt8

from hold.data import load_sequence
from hold.data.groundtruth import load_trajectory
from hold.data.schema import LABELS, Sequence
from hold.icp import apply_transform
from hold.mesh_io import read_mesh
from hold.run_dir import read_run_json
from render.gltf_anim import AnimatedHand, AnimatedObject
from render.raster import CameraMesh

OBJECT_RGB = (1.0, 0.55, 0.1)
"""Overlay colour of the object (orange)."""
HAND_RGB = {"right": (0.15, 0.45, 1.0), "left": (0.2, 0.85, 0.4)}
"""Overlay colour of each hand (right blue, left green)."""


@dataclass
class RunScene:
    """Everything the mesh-based renders need, in the camera frame."""

    seq: Sequence
    """The build (intrinsics, frames on disk, fps)."""
    hands: dict[str, AnimatedHand] = field(default_factory=dict)
    """Posed hands by side, with the colour field's vertex colours (None when the exported mesh has none)."""
    object: AnimatedObject | None = None
    """The object and its pose per frame, None when the run has none."""

    @property
    def num_frames(self) -> int:
        return self.seq.num_frames

    def meshes(self, t: int) -> list[CameraMesh]:
        """Camera-frame meshes of frame t (with vertex colours): the object first, then the hands."""
        out = []
        if self.object is not None:
            o = self.object
            v = apply_transform(o.T_cam_from_obj[t], o.vertices_obj).astype(np.float32)
            out.append(CameraMesh(v, o.faces, o.colors, LABELS["object"]))
        for side, h in self.hands.items():
            out.append(CameraMesh(h.vertices_cam[t], h.faces, h.colors, LABELS[side]))
        return out

    def overlay_colors(self) -> list[tuple[float, float, float]]:
        """Flat overlay colour of each mesh of `meshes(t)`, in the same order."""
        return ([OBJECT_RGB] if self.object is not None else []) + [HAND_RGB[s] for s in self.hands]


def _colors(path: Path, num_vertices: int) -> UInt8[np.ndarray, "V 4"] | None:
    """Vertex colours of an exported canonical mesh when it matches the posed topology."""
    if not path.is_file():
        return None
    v, _, c = read_mesh(path)
    return c if c is not None and len(v) == num_vertices else None


def load_run_scene(run: Path) -> RunScene:
    """Read a trained run's exported meshes (meshes/, pred/) and its build; clear error when not exported."""
    run = Path(run)
    pred, meshes = run / "pred", run / "meshes"
    if not (pred / "hands.npz").is_file() and not (pred / "object.npz").is_file():
        raise FileNotFoundError(f"{run}: no exported meshes ({pred}/hands.npz and {pred}/object.npz missing). "
                                f"Fix: run `hold export {run}` first (`hold reconstruct` exports before rendering).")
    build = Path(read_run_json(run)["build"])
    seq = load_sequence(build)
    traj = load_trajectory(pred)
    if traj.num_frames != seq.num_frames:
        raise ValueError(f"{pred}: holds {traj.num_frames} frames but the build {build} has {seq.num_frames}; "
                         f"the export is stale. Fix: re-run `hold export {run}`.")
    scene = RunScene(seq=seq)
    for side, h in traj.hands.items():
        scene.hands[side] = AnimatedHand(h.vertices.astype(np.float32), h.faces.astype(np.int64),
                                         _colors(meshes / f"hand_{side}.ply", h.vertices.shape[1]))
    if traj.object is not None:
        o = traj.object
        scene.object = AnimatedObject(o.vertices.astype(np.float32), o.faces.astype(np.int64),
                                      o.T_cam_from_obj.astype(np.float64),
                                      _colors(meshes / "object.ply", len(o.vertices)))
    return scene
