"""`hold preprocess masks SEQ_DIR (--labels DIR | --object DIR [--right DIR] [--left DIR])`: import masks made
elsewhere as the label masks of the contract, SEQ_DIR/masks/000000.png ... (0 background, 1 object,
2 right hand, 3 left hand, 255 ignore).

Two inputs:
- label masks (--labels): single-channel PNGs whose values are already labels of the contract;
- per-entity binary masks (--object, --right, --left; SAM-Track / SAM2 style): any nonzero pixel belongs to
  the entity (a mask with more than one nonzero value, e.g. a JPEG, is thresholded at 128 with a warning).
  Where entities overlap a hand wins over the object (hands occlude what they hold); where both hands
  claim a pixel it is marked ignore. Overlaps are reported.

Mask files are matched to frames by name (the frames' own 000000.png names, or the input's file names
recorded by the frames step), else in sorted order when there is one per frame, else (one per input
frame) by the stride the frames step used. Masks at another resolution that is a clean rescale of the
frames (same aspect ratio, e.g. the original video's) are resized with nearest neighbour.
`--ignore-band PX` marks pixels within PX pixels of another label (centre to centre) as 255: the
low-confidence band where imported masks and frames disagree most.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Bool, UInt8
from PIL import Image
from scipy.ndimage import distance_transform_edt

from hold.data.errors import SequenceError
from hold.data.io import write_image, write_mask
from hold.data.schema import FRAME_DIGITS, IMAGES_DIR, LABELS, MASK_VALUES, MASKS_DIR, frame_name
from hold.progress import track
from hold.synth.preview import overlay_labels
from preprocess.frames import FramesInfo, contact_sheet, load_frames_info, natural_key, read_rgb
from preprocess.records import (
    StepRecord, fingerprint, load_record, output_fingerprint, remove_record, should_skip, staged_folder,
    write_record,
)

STEP = "masks"
MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
QA_PATH = "qa/masks.png"
ENTITIES: dict[str, int] = {"object": LABELS["object"], "right": LABELS["right"], "left": LABELS["left"]}
IGNORE = LABELS["ignore"]
FIX_FRAMES = "run `hold preprocess frames INPUT --out SEQ_DIR` first"


@dataclass
class MasksConfig:
    """Where the masks come from and how they are cleaned."""

    labels: Path | None = None
    """Folder of label masks (values 0, 1, 2, 3, 255); excludes the per-entity folders."""
    object: Path | None = None
    """Folder of binary object masks (nonzero = object)."""
    right: Path | None = None
    """Folder of binary right-hand masks (nonzero = right hand)."""
    left: Path | None = None
    """Folder of binary left-hand masks (nonzero = left hand)."""
    ignore_band: int = 0
    """Pixels within this distance of another label become 255 (ignore), in pixels; 0 = none."""
    threshold: int = 128
    """Binary masks with more than one nonzero value: pixel >= threshold (8-bit scale) is the entity."""

    def sources(self) -> dict[str, Path]:
        """The given folders by role ('labels' or entity names)."""
        return {k: Path(v) for k, v in (("labels", self.labels), ("object", self.object), ("right", self.right),
                                        ("left", self.left)) if v is not None}


# ----------------------------------------------------------------------------------------------
# Pure helpers


def binarize(values: np.ndarray, threshold: int = 128) -> tuple[Bool[np.ndarray, "H W"], bool]:
    """(entity mask, was it binary). Binary = at most one nonzero value: then any nonzero pixel is the entity;
    otherwise pixels >= threshold on the 8-bit scale (16-bit masks: threshold * 257; floats in [0, 1]: * 255)."""
    values = np.asarray(values)
    nz = values[values != 0]
    if nz.size == 0 or nz.min() == nz.max():
        return values != 0, True
    if np.issubdtype(values.dtype, np.floating) and values.max() <= 1.0:
        return values * 255.0 >= threshold, False
    scale = 257 if values.max() > 255 else 1
    return values >= threshold * scale, False


def combine_entities(
    object_mask: Bool[np.ndarray, "H W"] | None,
    right_mask: Bool[np.ndarray, "H W"] | None,
    left_mask: Bool[np.ndarray, "H W"] | None,
    shape: tuple[int, int],
) -> tuple[UInt8[np.ndarray, "H W"], dict[str, int]]:
    """Label mask from entity masks: a hand wins over the object, both hands at once -> ignore (255).
    Returns the labels and the overlap pixel counts {'hand_object', 'right_left'}."""
    empty = np.zeros(shape, bool)
    obj = empty if object_mask is None else object_mask
    right = empty if right_mask is None else right_mask
    left = empty if left_mask is None else left_mask
    labels = np.zeros(shape, np.uint8)
    labels[obj] = ENTITIES["object"]
    labels[right] = ENTITIES["right"]
    labels[left] = ENTITIES["left"]
    both = right & left
    labels[both] = IGNORE
    overlap = {"hand_object": int((obj & (right | left)).sum()), "right_left": int(both.sum())}
    return labels, overlap


def boundary_band(labels: UInt8[np.ndarray, "H W"], radius_px: float) -> Bool[np.ndarray, "H W"]:
    """Pixels within `radius_px` (Euclidean, pixel centre to centre) of a pixel of another label among
    0-3 (ignore pixels are no label; the image border is no boundary). Two labels meeting between columns
    c-1 and c give the columns [c - r, c + r - 1]: r pixels on each side."""
    near = np.zeros(labels.shape, np.uint8)
    for label in (0, 1, 2, 3):
        is_label = labels == label
        if not is_label.any():
            continue
        near += distance_transform_edt(~is_label) <= radius_px  # within reach of this label (0 on it)
    return near >= 2


def apply_ignore_band(labels: UInt8[np.ndarray, "H W"], radius_px: float) -> UInt8[np.ndarray, "H W"]:
    """`labels` with the boundary band set to 255 (a copy; radius 0 returns it unchanged)."""
    if radius_px <= 0:
        return labels
    out = labels.copy()
    out[boundary_band(labels, radius_px)] = IGNORE
    return out


def is_clean_rescale(size: tuple[int, int], target: tuple[int, int]) -> bool:
    """Whether an image of size (w, h) maps onto target (W, H) by one scale factor, up to 1 px rounding."""
    (w, h), (W, H) = size, target
    return abs(h * W / w - H) <= 1.0 and abs(w * H / h - W) <= 1.0


def resize_nearest(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize to size=(W, H) (labels stay labels)."""
    if (values.shape[1], values.shape[0]) == tuple(size):
        return values
    return np.asarray(Image.fromarray(values).resize(size, Image.Resampling.NEAREST))


