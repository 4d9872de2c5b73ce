"""Ground truth and predictions: one layout for both, so `hold evaluate PRED GT` compares like with like.

    <folder>/   (a build's gt/, or a reconstruction's prediction folder)
      hands.npz        per side s: "s/keypoints" (T,21,3) camera frame metres, "s/vertices" (T,V,3),
                       "s/faces" (F,3) int, optional params "s/global_orient" (T,3), "s/hand_pose" (T,P),
                       "s/betas" (B,), "s/transl" (T,3); plus "hand_model" (str array)
      object.npz       "T_cam_from_obj" (T,4,4) METRIC (x_cam = T @ x_mesh), optional "K" (3,3)
      object_mesh.ply  the object mesh in its metric canonical frame
      depth/000000.png optional uint16 depth, 0.1 mm units (hold.data.io.read_depth)

Never read by training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
from jaxtyping import Float, Int

from hold.data.errors import ProblemLog, SequenceError
from hold.data.io import atomic_write_bytes, atomic_write_npz, read_npz
from hold.data.schema import (
    GT_DIR, HAND_SIDES, NUM_KEYPOINTS, SEQUENCE_JSON, check_array, check_finite, check_rigid, t_note,
)

HANDS_FILE = "hands.npz"
OBJECT_FILE = "object.npz"
MESH_FILE = "object_mesh.ply"
DEPTH_DIR = "depth"
HAND_PARAM_KEYS: tuple[str, ...] = ("global_orient", "hand_pose", "betas", "transl")
FIX_GT = ("regenerate it: the ground truth with hold.synth or the benchmark importer, "
          "a prediction with `hold reconstruct` / `hold export`")


@dataclass
class HandTrajectory:
    """One hand's posed surface and keypoints per frame, camera frame, metres."""

    side: str
    """'right' or 'left'."""
    keypoints: Float[np.ndarray, "T 21 3"]
    """The 21 keypoints (common order) per frame (metres, camera frame)."""
    vertices: Float[np.ndarray, "T V 3"]
    """Posed mesh vertices per frame (metres, camera frame)."""
    faces: Int[np.ndarray, "F 3"]
    """Triangles indexing `vertices`."""
    params: dict[str, np.ndarray] = field(default_factory=dict)
    """Optional hand-model parameters: global_orient (T,3), hand_pose (T,P), betas (B,), transl (T,3)."""

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])


@dataclass
class ObjectTrajectory:
    """The object mesh in its metric canonical frame and its per-frame rigid pose."""

    vertices: Float[np.ndarray, "V 3"]
    """Mesh vertices in the canonical object frame (metres)."""
    faces: Int[np.ndarray, "F 3"]
    """Triangles indexing `vertices`."""
    T_cam_from_obj: Float[np.ndarray, "T 4 4"]
    """Rigid metric pose per frame: x_cam = T_cam_from_obj @ [x_mesh, 1] (no scale)."""
    K: Float[np.ndarray, "3 3"] | None = None
    """Camera intrinsics (pixels), when known."""

    @property
    def num_frames(self) -> int:
        return int(self.T_cam_from_obj.shape[0])

    def vertices_cam(self, t: int) -> Float[np.ndarray, "V 3"]:
        """Mesh vertices posed at frame t, camera frame (metres)."""
        T = self.T_cam_from_obj[t].astype(np.float64)
        return (self.vertices.astype(np.float64) @ T[:3, :3].T + T[:3, 3]).astype(np.float32)


@dataclass
class HandObjectTrajectory:
    """Hands and object over a sequence: a ground truth or a prediction."""

    hands: dict[str, HandTrajectory]
    """Hand trajectories by side (may be empty)."""
    object: ObjectTrajectory | None
    """The object trajectory, None when there is none."""
    num_frames: int
    """T, the number of frames."""
    hand_model: str | None = None
    """Hand model the params belong to ('anny' | 'mano'), when known."""


# ----------------------------------------------------------------------------------------------
# Checks of raw records (shared by load, save and validate)


def _t_note(T: int, from_build: bool) -> str:
    return t_note(T) if from_build else f"(T={T}, the frame count of this folder)"


