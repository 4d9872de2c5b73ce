"""Reading back and checking the GLB files render.gltf_anim writes (test helpers, no glTF library)."""
from __future__ import annotations

import json
import struct

import numpy as np

from render.gltf_anim import _NUM_COMPONENTS, CHUNK_BIN, CHUNK_JSON, FLOAT, GLB_MAGIC, GLB_VERSION, UBYTE, UINT

_COMPONENT_DTYPE = {FLOAT: np.float32, UINT: np.uint32, UBYTE: np.uint8}


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