# ----------------------------------------------------------------------------------------------
# Reading mask files


def read_mask_values(path: Path) -> tuple[np.ndarray, bool]:
    """(values (H, W), is_colour) of a mask file: palette PNGs give their indices, RGB(A) images with equal
    channels their grey value, other RGB images the max over channels (is_colour True)."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode == "1":
                return np.asarray(im, dtype=np.uint8), False
            if mode in ("L", "P"):
                return np.asarray(im), False
            if mode == "LA":
                return np.asarray(im)[..., 0], False
            if mode.startswith("I") or mode == "F":
                return np.asarray(im), False
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise SequenceError(path, None, message=f"cannot be read as an image ({e})",
                            fix="re-export the mask as PNG") from None
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0], False
    return rgb.max(axis=2), True


def image_size(path: Path, fix: str = "re-export the mask as PNG") -> tuple[int, int]:
    """(W, H) of an image file, from its header."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError) as e:
        raise SequenceError(path, None, message=f"cannot be read as an image ({e})", fix=fix) from None


def list_masks(folder: Path, role: str) -> list[Path]:
    """Mask image files of a folder, naturally sorted (hidden files skipped); errors when there are none."""
    option = f"--{role}"
    if not folder.is_dir():
        raise SequenceError(folder, option, message="folder not found", fix="check the path")
    files = [p for p in folder.iterdir()
             if p.is_file() and p.suffix.lower() in MASK_SUFFIXES and not p.name.startswith(".")]
    if not files:
        raise SequenceError(folder, option, message=f"contains no mask images ({'/'.join(MASK_SUFFIXES)})",
                            fix="point at the folder holding one mask per frame")
    files.sort(key=lambda p: natural_key(p.name))
    stems = [p.stem for p in files]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise SequenceError(folder, option, message=f"has several files per frame name ({dup[:3]})",
                            fix="keep one file per frame (e.g. only the .png)")
    return files


