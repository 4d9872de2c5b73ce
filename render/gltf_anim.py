"""One animated glTF 2.0 binary (.glb) of a whole sequence, written without any glTF library (the tests read
it back and check it against the spec: tests/render/gltf_check.py).

Layout of the file (glTF 2.0 spec, "GLB File Format"): a 12-byte header (magic 'glTF', version 2,
total length), a JSON chunk (padded with spaces to 4 bytes), a BIN chunk (padded with zeros).

Scene:
  root node "camera_frame_opencv": a 180-degree turn about x, so the OpenCV camera frame (y down,
    z forward) shows upright in glTF's y-up world; everything below it is in the camera frame.
  - "object": the canonical object mesh (metres) with a node animation, translation + rotation per
    frame from T_cam_from_obj (the object is rigid and metric: scale stays 1).
  - "hand_<side>": the frame-0 posed hand with one morph target per later frame (vertex offsets from
    frame 0) and a weight animation that switches from one target to the next (linear blend in between).
  - "camera": the video camera (vertical field of view and aspect from K), so a viewer can look
    through it (a glTF camera looks down its -z with +y up: exactly the OpenCV camera after the root turn).
Times are frame / fps seconds. Vertex colours are stored linear (glTF's COLOR_0 is linear).
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int, UInt8

from hold.data.io import atomic_write_bytes
from hold.geometry.rotations import matrix_to_quaternion

GLB_MAGIC, GLB_VERSION = 0x46546C67, 2
CHUNK_JSON, CHUNK_BIN = 0x4E4F534A, 0x004E4942
FLOAT, UINT, UBYTE = 5126, 5125, 5121
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
_NUM_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_ROOT_ROTATION_XYZW = [1.0, 0.0, 0.0, 0.0]  # 180 degrees about x: OpenCV camera frame -> glTF y-up


@dataclass
class AnimatedObject:
    """A rigid mesh and its pose per frame."""

    vertices_obj: Float[np.ndarray, "V 3"]
    """Canonical vertices, object frame (metres)."""
    faces: Int[np.ndarray, "F 3"]
    """Triangles."""
    T_cam_from_obj: Float[np.ndarray, "T 4 4"]
    """Rigid metric pose per frame (rotation + translation in metres): x_cam = T_cam_from_obj @ [x_obj, 1]."""
    colors: UInt8[np.ndarray, "V 4"] | None = None
    """sRGB(A) vertex colours (None: none)."""


@dataclass
class AnimatedHand:
    """A deforming mesh with fixed topology: vertex positions per frame."""

    vertices_cam: Float[np.ndarray, "T V 3"]
    """Posed vertices per frame, camera frame (metres)."""
    faces: Int[np.ndarray, "F 3"]
    """Triangles."""
    colors: UInt8[np.ndarray, "V 4"] | None = None
    """sRGB(A) vertex colours (None: none)."""


# ----------------------------------------------------------------------------------------------
# Pure maths


def quaternion_xyzw(R: Float[np.ndarray, "T 3 3"]) -> Float[np.ndarray, "T 4"]:
    """Unit quaternions (x, y, z, w) of rotation matrices, sign-continuous over T (q_t . q_{t-1} >= 0)
    so a viewer's linear/slerp interpolation between frames takes the short way."""
    q = matrix_to_quaternion(torch.as_tensor(np.asarray(R, dtype=np.float64))).numpy()
    for i in range(1, len(q)):
        if q[i] @ q[i - 1] < 0:
            q[i] = -q[i]
    return q


def srgb_to_linear(c: Float[np.ndarray, "..."]) -> Float[np.ndarray, "..."]:
    """sRGB-encoded values in [0, 1] to linear light (IEC 61966-2-1)."""
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


# ----------------------------------------------------------------------------------------------
# Writing


