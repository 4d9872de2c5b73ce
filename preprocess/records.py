"""Step records: what a preprocessing step read, did and wrote, so that an unchanged step is skipped.

Every step writes `SEQ_DIR/preprocess/<step>.json` LAST, after all of its outputs are in place:

    step, fingerprint        sha256 of the inputs' stats (size + mtime of each file) and the options
    output_fingerprint       the same over the outputs, so deleted or edited outputs redo the step
    options, inputs, outputs what was asked, read (per-path stats) and written (paths relative to SEQ_DIR)
    info                     step-specific results later steps need (e.g. frames: fps, resize factor)
    estimated, warnings      which artefacts were estimated rather than imported; what looked wrong
    timings                  seconds per phase; hold_version, finished (UTC, ISO 8601)

A step is skipped when its record exists, the fingerprint of its current inputs and options equals the
recorded one, and its outputs are unchanged since it finished. A step that redoes its work removes its
record first (`remove_record`), so an interrupted redo is never mistaken for a finished one, and
writes folders through `staged_folder`, so a failing redo leaves the previous outputs intact.

Typical use inside a step:

    fp = fingerprint([video], options, root=seq_dir)
    if should_skip(seq_dir, "frames", fp, force):
        return 0
    remove_record(seq_dir, "frames")
    with staged_folder(seq_dir / "images") as tmp:
        ...write tmp/000000.png...
    write_record(seq_dir, "frames", fp, options=options, inputs=[video], outputs=["images"], info={...})
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hold
from hold.data.io import atomic_write_json

RECORD_DIR = "preprocess"
"""Folder of the step records inside SEQ_DIR."""
RECORD_VERSION = 1
"""Layout version of a record; a record of another version is ignored (the step redoes)."""

PathLike = str | os.PathLike


@dataclass
class StepRecord:
    """The record of one finished preprocessing step (SEQ_DIR/preprocess/<step>.json)."""

    step: str
    """Step name ('frames', 'masks', ...)."""
    fingerprint: str
    """sha256 (hex) of the inputs' stats and the options, from `fingerprint`."""
    output_fingerprint: str
    """sha256 (hex) of the outputs' stats when the step finished."""
    options: dict[str, Any] = field(default_factory=dict)
    """The options the step ran with (JSON types)."""
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per input path: its stats (kind, size in bytes, mtime in ns, file count for folders)."""
    outputs: list[str] = field(default_factory=list)
    """Output files/folders, relative to SEQ_DIR."""
    info: dict[str, Any] = field(default_factory=dict)
    """Step-specific results for later steps and provenance (JSON types)."""
    estimated: list[str] = field(default_factory=list)
    """Artefacts this step estimated itself rather than imported (e.g. ['masks'])."""
    warnings: list[str] = field(default_factory=list)
    """Warnings raised while running (also printed)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Wall time per phase in seconds."""
    hold_version: str = hold.__version__
    """Version of hold that wrote the record."""
    finished: str = ""
    """UTC time the step finished (ISO 8601)."""
    record_version: int = RECORD_VERSION
    """Layout version of this record."""


def record_path(seq_dir: PathLike, step: str) -> Path:
    """SEQ_DIR/preprocess/<step>.json."""
    return Path(seq_dir) / RECORD_DIR / f"{step}.json"


# ----------------------------------------------------------------------------------------------
# Fingerprints


def _visible_files(folder: Path) -> list[Path]:
    """Files under `folder` (recursive), sorted; hidden names (temp files, .DS_Store) are skipped."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in filenames if not f.startswith(".")]
    return sorted(out)


def _key(path: Path, root: Path | None) -> str:
    """The name of `path` in a fingerprint: relative to `root` when inside it (a moved SEQ_DIR keeps its
    fingerprints), else absolute."""
    p = Path(os.path.abspath(path))
    if root is not None:
        with contextlib.suppress(ValueError):
            return p.relative_to(Path(os.path.abspath(root))).as_posix() or "."
    return p.as_posix()


