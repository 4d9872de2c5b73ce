"""One animated glTF 2.0 binary (.glb) of a whole sequence, written and checked without any glTF library.

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
from jaxtyping import Float, Int, UInt8

from hold.data.io import atomic_write_bytes

GLB_MAGIC, GLB_VERSION = 0x46546C67, 2
CHUNK_JSON, CHUNK_BIN = 0x4E4F534A, 0x004E4942
FLOAT, UINT, UBYTE = 5126, 5125, 5121
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
_NUM_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_COMPONENT_DTYPE = {FLOAT: np.float32, UINT: np.uint32, UBYTE: np.uint8}
_ROOT_ROTATION_XYZW = [1.0, 0.0, 0.0, 0.0]  # 180 degrees about x: OpenCV camera frame -> glTF y-up


@dataclass
class AnimatedObject:
    """A rigid mesh and its pose per frame."""

    vertices_obj: Float[np.ndarray, "V 3"]
    """Canonical vertices, object frame (metres)."""
    faces: Int[np.ndarray, "F 3"]
    """Triangles."""
    T_cam_from_obj: Float[np.ndarray, "T 4 4"]
    """Rigid pose per frame (rotation + translation in metres)."""
    colors: UInt8[np.ndarray, "V 4"] | None = None
    """sRGB(A) vertex colours."""


@dataclass
class AnimatedHand:
    """A deforming mesh with fixed topology: vertex positions per frame."""

    vertices_cam: Float[np.ndarray, "T V 3"]
    """Posed vertices per frame, camera frame (metres)."""
    faces: Int[np.ndarray, "F 3"]
    """Triangles."""
    colors: UInt8[np.ndarray, "V 4"] | None = None
    """sRGB(A) vertex colours."""


# ----------------------------------------------------------------------------------------------
# Pure maths


def quaternion_xyzw(R: Float[np.ndarray, "T 3 3"]) -> Float[np.ndarray, "T 4"]:
    """Unit quaternions (x, y, z, w) of rotation matrices, sign-continuous over T (q_t . q_{t-1} >= 0)
    so a viewer's linear/slerp interpolation between frames takes the short way."""
    R = np.asarray(R, dtype=np.float64)
    m = R
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    # Shepperd's method: pick the largest of 4w^2, 4x^2, 4y^2, 4z^2 for numerical stability
    cand = np.stack([1 + tr, 1 + 2 * m[:, 0, 0] - tr, 1 + 2 * m[:, 1, 1] - tr, 1 + 2 * m[:, 2, 2] - tr], 1)
    k = cand.argmax(1)
    q = np.empty((len(R), 4))  # x y z w
    for i in range(len(R)):
        r, s = m[i], math.sqrt(max(cand[i, k[i]], 1e-300)) * 2  # s = 4 * |component|
        if k[i] == 0:
            q[i] = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4]
        elif k[i] == 1:
            q[i] = [s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s]
        elif k[i] == 2:
            q[i] = [(r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s]
        else:
            q[i] = [(r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4, (r[1, 0] - r[0, 1]) / s]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for i in range(1, len(q)):
        if q[i] @ q[i - 1] < 0:
            q[i] = -q[i]
    return q


def rotation_from_xyzw(q: Float[np.ndarray, "T 4"]) -> Float[np.ndarray, "T 3 3"]:
    """Rotation matrices of unit quaternions (x, y, z, w) (the inverse of quaternion_xyzw)."""
    x, y, z, w = np.moveaxis(np.asarray(q, dtype=np.float64), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


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


# ----------------------------------------------------------------------------------------------
# Reading back and checking


def read_glb(data: bytes) -> tuple[dict, bytes]:
    """(JSON, BIN) of GLB bytes; ValueError on a malformed header or chunk."""
    if len(data) < 20:
        raise ValueError(f"GLB: {len(data)} bytes is too short for a header")
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != GLB_VERSION:
        raise ValueError(f"GLB: magic/version {magic:#x}/{version}, expected glTF/2")
    if length != len(data):
        raise ValueError(f"GLB: header length {length} != file size {len(data)}")
    n, kind = struct.unpack_from("<II", data, 12)
    if kind != CHUNK_JSON or n % 4:
        raise ValueError(f"GLB: first chunk type {kind:#x} length {n}, expected a 4-aligned JSON chunk")
    gltf = json.loads(data[20:20 + n].decode("utf-8"))
    blob = b""
    if 20 + n < len(data):
        m, kind = struct.unpack_from("<II", data, 20 + n)
        if kind != CHUNK_BIN:
            raise ValueError(f"GLB: second chunk type {kind:#x}, expected BIN")
        blob = data[28 + n:28 + n + m]
    return gltf, blob


def accessor_array(gltf: dict, blob: bytes, index: int) -> np.ndarray:
    """The data of accessor `index` as (count, components) (tightly packed views, as written here)."""
    acc = gltf["accessors"][index]
    view = gltf["bufferViews"][acc["bufferView"]]
    n = _NUM_COMPONENTS[acc["type"]]
    dtype = np.dtype(_COMPONENT_DTYPE[acc["componentType"]])
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    return np.frombuffer(blob, dtype, count=acc["count"] * n, offset=start).reshape(acc["count"], n)


def validate_gltf(gltf: dict, blob: bytes) -> list[str]:
    """Problems that would make a viewer reject or misplay the file (empty list = valid), checking the
    spec rules this writer relies on: references in range, views inside the buffer and 4-aligned,
    accessors inside their views, POSITION and sampler-input min/max present and exact, indices in
    range, morph targets matching their base, sampler inputs strictly increasing, output counts
    matching inputs (x weights for morph weights), unit rotation quaternions."""
    problems: list[str] = []
    if gltf.get("asset", {}).get("version") != "2.0":
        problems.append("asset.version is not '2.0'")
    buffers, views, accessors = gltf.get("buffers", []), gltf.get("bufferViews", []), gltf.get("accessors", [])
    if len(buffers) != 1 or buffers[0].get("byteLength", -1) > len(blob):
        problems.append(f"buffers: expected one buffer of <= {len(blob)} bytes (the BIN chunk), found {buffers}")
        return problems
    for i, v in enumerate(views):
        off, n = v.get("byteOffset", 0), v["byteLength"]
        if off % 4 or off + n > buffers[0]["byteLength"]:
            problems.append(f"bufferViews[{i}]: offset {off} + length {n} misaligned or beyond the buffer")
    arrays: dict[int, np.ndarray] = {}
    for i, a in enumerate(accessors):
        if not 0 <= a.get("bufferView", -1) < len(views):
            problems.append(f"accessors[{i}]: bufferView out of range")
            continue
        size = a["count"] * _NUM_COMPONENTS[a["type"]] * np.dtype(_COMPONENT_DTYPE[a["componentType"]]).itemsize
        if a["count"] < 1 or a.get("byteOffset", 0) + size > views[a["bufferView"]]["byteLength"]:
            problems.append(f"accessors[{i}]: count {a['count']} does not fit its bufferView")
            continue
        arrays[i] = accessor_array(gltf, blob, i)
        if "min" in a or "max" in a:
            lo, hi = arrays[i].min(0), arrays[i].max(0)
            if not (np.allclose(a.get("min"), lo, rtol=0, atol=0) and np.allclose(a.get("max"), hi, rtol=0, atol=0)):
                problems.append(f"accessors[{i}]: min/max {a.get('min')}/{a.get('max')} != data bounds {lo}/{hi}")
    nodes, meshes = gltf.get("nodes", []), gltf.get("meshes", [])
    for s in gltf.get("scenes", []):
        for n in s.get("nodes", []):
            if not 0 <= n < len(nodes):
                problems.append(f"scene node {n} out of range")
    for i, node in enumerate(nodes):
        for c in node.get("children", []):
            if not 0 <= c < len(nodes):
                problems.append(f"nodes[{i}]: child {c} out of range")
        if "mesh" in node and not 0 <= node["mesh"] < len(meshes):
            problems.append(f"nodes[{i}]: mesh out of range")
        if "camera" in node and not 0 <= node["camera"] < len(gltf.get("cameras", [])):
            problems.append(f"nodes[{i}]: camera out of range")
    for i, mesh in enumerate(meshes):
        for j, p in enumerate(mesh["primitives"]):
            pos = p["attributes"].get("POSITION")
            if pos not in arrays:
                problems.append(f"meshes[{i}].primitives[{j}]: no readable POSITION accessor")
                continue
            if "min" not in accessors[pos] or "max" not in accessors[pos]:
                problems.append(f"meshes[{i}].primitives[{j}]: POSITION accessor lacks min/max (required)")
            V = len(arrays[pos])
            for name, k in p["attributes"].items():
                if k in arrays and len(arrays[k]) != V:
                    problems.append(f"meshes[{i}].primitives[{j}]: {name} has {len(arrays[k])} elements, POSITION {V}")
            idx = p.get("indices")
            if idx is not None and idx in arrays and (len(arrays[idx]) % 3 or arrays[idx].max() >= V):
                problems.append(f"meshes[{i}].primitives[{j}]: indices not triangles or >= {V} vertices")
            for t, target in enumerate(p.get("targets", [])):
                k = target.get("POSITION")
                if k not in arrays or len(arrays[k]) != V or "min" not in accessors[k]:
                    problems.append(f"meshes[{i}].primitives[{j}].targets[{t}]: POSITION missing, "
                                    f"wrong count or without min/max")
            if "weights" in mesh and len(mesh["weights"]) != len(p.get("targets", [])):
                problems.append(f"meshes[{i}]: {len(mesh['weights'])} weights for {len(p.get('targets', []))} targets")
    for a_i, anim in enumerate(gltf.get("animations", [])):
        samplers = anim["samplers"]
        for s_i, s in enumerate(samplers):
            t = arrays.get(s["input"])
            if t is None or "min" not in accessors[s["input"]]:
                problems.append(f"animations[{a_i}].samplers[{s_i}]: input unreadable or without min/max")
                continue
            if len(t) > 1 and not (np.diff(t[:, 0]) > 0).all():
                problems.append(f"animations[{a_i}].samplers[{s_i}]: input times not strictly increasing")
        for c_i, ch in enumerate(anim["channels"]):
            s = samplers[ch["sampler"]]
            node, path = ch["target"]["node"], ch["target"]["path"]
            t, out = arrays.get(s["input"]), arrays.get(s["output"])
            if t is None or out is None or not 0 <= node < len(nodes):
                problems.append(f"animations[{a_i}].channels[{c_i}]: unreadable sampler or node out of range")
                continue
            per_key = 1
            if path == "weights":
                mesh = meshes[nodes[node]["mesh"]]
                per_key = len(mesh["primitives"][0].get("targets", []))
            if len(out) != len(t) * per_key:
                problems.append(f"animations[{a_i}].channels[{c_i}]: {len(out)} outputs for {len(t)} keyframes "
                                f"x {per_key}")
            if path == "rotation" and not np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5):
                problems.append(f"animations[{a_i}].channels[{c_i}]: rotation quaternions are not unit length")
    return problems