def match_masks(
    files: list[Path], folder: Path, role: str, frame_stems: list[str], frames: FramesInfo | None
) -> tuple[list[Path], str]:
    """The mask file of every frame and the rule that matched them (see the module docstring)."""
    T = len(frame_stems)
    by_stem = {p.stem: p for p in files}
    if len(files) == T and all(s in by_stem for s in frame_stems):
        return [by_stem[s] for s in frame_stems], "by the frames' names"
    if frames is not None and all(n in by_stem for n in frames.source_names):
        return [by_stem[n] for n in frames.source_names], "by the input frames' names"
    if len(files) == T:
        return files, "one per frame, in sorted order"
    if frames is not None and frames.source_num_frames and len(files) == frames.source_num_frames:
        return [files[i] for i in frames.source_frames], f"one per input frame (sorted), every {frames.stride}-th"
    expected = f"{T} (one per frame in images/)"
    if frames is not None and frames.source_num_frames and frames.source_num_frames != T:
        expected += f" or {frames.source_num_frames} (one per frame of the input {Path(frames.source['path']).name})"
    raise SequenceError(folder, f"--{role}", found=f"{len(files)} mask files", expected=expected,
                        fix="export one mask per frame, named like the frames (000000.png) or in frame order")


def frame_stems(seq_dir: Path) -> tuple[list[str], tuple[int, int]]:
    """Names of the frames in SEQ_DIR/images (000000 ... contiguous) and their size (W, H); every step lists the
    frames with it."""
    folder = seq_dir / IMAGES_DIR
    stems = sorted(p.stem for p in folder.glob("*.png")
                   if len(p.stem) == FRAME_DIGITS and p.stem.isdigit()) if folder.is_dir() else []
    if not stems:  # no folder or no frames in it: the frames step has not run
        raise SequenceError(folder, None, message="has no frames (000000.png ...)", fix=FIX_FRAMES)
    if stems != [frame_name(i) for i in range(len(stems))]:
        raise SequenceError(folder, None, found=f"frames {stems[0]} ... {stems[-1]} with gaps",
                            expected="000000.png ... without gaps", fix=FIX_FRAMES)
    return stems, image_size(folder / f"{stems[0]}.png", fix=FIX_FRAMES)


def _frames_info(seq_dir: Path, T: int) -> FramesInfo | None:
    """The frames step's record when it still describes images/ (not a stale one)."""
    rec = load_record(seq_dir, "frames")
    if rec is None or rec.output_fingerprint != output_fingerprint(seq_dir, rec.outputs):
        return None
    info = load_frames_info(seq_dir)
    return info if info is not None and info.num_frames == T else None


# ----------------------------------------------------------------------------------------------
# The step


@dataclass
class _Stats:
    """What the import saw, frame by frame."""

    label_px: dict[str, list[int]] = field(default_factory=lambda: {k: [] for k in LABELS})
    overlap_hand_object: list[int] = field(default_factory=list)
    overlap_right_left: list[int] = field(default_factory=list)
    nonbinary: dict[str, list[str]] = field(default_factory=dict)
    label_values: set[int] = field(default_factory=set)


def _check_config(cfg: MasksConfig, seq_dir: Path) -> None:
    if cfg.labels is not None and any(v is not None for v in (cfg.object, cfg.right, cfg.left)):
        raise SequenceError(cfg.labels, "--labels", message="was given together with per-entity folders",
                            fix="pass either --labels DIR or --object DIR [--right DIR] [--left DIR]")
    if cfg.labels is None and cfg.object is None:
        raise SequenceError(seq_dir, "--object", message="is missing (no masks given)",
                            fix="pass --labels DIR, or --object DIR [--right DIR] [--left DIR]")
    for role, folder in cfg.sources().items():
        if folder.resolve() == (seq_dir / MASKS_DIR).resolve():
            raise SequenceError(folder, f"--{role}", message="is the output folder of this step (SEQ_DIR/masks)",
                                fix="move the masks to import to another folder and pass that one")
    if cfg.ignore_band < 0:
        raise SequenceError(seq_dir, "--ignore-band", found=str(cfg.ignore_band), expected="pixels >= 0",
                            fix="pass e.g. --ignore-band 2, or 0 for none")
    if not 0 < cfg.threshold <= 255:
        raise SequenceError(seq_dir, "--threshold", found=str(cfg.threshold), expected="1 ... 255",
                            fix="pass e.g. --threshold 128")


