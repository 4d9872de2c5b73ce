"""`hold validate BUILD`: check a build against the contract and report EVERY problem.

`load_sequence` stops at the first problem; `validate` goes on and also looks at what loading
never touches: the frame files (PNG headers only, masks fully decoded for their label values)
and the optional gt/ folder.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from hold.data.errors import Problem, ProblemLog
from hold.data.groundtruth import DEPTH_DIR, read_trajectory
from hold.data.io import read_meta, read_npz
from hold.data.schema import (
    FIX_HANDS, FIX_IMAGES, FIX_MASKS, FIX_OBJECT, GT_DIR, HAND_SIDES, HANDS_NPZ, IMAGES_DIR, LABELS,
    MASK_VALUES, MASKS_DIR, OBJECT_NPZ, SequenceMeta, check_hand_arrays, check_object_arrays, frame_name, t_note,
)

MAX_LISTED = 5
"""Files named per grouped problem before '...'."""
FIX_DEPTH = "regenerate the ground-truth depth (hold.synth) with hold.data.io.write_depth"


def validate(root: Path | str, require_masks: bool = False, check_images: bool = True) -> list[Problem]:
    """Every problem of the build at `root` ([] when it is valid).

    `require_masks` makes a missing masks/ folder an error; `check_images` opens every frame's
    PNG header (size, mode) and decodes every mask (label values); without it only file names
    are checked.
    """
    root = Path(root)
    log = ProblemLog(fail_fast=False)
    meta = read_meta(root, log)
    if meta is None or meta.num_frames is None:
        return log.problems  # no usable sequence.json: nothing else can be judged against it
    _check_hands(root, meta, log)
    _check_object(root, meta, log)
    _check_frames(root / IMAGES_DIR, meta, log, "image", check_images)
    masks = root / MASKS_DIR
    if masks.is_dir():
        _check_frames(masks, meta, log, "mask", check_images)
    elif require_masks:
        log.error(masks, None, f"folder not found (masks are required here, {meta.num_frames} expected)", FIX_MASKS)
    if (root / GT_DIR).is_dir():
        _check_gt(root / GT_DIR, meta, log, check_images)
    return log.problems


# ----------------------------------------------------------------------------------------------
# Trajectories


def _check_hands(root: Path, meta: SequenceMeta, log: ProblemLog) -> None:
    path = root / HANDS_NPZ
    if meta.hands is None:
        return  # already reported as a sequence.json problem
    if not meta.hands and not path.exists():
        return
    arrays = read_npz(path, log, FIX_HANDS, f"sequence.json lists hands {meta.hands}")
    if arrays is None:
        return
    for side in meta.hands:
        check_hand_arrays(arrays, side, meta.num_frames, path, log)
    for side in HAND_SIDES:
        if side not in meta.hands and any(k.startswith(f"{side}/") for k in arrays):
            log.warning(path, side, f"is in {HANDS_NPZ} but not in sequence.json hands {meta.hands}, so it is "
                        "ignored", f"add '{side}' to sequence.json hands if it is real")


def _check_object(root: Path, meta: SequenceMeta, log: ProblemLog) -> None:
    path = root / OBJECT_NPZ
    if meta.has_object is True:
        arrays = read_npz(path, log, FIX_OBJECT, "sequence.json has_object is true")
        if arrays is not None:
            check_object_arrays(arrays, meta.num_frames, path, log)
    elif meta.has_object is False and path.exists():
        log.warning(path, None, "is ignored: sequence.json has_object is false")


# ----------------------------------------------------------------------------------------------
# Frame folders


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (", ..." if len(names) > MAX_LISTED else "")


def _grouped_error(
    log: ProblemLog, folder: Path, items: list[tuple[str, str]], what: str, expected: str, fix: str
) -> None:
    """One error for files sharing a problem: names the file when it is one, lists a few otherwise."""
    if not items:
        return
    if len(items) == 1:
        name, found = items[0]
        log.error(folder / name, None, fix=fix, found=found, expected=expected)
        return
    shown = _listing([f"{name} ({found})" for name, found in items])
    log.error(folder, None, f"has {len(items)} {what}: {shown}; expected {expected}", fix)


def _check_frames(folder: Path, meta: SequenceMeta, log: ProblemLog, kind: str, check_content: bool) -> None:
    """Names (exactly 000000.png .. T-1), then header size/mode, then (masks) label values."""
    T = meta.num_frames
    fix = FIX_IMAGES if kind == "image" else FIX_MASKS
    if not folder.is_dir():
        log.error(folder, None, f"folder not found ({T} {kind}s expected {t_note(T)})", fix)
        return
    expected = [f"{frame_name(i)}.png" for i in range(T)]
    names = {p.name for p in folder.iterdir()}
    present = [n for n in expected if n in names]
    missing = [n for n in expected if n not in names]
    others = sorted(names - set(expected))
    extra = [n for n in others if n.lower().endswith(".png") and not n.startswith(".")]
    ignored = [n for n in others if n not in extra]
    if missing:
        log.error(folder, None, f"is missing {len(missing)} of {T} {kind}s {t_note(T)}: {_listing(missing)}", fix)
    if extra:
        log.error(folder, None, f"has {len(extra)} PNG files that are not frames 000000.png .. "
                  f"{frame_name(T - 1)}.png {t_note(T)}: {_listing(extra)}", fix + ", or remove the extra files")
    if ignored:
        log.warning(folder, None, f"has {len(ignored)} other files that are ignored: {_listing(ignored)}")
    if not check_content:
        return

    modes = ("RGB",) if kind == "image" else ("L", "P")
    mode_text = "mode RGB (8-bit, 3 channels)" if kind == "image" else "mode L (8-bit single-channel labels)"
    bad_size, bad_mode, unreadable, bad_values = [], [], [], []
    counts = np.zeros(256, dtype=np.int64)
    for name in present:
        try:
            with Image.open(folder / name) as im:  # lazy: only the header is parsed for size/mode
                size, mode = im.size, im.mode
                if mode not in modes:
                    bad_mode.append((name, f"mode {mode}"))
                if meta.image_size is not None and size != meta.image_size:
                    bad_size.append((name, f"size {size[0]}x{size[1]}"))
                if kind == "mask" and mode in modes:
                    c = np.bincount(np.asarray(im).ravel(), minlength=256)
                    values = [v for v in np.flatnonzero(c) if v not in MASK_VALUES]
                    if values:
                        bad_values.append((name, f"label values {[int(v) for v in values]}"))
                    counts += c[:256]
        except OSError as e:
            unreadable.append((name, f"an unreadable PNG ({e})"))
    if meta.image_size is not None:
        W, H = meta.image_size
        _grouped_error(log, folder, bad_size, f"{kind}s of the wrong size", f"{W}x{H} (image_size in sequence.json)",
                       fix)
    _grouped_error(log, folder, bad_mode, f"{kind}s in the wrong mode", mode_text, fix)
    _grouped_error(log, folder, unreadable, "unreadable files", "a readable PNG", fix)
    _grouped_error(log, folder, bad_values, "masks with invalid labels",
                   f"values in {sorted(MASK_VALUES)} (0 background, 1 object, 2 right, 3 left, 255 ignore)", fix)
    if kind == "mask":
        _check_label_use(folder, meta, counts, log)


def _check_label_use(folder: Path, meta: SequenceMeta, counts: np.ndarray, log: ProblemLog) -> None:
    """Warn when masks label an entity that sequence.json says is absent."""
    for side in HAND_SIDES:
        if meta.hands is not None and side not in meta.hands and counts[LABELS[side]] > 0:
            log.warning(folder, None, f"label {side} hand ({LABELS[side]}) appears although sequence.json hands is "
                        f"{meta.hands}")
    if meta.has_object is False and counts[LABELS["object"]] > 0:
        log.warning(folder, None, f"label object ({LABELS['object']}) appears although sequence.json has_object "
                    "is false")


# ----------------------------------------------------------------------------------------------
# Ground truth


def _check_gt(gt: Path, meta: SequenceMeta, log: ProblemLog, check_images: bool) -> None:
    traj = read_trajectory(gt, log, num_frames=meta.num_frames)
    if traj is not None:
        if meta.hands is not None and set(traj.hands) != set(meta.hands):
            log.warning(gt / "hands.npz", None, f"has hands {sorted(traj.hands)} but sequence.json lists {meta.hands}")
        if traj.object is not None and traj.object.K is not None and meta.K is not None \
                and not np.allclose(traj.object.K, meta.K, rtol=1e-6, atol=1e-6):
            log.warning(gt / "object.npz", "K", f"is {traj.object.K.tolist()}, sequence.json K is {meta.K.tolist()}")
    depth = gt / DEPTH_DIR
    if not depth.is_dir():
        return
    T = meta.num_frames
    expected = [f"{frame_name(i)}.png" for i in range(T)]
    names = {p.name for p in depth.iterdir()}
    missing = [n for n in expected if n not in names]
    if missing:
        log.error(depth, None, f"is missing {len(missing)} of {T} depth maps {t_note(T)}: {_listing(missing)}",
                  FIX_DEPTH)
    if not check_images:
        return
    bad = []
    for name in expected:
        if name not in names:
            continue
        try:
            with Image.open(depth / name) as im:
                if im.mode not in ("I;16", "I") or (meta.image_size is not None and im.size != meta.image_size):
                    bad.append((name, f"mode {im.mode} size {im.size[0]}x{im.size[1]}"))
        except OSError as e:
            bad.append((name, f"an unreadable PNG ({e})"))
    size = "" if meta.image_size is None else f" size {meta.image_size[0]}x{meta.image_size[1]}"
    _grouped_error(log, depth, bad, "bad depth maps", f"mode I;16 (uint16, 0.1 mm units){size}", FIX_DEPTH)


# ----------------------------------------------------------------------------------------------
# Report and command


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _relative(path: Path, root: Path) -> str:
    try:
        rel = Path(path).relative_to(root)
    except ValueError:
        return str(path)
    return str(root) if str(rel) == "." else str(rel)


def _summary(root: Path) -> str:
    """'4 frames, 16x12 px, hands: right+left, object, masks, ground truth' of a valid build."""
    meta = read_meta(root, ProblemLog(fail_fast=False))
    if meta is None or meta.num_frames is None or meta.image_size is None:
        return ""
    parts = [_plural(meta.num_frames, "frame"), f"{meta.image_size[0]}x{meta.image_size[1]} px",
             f"hands: {'+'.join(meta.hands) if meta.hands else 'none'}",
             "object" if meta.has_object else "no object",
             "masks" if (root / MASKS_DIR).is_dir() else "no masks"]
    if (root / GT_DIR).is_dir():
        parts.append("ground truth")
    return ", ".join(parts)


def format_report(problems: list[Problem], root: Path | str) -> str:
    """A readable multi-line report: errors, then warnings, then a summary line.

    The last line is 'N errors, M warnings' when there are errors, else
    'OK: <root> is a valid build (T frames, ...)'.
    """
    root = Path(root)
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    lines = []
    for p in errors + warnings:
        head = f"{p.severity.upper():<8}{_relative(p.path, root)}: "
        if p.field:
            head += f"field '{p.field}' "
        lines.append(head + p.message.rstrip(".") + ".")
        if p.fix:
            lines.append(" " * 8 + f"Fix: {p.fix}")
    if errors:
        lines.insert(0, f"{root}: the build is NOT valid")
        lines.append(f"{_plural(len(errors), 'error')}, {_plural(len(warnings), 'warning')}")
    else:
        tail = f" with {_plural(len(warnings), 'warning')}" if warnings else ""
        lines.append(f"OK: {root} is a valid build ({_summary(root)}){tail}")
    return "\n".join(lines)


def validate_command(argv: list[str] | None = None) -> int:
    """`hold validate BUILD [--require-masks] [--skip-images]`: print the report; exit 0 if valid, 1 if not."""
    parser = argparse.ArgumentParser(
        prog="hold validate",
        description="Check a sequence build against the contract and report every problem.",
    )
    parser.add_argument("build", metavar="BUILD", type=Path, help="the build folder (holds sequence.json)")
    parser.add_argument("--require-masks", action="store_true", help="a missing masks/ folder is an error")
    parser.add_argument("--skip-images", action="store_true",
                        help="check frame file names only; do not open PNG headers or decode masks (faster)")
    args = parser.parse_args(argv)
    problems = validate(args.build, require_masks=args.require_masks, check_images=not args.skip_images)
    print(format_report(problems, args.build))
    return 1 if any(p.severity == "error" for p in problems) else 0
