"""Synthetic objects: built-in textured shapes, or any textured mesh file trimesh can load.

Every object comes back in its canonical metric frame with its bounding-box centre at the origin.
Built-in shapes get a feature-rich procedural texture through a cube-map projection: each face is
assigned to the axis its normal points along (6 groups), and each group is mapped into its own
cell of a 3x2 texture atlas. Seams get duplicated vertices (for the UVs), so the rendered mesh is
not welded; `welded(mesh)` gives the watertight geometry for distances and metrics.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from hold.synth.textures import procedural_texture

BUILTIN_SHAPES = ("box", "cylinder", "sphere", "ellipsoid")


@dataclass
class ObjectConfig:
    """Which object to build and how big."""

    shape: str = "box"
    """A built-in shape (box, cylinder, sphere, ellipsoid) or the path of a mesh file (OBJ/PLY/GLB...)."""
    size_m: float = 0.08
    """Longest extent of a built-in shape (metres); mesh files keep their own size."""
    texture_size: int = 1024
    """Side of the procedural texture atlas (pixels)."""
    seed: int = 0
    """Seed of the proportions and the texture."""


def object_names() -> list[str]:
    """The built-in shapes."""
    return list(BUILTIN_SHAPES)


def _builtin_geometry(shape: str, size: float, rng: np.random.Generator) -> trimesh.Trimesh:
    """Watertight, outward-oriented geometry with roughly uniform edges (~size/16)."""
    if shape == "box":
        extents = size * np.array([1.0, rng.uniform(0.55, 0.8), rng.uniform(0.35, 0.6)])
        mesh = trimesh.creation.box(extents=extents)
    elif shape == "cylinder":
        height = size
        mesh = trimesh.creation.cylinder(radius=size * rng.uniform(0.22, 0.32), height=height, sections=48)
    elif shape == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=4, radius=size / 2)
    elif shape == "ellipsoid":
        mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
        mesh.apply_scale(size * np.array([1.0, rng.uniform(0.55, 0.75), rng.uniform(0.45, 0.6)]))
    else:
        raise ValueError(f"unknown object {shape!r}: use one of {BUILTIN_SHAPES} or the path of a mesh file")
    v, f = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, max_edge=size / 16)
    return trimesh.Trimesh(v, f, process=True)


def cubemap_uv(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unwelded (vertices (3F,3), faces (F,3), uv (3F,2)) with a cube-map atlas projection."""
    normals = mesh.face_normals
    axis = np.abs(normals).argmax(1)
    group = axis * 2 + (normals[np.arange(len(normals)), axis] < 0)
    lo, hi = mesh.bounds
    span = np.maximum(hi - lo, 1e-9)
    verts = mesh.vertices[mesh.faces]  # (F,3,3)
    uv = np.empty(verts.shape[:2] + (2,))
    margin = 0.02
    for g in range(6):
        sel = group == g
        a = g // 2
        u_ax, v_ax = [i for i in range(3) if i != a]
        local = np.stack([(verts[sel][..., u_ax] - lo[u_ax]) / span[u_ax],
                          (verts[sel][..., v_ax] - lo[v_ax]) / span[v_ax]], -1)
        cell = np.array([g % 3, g // 3], dtype=float)
        uv[sel] = (cell + margin + local * (1 - 2 * margin)) / np.array([3.0, 2.0])
    F = len(mesh.faces)
    return verts.reshape(-1, 3), np.arange(3 * F).reshape(F, 3), uv.reshape(-1, 2)


def textured(mesh: trimesh.Trimesh, texture: np.ndarray) -> trimesh.Trimesh:
    """`mesh` with a cube-map-projected texture image (vertices duplicated along seams)."""
    v, f, uv = cubemap_uv(mesh)
    material = trimesh.visual.texture.SimpleMaterial(image=Image.fromarray(texture))
    visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(texture), material=material)
    return trimesh.Trimesh(v, f, visual=visual, process=False)


def welded(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Geometry only, duplicated (seam) vertices merged: watertight when the shape is closed."""
    out = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), process=False)
    out.merge_vertices(merge_tex=True, merge_norm=True)
    return out


def _load_mesh_file(path: Path, cfg: ObjectConfig) -> trimesh.Trimesh:
    if not path.is_file():
        raise FileNotFoundError(f"object mesh {path} does not exist. Fix: pass --object with an existing "
                                f"mesh file (OBJ, PLY, GLB, ...) or a built-in shape: {', '.join(BUILTIN_SHAPES)}")
    try:
        mesh = trimesh.load(path, force="mesh")
    except Exception as e:  # trimesh raises many types for unreadable files
        raise ValueError(f"object mesh {path} could not be read by trimesh ({e}). Fix: export it as OBJ/PLY/GLB") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"object mesh {path} holds no triangles. Fix: pass a surface mesh, not a point cloud")
    mesh.apply_translation(-mesh.bounds.mean(0))
    has_texture = getattr(mesh.visual, "kind", None) == "texture" and getattr(mesh.visual.material, "image", None) is not None
    has_colors = getattr(mesh.visual, "kind", None) == "vertex"
    if not (has_texture or has_colors):  # an untextured file: give it the procedural texture
        mesh = textured(mesh, procedural_texture(cfg.texture_size, cfg.seed))
    if not welded(mesh).is_watertight:
        warnings.warn(f"object mesh {path} is not watertight: inside/outside tests near its holes are approximate",
                      stacklevel=3)
    return mesh


def make_object(cfg: ObjectConfig) -> trimesh.Trimesh:
    """The textured object mesh in its canonical metric frame (bounding-box centre at the origin)."""
    if cfg.shape in BUILTIN_SHAPES:
        rng = np.random.default_rng(cfg.seed)
        geometry = _builtin_geometry(cfg.shape, cfg.size_m, rng)
        geometry.apply_translation(-geometry.bounds.mean(0))
        return textured(geometry, procedural_texture(cfg.texture_size, cfg.seed))
    return _load_mesh_file(Path(cfg.shape).expanduser(), cfg)