def _infer_T(hands: Mapping[str, np.ndarray] | None, obj: Mapping[str, np.ndarray] | None) -> int | None:
    """Frame count from the first time-indexed array found (keypoints, else object poses)."""
    for side in HAND_SIDES:
        a = (hands or {}).get(f"{side}/keypoints")
        if a is not None and a.ndim >= 1:
            return int(a.shape[0])
    a = (obj or {}).get("T_cam_from_obj")
    if a is not None and a.ndim >= 1:
        return int(a.shape[0])
    return None


def check_mesh(vertices: np.ndarray, faces: np.ndarray, path: Path, log: ProblemLog, field_prefix: str = "") -> None:
    """Vertices (V,3) finite float, faces (F,3) int indexing them, at least one face."""
    arrays = {field_prefix + "vertices": vertices, field_prefix + "faces": faces}
    v = check_array(arrays, field_prefix + "vertices", ("V", 3), "float", path, log, FIX_GT)
    f = check_array(arrays, field_prefix + "faces", ("F", 3), "int", path, log, FIX_GT)
    if v is not None:
        check_finite(v, field_prefix + "vertices", path, log, FIX_GT, per_frame=False)
    if f is not None and v is not None:
        _check_faces(f, v.shape[0], field_prefix + "faces", path, log)


def _check_faces(faces: np.ndarray, num_vertices: int, key: str, path: Path, log: ProblemLog) -> None:
    if faces.shape[0] == 0:
        log.error(path, key, "is empty (a mesh needs at least one triangle)", FIX_GT)
    elif faces.min() < 0 or faces.max() >= num_vertices:
        log.error(path, key, f"indexes vertices {faces.min()}..{faces.max()}, expected 0..{num_vertices - 1}",
                  FIX_GT)


def check_hands_record(
    arrays: Mapping[str, np.ndarray], T: int, path: Path, log: ProblemLog, from_build: bool = False
) -> list[str]:
    """Check a trajectory hands.npz against T; returns the sides it holds."""
    note = _t_note(T, from_build)
    prefixes = {k.split("/", 1)[0] for k in arrays if "/" in k}
    for p in sorted(prefixes - set(HAND_SIDES)):
        log.error(path, p, f"is not a hand side (keys '{p}/...'), expected one of {list(HAND_SIDES)}", FIX_GT)
    sides = [s for s in HAND_SIDES if s in prefixes]
    if "hand_model" in arrays:
        hm = arrays["hand_model"]
        if hm.dtype.kind != "U" or hm.size != 1:
            log.error(path, "hand_model", fix=FIX_GT, found=f"dtype {hm.dtype} shape {hm.shape}",
                      expected="a string array, e.g. np.array('anny')")
    elif sides:
        log.warning(path, "hand_model", "is missing (cannot tell which hand model the params belong to)", FIX_GT)
    for key in arrays:
        if "/" not in key and key != "hand_model":
            log.warning(path, key, "is not part of the layout and is ignored")
    for s in sides:
        p = f"{s}/"
        kp = check_array(arrays, p + "keypoints", (T, NUM_KEYPOINTS, 3), "float", path, log, FIX_GT, note)
        v = check_array(arrays, p + "vertices", (T, "V", 3), "float", path, log, FIX_GT, note)
        f = check_array(arrays, p + "faces", ("F", 3), "int", path, log, FIX_GT)
        specs = {"global_orient": (T, 3), "hand_pose": (T, "P"), "betas": ("B",), "transl": (T, 3)}
        params = {k: check_array(arrays, p + k, spec, "float", path, log, FIX_GT, note if spec[0] == T else "",
                                 required=False) for k, spec in specs.items()}
        for key, a in [("keypoints", kp), ("vertices", v), *params.items()]:
            if a is not None:
                check_finite(a, p + key, path, log, FIX_GT, per_frame=key != "betas")
        if v is not None and f is not None:
            _check_faces(f, v.shape[1], p + "faces", path, log)
        known = {p + k for k in ("keypoints", "vertices", "faces", *HAND_PARAM_KEYS)}
        for key in arrays:
            if key.startswith(p) and key not in known:
                log.warning(path, key, "is not part of the layout and is ignored")
    return sides


