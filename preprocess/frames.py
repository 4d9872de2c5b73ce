"""`hold preprocess frames INPUT --out SEQ_DIR`: a video or an image folder -> SEQ_DIR/images/000000.png ...

Frames are streamed one at a time (never the whole video in memory), selected by --start/--end/--stride,
resized so the longer side is at most --max-side with an area-averaging (box) filter, and written as RGB
PNGs into a staged folder that replaces images/ only when every frame is in (a failed redo keeps the old
frames; a redo never leaves stale frames). The step record (SEQ_DIR/preprocess/frames.json) keeps what
later steps need: the frame rate after the stride, the original size and the per-axis resize factor
(a pinhole K of the original video maps to the frames by `FramesInfo.scale_intrinsics`).

Videos are decoded with PyAV when it is installed (exact frame count, per-frame rotation) and with the
ffmpeg binary of imageio-ffmpeg otherwise. Rotated phone videos are written upright, as players show them.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float, UInt8
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from hold.data.errors import SequenceError
from hold.data.io import write_image
from hold.data.schema import IMAGES_DIR, MASKS_DIR, frame_name
from hold.progress import track
from preprocess.records import (
    StepRecord, fingerprint, load_record, remove_record, should_skip, staged_folder, write_record,
)

STEP = "frames"
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MIN_FRAMES = 3
"""Fewer frames than this cannot make a sequence (SfM and temporal smoothing need at least three)."""
QA_PATH = "qa/frames.png"
FIX_INPUT = "INPUT is a video file (mp4/mov/avi/mkv) or a folder of png/jpg images"
FIX_VIDEO = ("the video is corrupt or truncated: re-download or re-export it "
             "(e.g. `ffmpeg -i in.mp4 -c:v libx264 out.mp4`), or pass a folder of its frames")


@dataclass
class FramesConfig:
    """Which frames of the input to keep and at what size."""

    stride: int = 1
    """Keep every stride-th frame of the input (1 = all)."""
    max_side: int = 1280
    """Longer image side after resizing, in pixels; 0 keeps the original size (never upscales)."""
    start: str = "0"
    """First input frame: a frame index ('12') or a time in seconds ('1.5s')."""
    end: str | None = None
    """End of the range, exclusive: a frame index or a time ('4s'); None = to the end of the input."""
    fps: float | None = None
    """Frame rate of an image folder (frames per second); videos carry their own and ignore it."""
    backend: str = "auto"
    """Video decoder: 'auto' (PyAV if installed, else imageio-ffmpeg), 'pyav' or 'ffmpeg'."""


# ----------------------------------------------------------------------------------------------
# Pure helpers


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: 'f2' < 'f10' (case-insensitive otherwise)."""
    return tuple((0, int(tok), "") if tok.isdigit() else (1, 0, tok.lower()) for tok in re.split(r"(\d+)", name))


def output_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(W', H') with the longer side max_side and the aspect kept (rounded); the input size when it already
    fits or max_side is 0."""
    longest = max(width, height)
    if max_side <= 0 or longest <= max_side:
        return width, height
    s = max_side / longest
    return max(1, round(width * s)), max(1, round(height * s))


def resize_area(rgb: UInt8[np.ndarray, "H W C"], size: tuple[int, int]) -> UInt8[np.ndarray, "h w C"]:
    """Resize to size=(w, h) with a box filter: each output pixel is the area-weighted mean of the input
    pixels its footprint covers (image edges map to image edges, so u' = u * w / W in pixel units)."""
    if (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))


def scale_intrinsics(K: Float[np.ndarray, "3 3"], scale_xy: tuple[float, float]) -> Float[np.ndarray, "3 3"]:
    """K of the resized frames from K of the original ones. Pixel centres sit at +0.5 and the resize maps
    edges to edges, so every image coordinate scales by (sx, sy): fx, cx by sx; fy, cy by sy."""
    return np.diag([scale_xy[0], scale_xy[1], 1.0]) @ np.asarray(K, dtype=np.float64)


def resolve_frame(value: str, fps: float | None, option: str, source: Path) -> int:
    """A frame index from '12' (index) or '1.5s' (seconds at `fps`)."""
    text = str(value).strip().lower()
    try:
        if text.endswith("s"):
            seconds = float(text[:-1])
            if fps is None or fps <= 0:
                raise SequenceError(source, option, found=f"a time '{value}' but the input has no frame rate",
                                    expected="a frame index", fix=f"pass {option} as a frame index, or give --fps")
            index = round(seconds * fps)
        else:
            index = int(text)
    except ValueError:
        raise SequenceError(source, option, found=f"'{value}'", expected="a frame index ('12') or seconds ('1.5s')",
                            fix=f"write {option} like 12 or 1.5s") from None
    if index < 0:
        raise SequenceError(source, option, found=f"'{value}'", expected="a time at or after the first frame",
                            fix=f"use {option} >= 0")
    return index


