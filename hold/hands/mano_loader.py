"""Read the user's MANO pickle without chumpy, and find it in `--mano-dir`.

MANO (https://mano.is.tue.mpg.de) is licence-gated: hold never ships or downloads it; users
point `--mano-dir` at the MANO_RIGHT.pkl / MANO_LEFT.pkl they downloaded. Those files are
Python 2 pickles holding `chumpy.ch.Ch` objects, and chumpy does not import on Python 3.11 /
numpy 2. So we unpickle with every `chumpy.*` class replaced by a stub that just keeps the
pickled state (a Ch keeps its array in state['x']), then turn everything into plain numpy:
stubs -> arrays, the scipy sparse J_regressor -> dense, kintree_table -> int64 with the root's
parent -1 (the file stores 4294967295), faces -> int64. The 9 keys smplx reads are validated.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

MANO_FIX = ("point --mano-dir at the folder holding the MANO_RIGHT.pkl/MANO_LEFT.pkl you downloaded from "
            "the MANO website (https://mano.is.tue.mpg.de, registration required; hold never ships it), "
            "or use the embedded hand model: --hand-model anny")

REQUIRED_SHAPES: dict[str, tuple[int, ...]] = {
    "v_template": (778, 3),
    "shapedirs": (778, 3, 10),
    "posedirs": (778, 3, 135),
    "J_regressor": (16, 778),
    "weights": (778, 16),
    "kintree_table": (2, 16),
    "f": (1538, 3),
    "hands_components": (45, 45),
    "hands_mean": (45,),
}
"""The keys smplx.MANO reads and their shapes in MANO v1.2."""
_INT_KEYS = ("kintree_table", "f")

SIDES = ("right", "left")
# Where, under --mano-dir, MANO_{RIGHT,LEFT}.pkl may sit: the folder itself, smplx.create's
# layout (<dir>/mano/), and the unpacked MANO download (mano_v1_2/models/).
_SUBFOLDERS = (".", "mano", "models", "mano_v1_2/models")


class ManoFileError(ValueError):
    """A MANO file has missing or malformed content; the message names the file, key, expected
    vs found, and the fix."""

    def __init__(self, path: Path | str, key: str | None, expected: str, found: str, fix: str = MANO_FIX):
        self.path = Path(path)
        """The offending file."""
        self.key = key
        """The dict key inside it, None when the file as a whole is the problem."""
        self.expected, self.found, self.fix = expected, found, fix
        """What MANO v1.2 has; what is there (a verb phrase: 'is missing', 'has shape ...'); the fix."""
        where = f"{path}: key '{key}'" if key else f"{path}:"
        super().__init__(f"{where} {found}, expected {expected}. Fix: {fix}.")


class _ChumpyStub:
    """Stands in for a chumpy class while unpickling: keeps the pickled state, needs no chumpy."""

    chumpy_class = "chumpy"

    def __init__(self, *args, **kwargs):
        self.state: Any = None
        self.args = args

    def __setstate__(self, state):
        self.state = state


_STUBS: dict[str, type] = {}


def _stub_class(qualified: str) -> type:
    """One stub subclass per chumpy class name, so errors can say which class was found."""
    if qualified not in _STUBS:
        _STUBS[qualified] = type(qualified.rsplit(".", 1)[-1], (_ChumpyStub,), {"chumpy_class": qualified})
    return _STUBS[qualified]


class _NoChumpyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "chumpy" or module.startswith("chumpy."):
            return _stub_class(f"{module}.{name}")
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            # Old pickles name private scipy modules (scipy.sparse.csc, ...) that scipy may drop.
            if module.startswith("scipy.sparse") and hasattr(scipy.sparse, name):
                return getattr(scipy.sparse, name)
            raise


def _to_numpy(value: Any, key: str, path: Path) -> Any:
    """A stub -> its array, sparse -> dense, array-likes -> ndarray; strings and the rest unchanged."""
    if isinstance(value, _ChumpyStub):
        state = value.state if isinstance(value.state, dict) else {}
        if state.get("x") is None:
            raise ManoFileError(path, key, "a chumpy.Ch holding an array (state['x'])",
                                f"is a {value.chumpy_class} object without a stored array")
        return np.asarray(state["x"])
    if scipy.sparse.issparse(value):
        return value.toarray()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)):
        try:
            return np.asarray(value)
        except ValueError:
            return value
    return value


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"has shape {value.shape} (dtype {value.dtype})"
    return f"is a {type(value).__name__}"


def _validate(data: dict[str, Any], path: Path) -> None:
    for key, shape in REQUIRED_SHAPES.items():
        if key not in data:
            present = ", ".join(sorted(data)) or "none"
            raise ManoFileError(path, key, f"an array of shape {shape}", f"is missing (the file has: {present})")
        value = data[key]
        if not isinstance(value, np.ndarray) or value.shape != shape:
            raise ManoFileError(path, key, f"shape {shape}", _describe(value))
        if not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
            raise ManoFileError(path, key, f"a numeric array of shape {shape}", _describe(value))
        if key not in _INT_KEYS and not np.isfinite(value).all():
            raise ManoFileError(path, key, "finite values", "has NaN or infinite values")
    f = data["f"]
    if f.min() < 0 or f.max() >= REQUIRED_SHAPES["v_template"][0]:
        raise ManoFileError(path, "f", "vertex indices in [0, 778)", f"has indices in [{f.min()}, {f.max()}]")
    parents = data["kintree_table"][0]
    if any(not 0 <= parents[j] < j for j in range(1, len(parents))):
        raise ManoFileError(path, "kintree_table", "row 0 = parent of each joint, each parent before its child",
                            f"has parents {parents.tolist()}")


def load_mano_pickle(path: str | Path) -> dict[str, Any]:
    """Load a MANO pickle (chumpy or not) into plain numpy arrays and validate the 9 keys smplx reads.

    Returns every key of the file: float arrays as float64, `J_regressor` dense (16, 778),
    `kintree_table` int64 (2, 16) with the root's parent -1, `f` int64 (1538, 3); non-array
    entries (`bs_style`, `bs_type`) unchanged. Raises FileNotFoundError / ManoFileError with the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MANO model file not found. Fix: {MANO_FIX}.")
    try:
        with open(path, "rb") as fh:
            raw = _NoChumpyUnpickler(fh, encoding="latin1").load()
    except ManoFileError:
        raise
    except Exception as e:  # any unpickling failure means "not a MANO pickle"
        found = f"does not unpickle ({type(e).__name__}: {e})"
        raise ManoFileError(path, None, "a MANO model pickle", found) from e
    if not isinstance(raw, dict):
        raise ManoFileError(path, None, "a pickled dict of MANO arrays", f"holds a pickled {type(raw).__name__}")
    data = {str(k): _to_numpy(v, str(k), path) for k, v in raw.items()}
    _validate(data, path)
    for key, value in data.items():
        if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
            data[key] = value.astype(np.float64)
    kintree = data["kintree_table"].astype(np.int64)
    kintree[0, 0] = -1  # stored as 4294967295 (uint32 -1) in the real file
    data["kintree_table"] = kintree
    data["f"] = data["f"].astype(np.int64)
    data["J_regressor"] = np.asarray(data["J_regressor"], dtype=np.float64)
    return data