def _load_frame_labels(
    t: int, files: dict[str, list[Path]], size: tuple[int, int], cfg: MasksConfig, stats: _Stats
) -> np.ndarray:
    """The label mask of frame t from the given files (resized to `size`), before the ignore band."""
    W, H = size
    if "labels" in files:
        path = files["labels"][t]
        values, colour = read_mask_values(path)
        if colour:
            raise SequenceError(path, None, message="is a colour image (its channels differ)",
                                fix="save label masks single-channel with values 0, 1, 2, 3, 255")
        if values.dtype != np.uint8:
            bad = sorted(set(np.unique(values).tolist()) - MASK_VALUES)
        else:
            counts = np.bincount(values.ravel(), minlength=256)
            bad = [v for v in np.flatnonzero(counts).tolist() if v not in MASK_VALUES]
        if bad:
            raise SequenceError(path, None, found=f"label values {bad[:8]}",
                                expected=f"values in {sorted(MASK_VALUES)} (0 background, 1 object, 2 right hand, "
                                         f"3 left hand, 255 ignore)",
                                fix="map the values to these labels, or pass binary masks with --object/--right/--left")
        values = values.astype(np.uint8)
        stats.label_values.update(np.flatnonzero(np.bincount(values.ravel(), minlength=256)).tolist())
        return resize_nearest(values, size)
    masks: dict[str, np.ndarray] = {}
    for role, paths in files.items():
        values, _ = read_mask_values(paths[t])
        mask, binary = binarize(values, cfg.threshold)
        if not binary:
            stats.nonbinary.setdefault(role, []).append(paths[t].name)
        masks[role] = resize_nearest(mask.astype(np.uint8), size).astype(bool)
    labels, overlap = combine_entities(masks.get("object"), masks.get("right"), masks.get("left"), (H, W))
    stats.overlap_hand_object.append(overlap["hand_object"])
    stats.overlap_right_left.append(overlap["right_left"])
    return labels


def _warnings(cfg: MasksConfig, files: dict[str, list[Path]], stats: _Stats, T: int) -> list[str]:
    out = []
    for role, names in stats.nonbinary.items():
        out.append(f"{role} masks: {len(names)} of {T} files are not binary (more than one nonzero value, e.g. "
                   f"{names[0]}); thresholded at {cfg.threshold}")
    ho = np.asarray(stats.overlap_hand_object or [0])
    if ho.any():
        t = int(ho.argmax())
        out.append(f"hand and object masks overlap in {int((ho > 0).sum())} of {T} frames ({int(ho.sum())} px in all, "
                   f"most in frame {t}: {int(ho[t])} px); those pixels are labelled hand")
    rl = np.asarray(stats.overlap_right_left or [0])
    if rl.any():
        out.append(f"right- and left-hand masks overlap in {int((rl > 0).sum())} of {T} frames ({int(rl.sum())} px); "
                   f"those pixels are labelled ignore (255)")
    for side in ("right", "left"):
        if side in files and not any(stats.label_px[side]):
            out.append(f"the {side}-hand masks in {files[side][0].parent} are empty in every frame")
    no_obj = [t for t, n in enumerate(stats.label_px["object"]) if n == 0]
    if no_obj:
        shown = ", ".join(map(str, no_obj[:10])) + (" ..." if len(no_obj) > 10 else "")
        out.append(f"no object pixels in {len(no_obj)} of {T} frames ({shown})")
    return out