def frame_selected(index: int, start: int, end: int | None, stride: int) -> bool:
    """Whether source frame `index` is kept: in [start, end) and a multiple of stride after start."""
    return index >= start and (end is None or index < end) and (index - start) % stride == 0


def expected_count(num_source: int, start: int, end: int | None, stride: int) -> int:
    """How many frames a source of `num_source` frames yields."""
    stop = num_source if end is None else min(end, num_source)
    return max(0, math.ceil((stop - start) / stride))


# ----------------------------------------------------------------------------------------------
# Frame sources (streaming)


@dataclass
class SourceInfo:
    """What the input is, as read from its header (videos) or its first file (folders)."""

    path: str
    """The input file or folder."""
    kind: str
    """'video' or 'images'."""
    backend: str
    """'pyav', 'imageio-ffmpeg' or 'pillow'."""
    width: int
    """Frame width as displayed (after rotation), pixels."""
    height: int
    """Frame height as displayed (after rotation), pixels."""
    fps: float | None
    """Frames per second of the input (None for a folder without --fps)."""
    declared_frames: int | None
    """Frame count the container declares (folders: the file count); None when unknown."""
    rotation_deg: int | None = 0
    """Counter-clockwise display rotation applied to the decoded frames, degrees (None: a quarter turn
    applied by ffmpeg, direction not reported)."""
    codec: str | None = None
    """Video codec name."""


@dataclass
class SourceFrame:
    """One input frame, decoded to pixels only when `load` is called (skipped frames cost no conversion)."""

    index: int
    """Index in the input (0-based)."""
    time_s: float | None
    """Presentation time in seconds (None when unknown)."""
    name: str
    """Identifier: the file stem for folders, the zero-padded index for videos."""
    where: str
    """For messages: the file, or 'frame i of VIDEO'."""
    load: Callable[[], np.ndarray]
    """Returns the frame as (H, W, 3) uint8 RGB."""


def _unreadable(path: Path, err: BaseException) -> SequenceError:
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return SequenceError(path, None, message=f"cannot be read as a video ({detail})", fix=FIX_VIDEO)


def _broken(path: Path, decoded: int, declared: int | None, err: BaseException) -> SequenceError:
    of = f" of the {declared} frames its container declares" if declared else ""
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return SequenceError(path, None, message=f"is truncated or corrupt: decoding failed after {decoded}{of} "
                                             f"({detail})", fix=FIX_VIDEO)


class PyAVSource:
    """Decode a video with PyAV, one frame at a time."""

    def __init__(self, path: Path):
        import av

        self.path = path
        self._av = av
        try:
            self._container = av.open(str(path))
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise _unreadable(path, e) from None
        try:
            if not self._container.streams.video:
                raise SequenceError(path, None, message="has no video stream", fix=FIX_INPUT)
            stream = self._container.streams.video[0]
            stream.thread_type = "AUTO"  # frame-parallel decoding; order and content are unchanged
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            self._declared = int(stream.frames) or None
            self._frames = self._container.decode(stream)
            self._first = self._next()
            if self._first is None:
                raise SequenceError(path, None, message="contains no decodable video frame", fix=FIX_VIDEO)
            rot = self._rotation(self._first)
            w, h = self._first.width, self._first.height
            if rot % 180:
                w, h = h, w
            self.info = SourceInfo(
                path=str(path), kind="video", backend="pyav", width=w, height=h,
                fps=float(rate) if rate else None, declared_frames=int(stream.frames) or None,
                rotation_deg=rot, codec=stream.codec_context.name)
        except BaseException:
            self._container.close()
            raise

    @staticmethod
    def _rotation(frame) -> int:
        # Display matrix rotation (counter-clockwise, degrees); only quarter turns are applied.
        rot = float(getattr(frame, "rotation", 0) or 0)
        return int(round(rot / 90.0)) % 4 * 90

    def _next(self):
        try:
            return next(self._frames)
        except StopIteration:
            return None
        except (self._av.error.FFmpegError, OSError) as e:
            raise _broken(self.path, self._decoded, self._declared, e) from None

    _decoded = 0
    _declared: int | None = None

    def frames(self) -> Iterator[SourceFrame]:
        frame, index = self._first, 0
        while frame is not None:
            k = self._rotation(frame) // 90

            def load(f=frame, k=k) -> np.ndarray:
                rgb = f.to_ndarray(format="rgb24")
                return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb

            yield SourceFrame(index, None if frame.time is None else float(frame.time), frame_name(index),
                              f"frame {index} of {self.path}", load)
            index += 1
            self._decoded = index
            frame = self._next()

    def close(self) -> None:
        self._container.close()