def mano_file_name(side: str) -> str:
    if side not in SIDES:
        raise ValueError(f"MANO side must be 'right' or 'left', got {side!r}")
    return f"MANO_{side.upper()}.pkl"


def find_mano_file(mano_dir: str | Path, side: str) -> Path:
    """The MANO_{RIGHT,LEFT}.pkl for `side` under `mano_dir`.

    `mano_dir` may be the folder holding the file, its parent with a `mano/` subfolder (the layout
    smplx.create expects), the unpacked MANO download (`models/` or `mano_v1_2/models/`), or the
    .pkl file itself.
    """
    name = mano_file_name(side)
    root = Path(mano_dir).expanduser()
    if root.is_file():
        other = mano_file_name("left" if side == "right" else "right")
        if root.name.upper() == other.upper():
            raise ValueError(f"--mano-dir {root}: is the {other} model, but the {side} hand was asked for. "
                             f"Fix: point --mano-dir at the folder holding both MANO_RIGHT.pkl and MANO_LEFT.pkl.")
        return root
    if not root.is_dir():
        raise FileNotFoundError(f"--mano-dir {root}: no such folder. Fix: {MANO_FIX}.")
    candidates = [root / sub / name for sub in _SUBFOLDERS]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"--mano-dir {root}: no {name} found (looked for {looked}). Fix: {MANO_FIX}.")