class _Builder:
    """Accumulates the BIN chunk, bufferViews and accessors."""

    def __init__(self):
        self.blob = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, data: np.ndarray, type_: str, target: int | None = None, bounds: bool = False,
            normalized: bool = False) -> int:
        data = np.ascontiguousarray(data)
        ctype = {np.dtype(np.float32): FLOAT, np.dtype(np.uint32): UINT, np.dtype(np.uint8): UBYTE}[data.dtype]
        while len(self.blob) % 4:  # every view starts 4-byte aligned (the largest component size)
            self.blob.append(0)
        view = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": data.nbytes}
        if target is not None:
            view["target"] = target
        self.blob += data.tobytes()
        self.views.append(view)
        n = _NUM_COMPONENTS[type_]
        acc = {"bufferView": len(self.views) - 1, "componentType": ctype, "count": int(data.size // n), "type": type_}
        if normalized:
            acc["normalized"] = True
        if bounds:
            flat = data.reshape(-1, n)
            acc["min"] = [float(v) for v in flat.min(0)]
            acc["max"] = [float(v) for v in flat.max(0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1


def _color_accessor(b: _Builder, colors: UInt8[np.ndarray, "V 4"] | None) -> dict:
    if colors is None:
        return {}
    lin = srgb_to_linear(np.asarray(colors, np.float64)[:, :3] / 255.0).astype(np.float32)
    return {"COLOR_0": b.add(lin, "VEC3", ARRAY_BUFFER)}


def animated_gltf(obj: AnimatedObject | None, hands: dict[str, AnimatedHand], fps: float = 10.0,
                  K: Float[np.ndarray, "3 3"] | None = None, image_size: tuple[int, int] | None = None
                  ) -> tuple[dict, bytes]:
    """(glTF JSON, BIN chunk bytes) of the animated scene described in the module docstring."""
    if obj is None and not hands:
        raise ValueError("animated_gltf: nothing to write (no object and no hand); export the run's meshes first.")
    T = obj.T_cam_from_obj.shape[0] if obj is not None else next(iter(hands.values())).vertices_cam.shape[0]
    for side, h in hands.items():
        if h.vertices_cam.shape[0] != T:
            raise ValueError(f"animated_gltf: hand '{side}' has {h.vertices_cam.shape[0]} frames, the object {T}; "
                             f"all tracks must have the same frame count.")
    if not fps > 0:
        raise ValueError(f"animated_gltf: fps must be > 0, found {fps}.")
    b = _Builder()
    material = {"name": "vertex_colour", "doubleSided": True,
                "pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0,
                                         "roughnessFactor": 0.8}}
    meshes, nodes, samplers, channels = [], [{"name": "camera_frame_opencv", "rotation": _ROOT_ROTATION_XYZW,
                                              "children": []}], [], []
    times = None
    if T >= 2:
        times = b.add((np.arange(T, dtype=np.float64) / fps).astype(np.float32), "SCALAR", bounds=True)

    def child(node: dict) -> int:
        nodes.append(node)
        nodes[0]["children"].append(len(nodes) - 1)
        return len(nodes) - 1

    if obj is not None:
        Tco = np.asarray(obj.T_cam_from_obj, np.float64)
        attrs = {"POSITION": b.add(np.asarray(obj.vertices_obj, np.float32), "VEC3", ARRAY_BUFFER, bounds=True),
                 **_color_accessor(b, obj.colors)}
        prim = {"attributes": attrs, "mode": 4, "material": 0,
                "indices": b.add(np.asarray(obj.faces, np.uint32).reshape(-1), "SCALAR", ELEMENT_ARRAY_BUFFER)}
        meshes.append({"name": "object", "primitives": [prim]})
        q = quaternion_xyzw(Tco[:, :3, :3])
        node = child({"name": "object", "mesh": len(meshes) - 1,
                      "translation": [float(v) for v in Tco[0, :3, 3]], "rotation": [float(v) for v in q[0]]})
        if times is not None:
            for path, data, type_ in (("translation", Tco[:, :3, 3], "VEC3"), ("rotation", q, "VEC4")):
                samplers.append({"input": times, "output": b.add(data.astype(np.float32), type_),
                                 "interpolation": "LINEAR"})
                channels.append({"sampler": len(samplers) - 1, "target": {"node": node, "path": path}})

    for side, h in hands.items():
        v = np.asarray(h.vertices_cam, np.float32)
        attrs = {"POSITION": b.add(v[0], "VEC3", ARRAY_BUFFER, bounds=True), **_color_accessor(b, h.colors)}
        prim = {"attributes": attrs, "mode": 4, "material": 0,
                "indices": b.add(np.asarray(h.faces, np.uint32).reshape(-1), "SCALAR", ELEMENT_ARRAY_BUFFER)}
        mesh = {"name": f"hand_{side}", "primitives": [prim]}
        if T >= 2:
            # target k (k = 0..T-2) moves frame 0 to frame k+1; POSITION accessors of targets need min/max
            prim["targets"] = [{"POSITION": b.add(v[t] - v[0], "VEC3", ARRAY_BUFFER, bounds=True)}
                               for t in range(1, T)]
            mesh["weights"] = [0.0] * (T - 1)
            mesh["extras"] = {"targetNames": [f"frame_{t:06d}" for t in range(1, T)]}
            weights = np.zeros((T, T - 1), np.float32)
            weights[np.arange(1, T), np.arange(T - 1)] = 1.0  # frame t shows target t-1 (frame 0: none)
            samplers.append({"input": times, "output": b.add(weights.reshape(-1), "SCALAR"), "interpolation": "LINEAR"})
        meshes.append(mesh)
        node = child({"name": f"hand_{side}", "mesh": len(meshes) - 1})
        if T >= 2:
            channels.append({"sampler": len(samplers) - 1, "target": {"node": node, "path": "weights"}})

    gltf: dict = {"asset": {"version": "2.0", "generator": "hold render"}, "scene": 0,
                  "scenes": [{"name": "sequence", "nodes": [0]}], "nodes": nodes, "meshes": meshes,
                  "materials": [material]}
    if K is not None and image_size is not None:
        W, H = image_size
        gltf["cameras"] = [{"type": "perspective", "name": "video_camera", "perspective": {
            "yfov": float(2 * math.atan(H / (2 * float(K[1, 1])))), "aspectRatio": float(W / H),
            "znear": 0.01, "zfar": 100.0}}]
        child({"name": "camera", "camera": 0, "rotation": _ROOT_ROTATION_XYZW})  # world: identity, looks down -z
    if channels:
        gltf["animations"] = [{"name": "sequence", "samplers": samplers, "channels": channels}]
    while len(b.blob) % 4:
        b.blob.append(0)
    gltf["buffers"] = [{"byteLength": len(b.blob)}]
    gltf["bufferViews"] = b.views
    gltf["accessors"] = b.accessors
    return gltf, bytes(b.blob)


def glb_bytes(gltf: dict, blob: bytes) -> bytes:
    """Pack JSON + BIN into one GLB file."""
    js = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    blob = blob + b"\0" * (-len(blob) % 4)
    total = 12 + 8 + len(js) + 8 + len(blob)
    return (struct.pack("<III", GLB_MAGIC, GLB_VERSION, total) + struct.pack("<II", len(js), CHUNK_JSON) + js
            + struct.pack("<II", len(blob), CHUNK_BIN) + blob)


def write_animated_glb(path: Path | str, obj: AnimatedObject | None, hands: dict[str, AnimatedHand],
                       fps: float = 10.0, K: Float[np.ndarray, "3 3"] | None = None,
                       image_size: tuple[int, int] | None = None) -> Path:
    """Write the animated scene as one .glb (atomically); returns the path."""
    gltf, blob = animated_gltf(obj, hands, fps, K, image_size)
    atomic_write_bytes(Path(path), glb_bytes(gltf, blob))
    return Path(path)