class FFmpegSource:
    """Decode a video with the ffmpeg binary shipped by imageio-ffmpeg (frames arrive upright: ffmpeg
    applies the display rotation itself)."""

    def __init__(self, path: Path):
        import imageio_ffmpeg

        self.path = path
        self._gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        try:
            with warnings.catch_warnings():  # "frame size for reading differs from the source": the rotation
                warnings.simplefilter("ignore")
                meta = next(self._gen)
        except (OSError, RuntimeError, StopIteration) as e:
            self._gen.close()
            raise _unreadable(path, e) from None
        w, h = meta["size"]
        fps = float(meta.get("fps") or 0) or None
        duration = float(meta.get("duration") or 0)
        sw, sh = meta.get("source_size", (w, h))
        self.info = SourceInfo(
            path=str(path), kind="video", backend="imageio-ffmpeg", width=int(w), height=int(h), fps=fps,
            declared_frames=round(duration * fps) if fps and duration else None,
            rotation_deg=None if (sw, sh) != (w, h) else 0, codec=meta.get("codec"))

    def frames(self) -> Iterator[SourceFrame]:
        w, h, fps = self.info.width, self.info.height, self.info.fps
        index = 0
        while True:
            try:
                buf = next(self._gen)
            except StopIteration:
                return
            except (OSError, RuntimeError) as e:
                raise _broken(self.path, index, self.info.declared_frames, e) from None
            rgb = np.frombuffer(buf, np.uint8).reshape(h, w, 3)
            yield SourceFrame(index, index / fps if fps else None, frame_name(index), f"frame {index} of {self.path}",
                              lambda rgb=rgb: rgb)
            index += 1

    def close(self) -> None:
        self._gen.close()