def check_object_record(
    arrays: Mapping[str, np.ndarray], T: int, path: Path, log: ProblemLog, from_build: bool = False
) -> None:
    """Check a trajectory object.npz against T: metric rigid poses, optional K."""
    pose = check_array(arrays, "T_cam_from_obj", (T, 4, 4), "float", path, log, FIX_GT, _t_note(T, from_build))
    if pose is not None and check_finite(pose, "T_cam_from_obj", path, log, FIX_GT):
        check_rigid(pose, "T_cam_from_obj", path, log, FIX_GT + "; the metric pose must be rigid (scale 1)")
    K = check_array(arrays, "K", (3, 3), "float64", path, log, FIX_GT, required=False)
    if K is not None:
        check_finite(K, "K", path, log, FIX_GT, per_frame=False)
    for key in arrays:
        if key not in ("T_cam_from_obj", "K"):
            log.warning(path, key, "is not part of the layout and is ignored")


def _load_mesh(path: Path, log: ProblemLog) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.is_file():
        log.error(path, None, f"file not found ({OBJECT_FILE} needs the object mesh next to it)", FIX_GT)
        return None
    import trimesh  # heavy import, only when a mesh is actually read

    try:
        mesh = trimesh.load(path, process=False, force="mesh")
    except Exception as e:  # trimesh raises many types on malformed files
        log.error(path, None, f"cannot be read as a mesh ({type(e).__name__}: {e})", FIX_GT)
        return None
    v = np.asarray(mesh.vertices, dtype=np.float32)
    f = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    mark = log.mark()
    check_mesh(v, f, path, log)
    return None if log.errors_since(mark) else (v, f)


# ----------------------------------------------------------------------------------------------
# Load / save


def read_trajectory(folder: Path, log: ProblemLog, num_frames: int | None = None) -> HandObjectTrajectory | None:
    """Read and check a trajectory folder; None when it has errors (reported to `log`).

    `num_frames` (the build's T) makes every array be checked against it; without it T is
    taken from the folder's first time-indexed array.
    """
    folder = Path(folder)
    mark = log.mark()
    if not folder.is_dir():
        log.error(folder, None, "folder not found", FIX_GT)
        return None
    hands_path, obj_path, mesh_path = folder / HANDS_FILE, folder / OBJECT_FILE, folder / MESH_FILE
    if not hands_path.exists() and not obj_path.exists():
        log.error(folder, None, f"holds neither {HANDS_FILE} nor {OBJECT_FILE}", FIX_GT)
        return None
    hands_rec = read_npz(hands_path, log, FIX_GT) if hands_path.exists() else None
    obj_rec = read_npz(obj_path, log, FIX_GT) if obj_path.exists() else None
    if mesh_path.exists() and not obj_path.exists():
        log.warning(mesh_path, None, f"is ignored: there is no {OBJECT_FILE} with the object poses")
    T = num_frames if num_frames is not None else _infer_T(hands_rec, obj_rec)
    if T is None:
        if log.errors_since(mark):
            return None
        log.error(folder, None, "has no time-indexed array to take the frame count from", FIX_GT)
        return None
    sides = check_hands_record(hands_rec, T, hands_path, log, num_frames is not None) if hands_rec is not None else []
    if obj_rec is not None:
        check_object_record(obj_rec, T, obj_path, log, num_frames is not None)
        mesh = _load_mesh(mesh_path, log)
    if log.errors_since(mark):
        return None

    hands = {}
    for s in sides:
        p = f"{s}/"
        hands[s] = HandTrajectory(
            side=s,
            keypoints=hands_rec[p + "keypoints"].astype(np.float32),
            vertices=hands_rec[p + "vertices"].astype(np.float32),
            faces=hands_rec[p + "faces"].astype(np.int64),
            params={k: hands_rec[p + k].astype(np.float32) for k in HAND_PARAM_KEYS if p + k in hands_rec},
        )
    hand_model = None
    if hands_rec is not None and "hand_model" in hands_rec:
        hand_model = str(hands_rec["hand_model"].reshape(-1)[0])
    obj = None
    if obj_rec is not None:
        obj = ObjectTrajectory(
            vertices=mesh[0], faces=mesh[1], T_cam_from_obj=obj_rec["T_cam_from_obj"].astype(np.float32),
            K=None if "K" not in obj_rec else obj_rec["K"].astype(np.float64),
        )
    return HandObjectTrajectory(hands=hands, object=obj, num_frames=T, hand_model=hand_model)