def import_masks(
    seq_dir: Path | str, cfg: MasksConfig, force: bool = False, progress: bool = True
) -> StepRecord | None:
    """Run the masks step (import); returns its record, or None when it was skipped (up to date)."""
    seq_dir = Path(seq_dir)
    _check_config(cfg, seq_dir)
    stems, size = frame_stems(seq_dir)
    T, (W, H) = len(stems), size
    sources = cfg.sources()
    options = {"mode": "labels" if cfg.labels is not None else "entities",
               **{k: (None if v is None else str(Path(v).resolve()))
                  for k, v in (("labels", cfg.labels), ("object", cfg.object), ("right", cfg.right),
                               ("left", cfg.left))},
               "ignore_band": cfg.ignore_band, "threshold": cfg.threshold}
    inputs = [seq_dir / IMAGES_DIR, *sources.values()]
    fp = fingerprint(inputs, options, root=seq_dir)
    if should_skip(seq_dir, STEP, fp, force):
        return None

    t0 = time.perf_counter()
    frames = _frames_info(seq_dir, T)
    files: dict[str, list[Path]] = {}
    matching: dict[str, str] = {}
    resized_from: dict[str, list[int]] = {}
    for role, folder in sources.items():
        listed = list_masks(folder, role)
        files[role], matching[role] = match_masks(listed, folder, role, stems, frames)
        for path in files[role]:  # sizes from headers, before anything is written
            s = image_size(path)
            if s == (W, H):
                continue
            if not is_clean_rescale(s, (W, H)):
                raise SequenceError(path, None, found=f"size {s[0]}x{s[1]}",
                                    expected=f"{W}x{H} like the frames, or a rescale of it (same aspect ratio)",
                                    fix="export the masks at the frames' (or the original video's) resolution")
            resized_from.setdefault(role, list(s))

    qa_idx = set(np.unique(np.linspace(0, T - 1, min(8, T)).round().astype(int)).tolist())
    qa_tiles: dict[int, np.ndarray] = {}
    stats = _Stats()
    t1 = time.perf_counter()
    with staged_folder(seq_dir / MASKS_DIR) as tmp:
        for t in track(range(T), "masks: importing", total=T, enabled=progress):
            labels = apply_ignore_band(_load_frame_labels(t, files, (W, H), cfg, stats), cfg.ignore_band)
            counts = np.bincount(labels.ravel(), minlength=256)
            for name, value in LABELS.items():
                stats.label_px[name].append(int(counts[value]))
            write_mask(tmp / f"{stems[t]}.png", labels)
            if t in qa_idx:
                qa_tiles[t] = overlay_labels(read_rgb(seq_dir / IMAGES_DIR / f"{stems[t]}.png"), labels)
        if not any(stats.label_px["object"]):
            where = files.get("object", files.get("labels"))[0].parent
            hint = ""
            if "labels" in files and stats.label_values <= {0, 255}:
                hint = " (its values are only 0 and 255: binary masks? pass them with --object)"
            raise SequenceError(where, None, message=f"has no object found in any mask: no pixel is labelled object "
                                                     f"(1) in any of the {T} frames{hint}",
                                fix="check that the folder holds the object's masks (SAM/SAM2 output for the object)")
        remove_record(seq_dir, STEP)
    t2 = time.perf_counter()

    warns = _warnings(cfg, files, stats, T)
    for w in warns:
        print(f"hold preprocess masks: warning: {w}", file=sys.stderr)
    if "labels" in files:
        description = f"imported label masks from {cfg.labels}"
    else:
        description = "imported binary masks: " + ", ".join(f"{k} from {v}" for k, v in sources.items())
    if cfg.ignore_band:
        description += f"; {cfg.ignore_band} px ignore band at label boundaries"
    total_px = float(W * H)
    frac = {k: float(np.mean(v)) / total_px for k, v in stats.label_px.items()}
    caps = [f"#{t} obj {100 * stats.label_px['object'][t] / total_px:.1f}% "
            f"hand {100 * (stats.label_px['right'][t] + stats.label_px['left'][t]) / total_px:.1f}%"
            for t in sorted(qa_tiles)]
    kind = "label masks" if "labels" in files else "binary masks (" + " + ".join(sources) + ")"
    band = f", {cfg.ignore_band} px ignore band" if cfg.ignore_band else ""
    title = (f"masks: {T} frames, {kind} imported (not estimated){band}; "
             f"orange object, blue right, green left, grey ignore")
    write_image(seq_dir / QA_PATH, contact_sheet([qa_tiles[t] for t in sorted(qa_tiles)], caps, title))
    t3 = time.perf_counter()
    info: dict[str, Any] = {
        "source": description,
        "mode": options["mode"],
        "folders": {k: str(v) for k, v in sources.items()},
        "matching": matching,
        "resized_from": resized_from or None,
        "ignore_band_px": cfg.ignore_band,
        "num_frames": T,
        "image_size": [W, H],
        "label_fraction": frac,
        "label_px": stats.label_px,
        "frames_without_object": [t for t, n in enumerate(stats.label_px["object"]) if n == 0],
        "overlap_hand_object_px": stats.overlap_hand_object or None,
        "overlap_right_left_px": stats.overlap_right_left or None,
        "nonbinary_files": stats.nonbinary or None,
    }
    rec = write_record(seq_dir, STEP, fp, options=options, inputs=inputs, outputs=[MASKS_DIR, QA_PATH], info=info,
                       estimated=[], warnings=warns,
                       timings={"check": t1 - t0, "import_write": t2 - t1, "qa": t3 - t2, "total": t3 - t0})
    print(f"hold preprocess masks: wrote {T} label masks {W}x{H} to {seq_dir / MASKS_DIR} ({description}); "
          f"object {100 * frac['object']:.1f}%, hands {100 * (frac['right'] + frac['left']):.1f}% of pixels")
    return rec


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hold preprocess masks",
        description="Import label masks, or per-entity binary masks (SAM-Track / SAM2 output), as the label masks "
                    "of SEQ_DIR (0 background, 1 object, 2 right hand, 3 left hand, 255 ignore).")
    p.add_argument("seq_dir", type=Path, metavar="SEQ_DIR", help="the sequence folder (with images/)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", type=Path, metavar="DIR", help="label masks (values 0, 1, 2, 3, 255), one per frame")
    src.add_argument("--object", type=Path, metavar="DIR", help="binary object masks (nonzero = object)")
    src.add_argument("--estimate", action="store_true",
                     help="no masks to import: estimate them (hands from hands.npz, the object by GrabCut seeded from "
                          "--first-mask, --box or next to the hand, tracked); see preprocess/mask_estimate.py")
    p.add_argument("--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                   help="with --estimate: box around the object in the first frame (pixels of images/)")
    p.add_argument("--first-mask", type=Path, metavar="PNG",
                   help="with --estimate: the object's mask in the first frame")
    p.add_argument("--right", type=Path, metavar="DIR", help="binary right-hand masks (with --object)")
    p.add_argument("--left", type=Path, metavar="DIR", help="binary left-hand masks (with --object)")
    p.add_argument("--ignore-band", type=int, default=None, metavar="PX",
                   help="mark pixels within PX of a label boundary as ignore (255); default 0 (--estimate: 1 on the "
                        "object's outline)")
    p.add_argument("--threshold", type=int, default=MasksConfig.threshold,
                   help="threshold for non-binary entity masks, 8-bit scale (default %(default)s)")
    p.add_argument("--force", action="store_true", help="redo even if the masks are up to date")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from preprocess.mask_estimate import add_arguments  # the estimate's own options, listed in --help

    add_arguments(p.add_argument_group("--estimate options"))
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.estimate:
        if args.right or args.left:
            parser.error("--right/--left import masks; with --estimate the hands come from hands.npz")
        if args.box is not None and args.first_mask is not None:
            parser.error("pass one of --box and --first-mask, not both")
        from preprocess.mask_estimate import config_from_args, run_mask_estimate

        run_mask_estimate(args.seq_dir, config_from_args(args), force=args.force, progress=not args.quiet)
        return 0
    if args.box is not None or args.first_mask is not None:
        parser.error("--box and --first-mask seed the estimate: add --estimate")
    cfg = MasksConfig(labels=args.labels, object=args.object, right=args.right, left=args.left,
                      ignore_band=args.ignore_band or 0, threshold=args.threshold)
    import_masks(args.seq_dir, cfg, force=args.force, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