def read_rgb(path: Path) -> UInt8[np.ndarray, "H W 3"]:
    """An image file as upright (EXIF orientation applied) 8-bit RGB; 16-bit images keep their top 8 bits."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode.startswith("I"):  # 16/32-bit grey: keep the top 8 of 16 bits (convert() would clip)
                g = np.clip(np.asarray(im, dtype=np.int64), 0, 65535)
                g = (g >> 8 if g.max() > 255 else g).astype(np.uint8)
                return np.repeat(g[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise SequenceError(path, None, message=f"cannot be read as an image ({e})",
                            fix="re-export the frame as png/jpg or remove it from the folder") from None


def list_images(folder: Path) -> list[Path]:
    """Image files (png/jpg) of a folder, naturally sorted; hidden files skipped."""
    files = [p for p in folder.iterdir()
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


class ImageFolderSource:
    """The png/jpg files of a folder in natural order, read one at a time."""

    def __init__(self, folder: Path, fps: float | None):
        self.path = folder
        self.files = list_images(folder)
        if not self.files:
            raise SequenceError(folder, None, message="contains no png/jpg images",
                                fix=f"{FIX_INPUT}; check the path or extract the frames first")
        with Image.open(self.files[0]) as im:
            w, h = ImageOps.exif_transpose(im).size
        self.info = SourceInfo(path=str(folder), kind="images", backend="pillow", width=w, height=h, fps=fps,
                               declared_frames=len(self.files))

    def frames(self) -> Iterator[SourceFrame]:
        fps = self.info.fps
        for i, f in enumerate(self.files):
            yield SourceFrame(i, i / fps if fps else None, f.stem, str(f), lambda f=f: read_rgb(f))

    def close(self) -> None:
        pass


def open_source(path: Path, fps: float | None = None, backend: str = "auto"):
    """A frame source for a video file or an image folder (raises SequenceError when unusable)."""
    path = Path(path)
    if path.is_dir():
        return ImageFolderSource(path, fps)
    if not path.exists():
        raise SequenceError(path, None, message="not found", fix=f"check the path; {FIX_INPUT}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise SequenceError(path, None, message="is a single image, not a video", fix=f"{FIX_INPUT}: pass its folder")
    if backend not in ("auto", "pyav", "ffmpeg"):
        raise SequenceError(path, "--backend", found=f"'{backend}'", expected="auto, pyav or ffmpeg",
                            fix="pick one of them")
    if backend in ("auto", "pyav"):
        try:
            import av  # noqa: F401
        except ImportError:
            if backend == "pyav":
                raise SequenceError(path, "--backend", message="asks for PyAV, which is not installed",
                                    fix="`pip install av`, or use --backend ffmpeg") from None
        else:
            return PyAVSource(path)
    return FFmpegSource(path)


# ----------------------------------------------------------------------------------------------
# The step record, as later steps read it


@dataclass
class FramesInfo:
    """What the frames step wrote (from SEQ_DIR/preprocess/frames.json)."""

    num_frames: int
    """Frames written to images/."""
    image_size: tuple[int, int]
    """(W, H) of the written frames, pixels."""
    original_size: tuple[int, int]
    """(W, H) of the input frames as displayed, pixels."""
    scale_xy: tuple[float, float]
    """Resize factor per axis (written / original)."""
    fps: float | None
    """Frame rate of the written frames (input fps / stride), frames per second."""
    source_fps: float | None
    """Frame rate of the input, frames per second."""
    stride: int
    """Input frames per written frame."""
    source_frames: list[int]
    """Input frame index of every written frame."""
    source_names: list[str]
    """Input frame name of every written frame (file stems for folders)."""
    source_num_frames: int | None
    """Frames in the whole input (decoded count when read to the end, else the declared count)."""
    source: dict[str, Any]
    """The input: path, kind, backend, codec, rotation."""

    @classmethod
    def from_record(cls, rec: StepRecord) -> FramesInfo:
        i = rec.info
        return cls(num_frames=i["num_frames"], image_size=tuple(i["image_size"]),
                   original_size=tuple(i["original_size"]), scale_xy=tuple(i["scale_xy"]), fps=i["fps"],
                   source_fps=i["source"]["fps"], stride=i["stride"], source_frames=list(i["source_frames"]),
                   source_names=list(i["source_names"]), source_num_frames=i["source_num_frames"],
                   source=dict(i["source"]))

    def scale_intrinsics(self, K_original: Float[np.ndarray, "3 3"]) -> Float[np.ndarray, "3 3"]:
        """K of the written frames from K of the original video."""
        return scale_intrinsics(K_original, self.scale_xy)


def load_frames_info(seq_dir: Path | str) -> FramesInfo | None:
    """The frames step's results, or None when images/ was not made by it (e.g. a synthetic build)."""
    rec = load_record(seq_dir, STEP)
    return None if rec is None else FramesInfo.from_record(rec)


# ----------------------------------------------------------------------------------------------
# QA picture