PRED_DIR = "pred"


def resolve_trajectory_folder(path: Path | str) -> Path:
    """The trajectory folder of `path`: `path/gt` (a build with ground truth), else `path/pred`
    (a run holding its prediction), else `path` itself."""
    path = Path(path)
    for sub in (GT_DIR, PRED_DIR):
        if (path / sub).is_dir():
            return path / sub
    if (path / SEQUENCE_JSON).is_file():
        raise SequenceError(path, None, message="is a sequence build without a gt/ folder (no ground truth)",
                            fix="evaluate against a build made with ground truth (hold.synth, a benchmark "
                                "importer) or a prediction folder")
    return path


def load_trajectory(path: Path | str) -> HandObjectTrajectory:
    """Load a ground truth or prediction: a folder with the layout above, or one containing gt/ or pred/.

    Raises SequenceError naming the file and field of the first problem.
    """
    folder = resolve_trajectory_folder(path)
    traj = read_trajectory(folder, ProblemLog(fail_fast=True))
    assert traj is not None  # fail-fast log raised otherwise
    return traj


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def trajectory_to_records(traj: HandObjectTrajectory) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """(hands.npz arrays, object.npz arrays or None) of an in-memory trajectory."""
    hands: dict[str, np.ndarray] = {}
    if traj.hand_model is not None:
        hands["hand_model"] = np.array(str(traj.hand_model))
    for side, h in traj.hands.items():
        if h.side != side:
            raise SequenceError(HANDS_FILE, side, found=f"a HandTrajectory with side '{h.side}'",
                                expected=f"side '{side}' (its key in hands)", fix="key hands by HandTrajectory.side")
        p = f"{side}/"
        hands[p + "keypoints"] = _f32(h.keypoints)
        hands[p + "vertices"] = _f32(h.vertices)
        hands[p + "faces"] = np.asarray(h.faces)
        for k, v in h.params.items():
            hands[p + k] = _f32(v)
    obj = None
    if traj.object is not None:
        obj = {"T_cam_from_obj": _f32(traj.object.T_cam_from_obj)}
        if traj.object.K is not None:
            obj["K"] = np.asarray(traj.object.K, dtype=np.float64)
    return hands, obj


def save_trajectory(traj: HandObjectTrajectory, folder: Path | str) -> None:
    """Write `traj` in the layout above (checked in memory first; every file atomic).

    The folder holds exactly this trajectory afterwards: object files of an earlier save are
    removed when `traj.object` is None.
    """
    folder = Path(folder)
    if not traj.hands and traj.object is None:
        raise SequenceError(folder, None, message="would hold an empty trajectory (no hands, no object)",
                            fix="give save_trajectory at least one hand or the object")
    hands, obj = trajectory_to_records(traj)
    log = ProblemLog(fail_fast=True)
    T = int(traj.num_frames)
    check_hands_record(hands, T, folder / HANDS_FILE, log)
    for key in hands:
        if "/" in key and key.split("/", 1)[1] not in ("keypoints", "vertices", "faces", *HAND_PARAM_KEYS):
            raise SequenceError(folder / HANDS_FILE, key, message="is not part of the layout",
                                fix=f"HandTrajectory.params takes only {list(HAND_PARAM_KEYS)}")
    if traj.object is not None:
        check_object_record(obj, T, folder / OBJECT_FILE, log)
        check_mesh(_f32(traj.object.vertices), np.asarray(traj.object.faces), folder / MESH_FILE, log)

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_npz(folder / HANDS_FILE, hands)
    if traj.object is not None:
        import trimesh  # heavy import, only when a mesh is written

        mesh = trimesh.Trimesh(_f32(traj.object.vertices), np.asarray(traj.object.faces), process=False)
        atomic_write_bytes(folder / MESH_FILE, mesh.export(file_type="ply"))
        atomic_write_npz(folder / OBJECT_FILE, obj)
    else:
        for name in (OBJECT_FILE, MESH_FILE):
            if (folder / name).exists():
                (folder / name).unlink()