def path_stats(paths: Iterable[PathLike], root: PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Stats of each path: file -> size and mtime; folder -> file count, total size, newest mtime and a
    digest of every visible file's (name, size, mtime); missing -> kind 'missing'."""
    root = None if root is None else Path(root)
    stats: dict[str, dict[str, Any]] = {}
    for path in paths:
        path = Path(path)
        key = _key(path, root)
        if path.is_file():
            st = path.stat()
            stats[key] = {"kind": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        elif path.is_dir():
            h = hashlib.sha256()
            size = mtime = 0
            files = _visible_files(path)
            for f in files:
                st = f.stat()
                size += st.st_size
                mtime = max(mtime, st.st_mtime_ns)
                h.update(f"{f.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            stats[key] = {"kind": "dir", "files": len(files), "size": size, "mtime_ns": mtime,
                          "digest": h.hexdigest()}
        else:
            stats[key] = {"kind": "missing"}
    return stats


def to_jsonable(x: Any) -> Any:
    """Options/info as plain JSON types: paths -> str, tuples/sets -> lists, dataclasses -> dicts, numpy (or
    torch) arrays and scalars -> lists and Python numbers."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return to_jsonable(dataclasses.asdict(x))
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, (set, frozenset)):
        return [to_jsonable(v) for v in sorted(x)]
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):  # numpy/torch arrays and scalars
        return to_jsonable(x.tolist())
    return x


def fingerprint(paths: Iterable[PathLike], options: Mapping[str, Any], root: PathLike | None = None) -> str:
    """sha256 (hex) of the stats of `paths` (see `path_stats`) and `options` (key order does not matter).

    Content is not hashed: a file rewritten with the same size in the same nanosecond is the only change it
    misses. Paths inside `root` (SEQ_DIR) are keyed relative to it.
    """
    payload = {"inputs": path_stats(paths, root), "options": to_jsonable(dict(options))}
    text = json.dumps(payload, sort_keys=True, default=str, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------------
# Records


def load_record(seq_dir: PathLike, step: str) -> StepRecord | None:
    """The record of `step`, or None when it is missing, unreadable or of another layout version."""
    path = record_path(seq_dir, step)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("record_version") != RECORD_VERSION or raw.get("step") != step:
            return None
        names = {f.name for f in dataclasses.fields(StepRecord)}
        return StepRecord(**{k: v for k, v in raw.items() if k in names})
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def should_skip(
    seq_dir: PathLike, step: str, fingerprint: str, force: bool, say: Callable[[str], None] = _say
) -> bool:
    """True when `step` already finished with these inputs and options and its outputs are untouched.

    Says why it skips (or why it redoes, when a record exists) through `say` (stderr by default).
    `force` always redoes.
    """
    rec = load_record(seq_dir, step)
    if rec is None:
        return False
    if force:
        say(f"hold preprocess {step}: --force given, redoing it")
        return False
    if rec.fingerprint != fingerprint:
        say(f"hold preprocess {step}: inputs or options changed since the run of {rec.finished}, redoing it")
        return False
    seq_dir = Path(seq_dir)
    missing = [o for o in rec.outputs if not (seq_dir / o).exists()]
    if missing:
        say(f"hold preprocess {step}: outputs {missing} are missing, redoing it")
        return False
    if output_fingerprint(seq_dir, rec.outputs) != rec.output_fingerprint:
        say(f"hold preprocess {step}: outputs {rec.outputs} changed since the run of {rec.finished}, redoing it")
        return False
    say(f"hold preprocess {step}: up to date (same inputs and options as the run of {rec.finished}), "
        f"skipped; pass --force to redo it")
    return True


def output_fingerprint(seq_dir: PathLike, outputs: Sequence[str]) -> str:
    """Fingerprint of a step's outputs (paths relative to SEQ_DIR)."""
    seq_dir = Path(seq_dir)
    return fingerprint([seq_dir / o for o in outputs], {}, root=seq_dir)


def write_record(
    seq_dir: PathLike,
    step: str,
    fingerprint: str,
    *,
    options: Mapping[str, Any],
    inputs: Iterable[PathLike],
    outputs: Sequence[str],
    info: Mapping[str, Any] | None = None,
    estimated: Iterable[str] = (),
    warnings: Iterable[str] = (),
    timings: Mapping[str, float] | None = None,
) -> StepRecord:
    """Write the record of a finished step (atomically) and return it. Call it after every output is written.

    `fingerprint` is the one `should_skip` was given (of the inputs before the step ran); `outputs` are paths
    relative to SEQ_DIR.
    """
    seq_dir = Path(seq_dir)
    outputs = [Path(o).as_posix() for o in outputs]
    rec = StepRecord(
        step=step,
        fingerprint=fingerprint,
        output_fingerprint=output_fingerprint(seq_dir, outputs),
        options=to_jsonable(dict(options)),
        inputs=path_stats(inputs, seq_dir),
        outputs=outputs,
        info=to_jsonable(dict(info or {})),
        estimated=list(estimated),
        warnings=list(warnings),
        timings={k: round(float(v), 4) for k, v in (timings or {}).items()},
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    atomic_write_json(record_path(seq_dir, step), dataclasses.asdict(rec), allow_nan=False)
    return rec


def remove_record(seq_dir: PathLike, step: str) -> None:
    """Forget that `step` finished (call before a redo starts touching outputs)."""
    with contextlib.suppress(FileNotFoundError):
        record_path(seq_dir, step).unlink()


# ----------------------------------------------------------------------------------------------
# Whole-folder outputs


@contextlib.contextmanager
def staged_folder(final: PathLike) -> Iterator[Path]:
    """Yield an empty temp folder next to `final`; on a clean exit it replaces `final` as a whole.

    On an exception the temp folder is removed and `final` is untouched, so a failed redo keeps the previous
    outputs; on success nothing of the previous `final` remains (no stale frames beyond the new count).
    Leftovers of a hard-killed earlier run (hidden `.<name>.*` siblings) are removed first.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in final.parent.glob(f".{final.name}.*.old"):
        shutil.rmtree(stale, ignore_errors=True)
    tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp = final.with_name(f".{final.name}.{tag}.tmp")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.{tag}.old")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