def contact_sheet(
    tiles: Sequence[np.ndarray], captions: Sequence[str], title: str, columns: int = 4, tile_width: int = 256
) -> UInt8[np.ndarray, "H W 3"]:
    """A grid of RGB tiles (scaled to `tile_width`), each with its caption above, under a title line."""
    font = ImageFont.load_default()
    line = 16
    h0, w0 = tiles[0].shape[:2]
    tile_h = max(1, round(h0 * tile_width / w0))
    cols = max(1, min(columns, len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    sheet = Image.new("RGB", (cols * tile_width, line + rows * (line + tile_h)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 1), title, fill=(255, 255, 255), font=font)
    for k, (tile, cap) in enumerate(zip(tiles, captions)):
        r, c = divmod(k, cols)
        x, y = c * tile_width, line + r * (line + tile_h)
        draw.text((x + 4, y + 1), cap, fill=(220, 220, 220), font=font)
        sheet.paste(Image.fromarray(np.asarray(tile, np.uint8)).resize((tile_width, tile_h), Image.Resampling.BOX),
                    (x, y + line))
    return np.asarray(sheet)


def _write_qa(seq_dir: Path, info: dict[str, Any], num_tiles: int = 8) -> None:
    n = info["num_frames"]
    idx = np.unique(np.linspace(0, n - 1, min(num_tiles, n)).round().astype(int))
    tiles = [read_rgb(seq_dir / IMAGES_DIR / f"{frame_name(i)}.png") for i in idx]
    times = info["frame_times_s"]
    caps = [f"#{i} src {info['source_names'][i]}" + ("" if times[i] is None else f" t={times[i]:.2f}s") for i in idx]
    src = info["source"]
    w0, h0 = info["original_size"]
    W, H = info["image_size"]
    fps = "" if info["fps"] is None else f", {info['fps']:.3g} fps"
    title = f"frames: {n} x {W}x{H}{fps} from {Path(src['path']).name} ({w0}x{h0}, stride {info['stride']})"
    write_image(seq_dir / QA_PATH, contact_sheet(tiles, caps, title))


# ----------------------------------------------------------------------------------------------
# The step


class _Scan:
    """Selects the kept frames of a stream and remembers how far it read."""

    decoded: int = 0
    """Input frames seen so far."""
    reached_end: bool = True
    """False when the scan stopped early at --end (the rest of the input was not read)."""

    def select(self, frames: Iterator[SourceFrame], start: int, end: int | None, stride: int) -> Iterator[SourceFrame]:
        for frame in frames:
            self.decoded = frame.index + 1
            if end is not None and frame.index >= end:
                self.reached_end = False
                return
            if frame_selected(frame.index, start, end, stride):
                yield frame


def _check_config(cfg: FramesConfig, source: Path) -> None:
    if cfg.stride < 1:
        raise SequenceError(source, "--stride", found=str(cfg.stride), expected="an integer >= 1",
                            fix="pass --stride 1 for every frame")
    if cfg.max_side < 0:
        raise SequenceError(source, "--max-side", found=str(cfg.max_side), expected="pixels >= 0 (0 = keep size)",
                            fix="pass e.g. --max-side 960")
    if cfg.fps is not None and not cfg.fps > 0:
        raise SequenceError(source, "--fps", found=str(cfg.fps), expected="frames per second > 0",
                            fix="pass the frame rate the images were taken at, e.g. --fps 30")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def extract_frames(
    source_path: Path | str, seq_dir: Path | str, cfg: FramesConfig, force: bool = False, progress: bool = True
) -> StepRecord | None:
    """Run the frames step; returns its record, or None when it was skipped (up to date)."""
    source_path, seq_dir = Path(source_path), Path(seq_dir)
    _check_config(cfg, source_path)
    if not source_path.exists():
        raise SequenceError(source_path, None, message="not found", fix=f"check the path; {FIX_INPUT}")
    if source_path.resolve() == (seq_dir / IMAGES_DIR).resolve():
        raise SequenceError(source_path, None, message="is the output folder of this step (SEQ_DIR/images)",
                            fix="pass the original video or frame folder; the step replaces SEQ_DIR/images")
    options = {"input": str(source_path.resolve()), "stride": cfg.stride, "max_side": cfg.max_side,
               "start": cfg.start, "end": cfg.end, "fps": cfg.fps}
    fp = fingerprint([source_path], options, root=seq_dir)
    if should_skip(seq_dir, STEP, fp, force):
        return None

    t0 = time.perf_counter()
    source = open_source(source_path, cfg.fps, cfg.backend)
    try:
        info_src = source.info
        fps = info_src.fps
        start = resolve_frame(cfg.start, fps, "--start", source_path)
        end = None if cfg.end is None else resolve_frame(cfg.end, fps, "--end", source_path)
        if end is not None and end <= start:
            raise SequenceError(source_path, "--end", found=f"{cfg.end} (frame {end})",
                                expected=f"after --start {cfg.start} (frame {start})", fix="swap or widen the range")
        size = output_size(info_src.width, info_src.height, cfg.max_side)
        total = None
        if info_src.declared_frames:
            total = expected_count(info_src.declared_frames, start, end, cfg.stride)
        names: list[str] = []
        indices: list[int] = []
        times: list[float | None] = []
        scan = _Scan()
        t1 = time.perf_counter()
        with staged_folder(seq_dir / IMAGES_DIR) as tmp:
            frames = track(scan.select(source.frames(), start, end, cfg.stride), f"frames: {source_path.name}",
                           total=total, enabled=progress)
            for frame in frames:
                rgb = frame.load()
                if (rgb.shape[1], rgb.shape[0]) != (info_src.width, info_src.height):
                    raise SequenceError(frame.where, None, found=f"size {rgb.shape[1]}x{rgb.shape[0]}",
                                        expected=f"{info_src.width}x{info_src.height} like the first frame",
                                        fix="give every frame the same size (or remove the odd ones)")
                write_image(tmp / f"{frame_name(len(names))}.png", resize_area(rgb, size))
                names.append(frame.name)
                indices.append(frame.index)
                times.append(frame.time_s)
            decoded, reached_end = scan.decoded, scan.reached_end
            declared = info_src.declared_frames
            if reached_end and info_src.kind == "video" and declared:
                missing = declared - decoded
                if missing > max(2, 0.02 * declared):
                    raise SequenceError(source_path, None,
                                        message=f"is truncated or corrupt: its container declares {declared} frames "
                                                f"but only {decoded} could be decoded", fix=FIX_VIDEO)
            if len(names) < MIN_FRAMES:
                rng = f"--start {cfg.start} --end {cfg.end} --stride {cfg.stride}"
                raise SequenceError(source_path, None,
                                    found=f"{len(names)} frame(s) with {rng} (of {decoded} input frames)",
                                    expected=f"at least {MIN_FRAMES} frames",
                                    fix="lower --stride, widen --start/--end, or use a longer video")
            remove_record(seq_dir, STEP)  # the old frames go now; until the new record exists, nothing skips
        t2 = time.perf_counter()
    finally:
        source.close()

    if end is not None and reached_end and end > decoded:
        _say(f"hold preprocess frames: --end {cfg.end} is past the last frame ({decoded}); used all frames")
    W, H = size
    info = {
        "num_frames": len(names),
        "image_size": [W, H],
        "original_size": [info_src.width, info_src.height],
        "scale": W / info_src.width if size != (info_src.width, info_src.height) else 1.0,
        "scale_xy": [W / info_src.width, H / info_src.height],
        "fps": None if fps is None else fps / cfg.stride,
        "stride": cfg.stride,
        "start_frame": start,
        "end_frame": end,
        "source": {"path": info_src.path, "kind": info_src.kind, "backend": info_src.backend, "fps": fps,
                   "declared_frames": info_src.declared_frames, "decoded_frames": decoded if reached_end else None,
                   "rotation_deg": info_src.rotation_deg, "codec": info_src.codec},
        "source_num_frames": decoded if reached_end else info_src.declared_frames,
        "source_frames": indices,
        "source_names": names,
        "frame_times_s": times,
    }
    _write_qa(seq_dir, info)
    t3 = time.perf_counter()
    rec = write_record(seq_dir, STEP, fp, options=options, inputs=[source_path], outputs=[IMAGES_DIR, QA_PATH],
                       info=info, timings={"open": t1 - t0, "decode_resize_write": t2 - t1, "qa": t3 - t2,
                                           "total": t3 - t0})
    resized = "" if info["scale"] == 1.0 else f" (resized from {info_src.width}x{info_src.height})"
    rate = "" if fps is None else f", {info['fps']:.4g} fps"
    print(f"hold preprocess frames: wrote {len(names)} frames {W}x{H}{resized}{rate} to {seq_dir / IMAGES_DIR}")
    if (seq_dir / MASKS_DIR).is_dir():
        _say(f"hold preprocess frames: {seq_dir / MASKS_DIR} belongs to the previous frames; "
             f"re-run `hold preprocess masks`")
    return rec


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hold preprocess frames",
        description="Extract the frames of a video (or an image folder) into SEQ_DIR/images/000000.png ...")
    p.add_argument("input", type=Path, help="a video (mp4/mov/avi/mkv) or a folder of png/jpg images")
    p.add_argument("--out", type=Path, required=True, metavar="SEQ_DIR", help="the sequence folder")
    p.add_argument("--stride", type=int, default=FramesConfig.stride, help="keep every N-th frame (default 1)")
    p.add_argument("--max-side", type=int, default=FramesConfig.max_side, metavar="PX",
                   help="resize so the longer side is at most PX pixels; 0 keeps the size (default %(default)s)")
    p.add_argument("--start", default=FramesConfig.start, help="first frame: index (12) or seconds (1.5s)")
    p.add_argument("--end", default=None, help="end of the range, exclusive: index or seconds (default: the end)")
    p.add_argument("--fps", type=float, default=None, help="frame rate of an image folder (videos carry theirs)")
    p.add_argument("--backend", default="auto", choices=("auto", "pyav", "ffmpeg"), help="video decoder")
    p.add_argument("--force", action="store_true", help="redo even if the frames are up to date")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = FramesConfig(stride=args.stride, max_side=args.max_side, start=str(args.start),
                       end=None if args.end is None else str(args.end), fps=args.fps, backend=args.backend)
    extract_frames(args.input, args.out, cfg, force=args.force, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
