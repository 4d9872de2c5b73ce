"""`hold preprocess frames`: the right frames (stride, range, natural order), upright and resized by area,
fps / size / resize factor recorded, re-runs skipped or redone without stale frames, and one clear error
for missing, corrupt, truncated, empty and too-short inputs."""
import math
import shutil
import subprocess

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from hold.cli import main as hold_main
from hold.data.errors import SequenceError
from preprocess.frames import (
    FramesConfig, extract_frames, load_frames_info, main, natural_key, output_size, resize_area, resolve_frame,
    scale_intrinsics,
)
from preprocess.records import load_record

from . import HAND_VIDEO, synth_build

FPS = 10


def _images(seq):
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted((seq / "images").glob("*.png"))]


@pytest.fixture(scope="module")
def synth_frames(tmp_path_factory):
    build = synth_build(tmp_path_factory)
    return [np.asarray(Image.open(p)) for p in sorted((build / "images").glob("*.png"))]


@pytest.fixture(scope="module")
def video(tmp_path_factory, synth_frames):
    path = tmp_path_factory.mktemp("video") / "synth.mp4"
    iio.imwrite(path, np.stack(synth_frames), fps=FPS, codec="libx264", plugin="pyav")
    return path


def _mae(a, b):
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def _assert_frames_are(out, expected, synth_frames, tol=6.0):
    """Each written frame is close to its expected source frame and closer to it than to any other."""
    assert len(out) == len(expected)
    for img, i in zip(out, expected):
        errs = [_mae(img, f) for f in synth_frames]
        assert errs[i] < tol and int(np.argmin(errs)) == i, (i, errs)


def test_pure_helpers():
    assert output_size(1280, 720, 320) == (320, 180)
    assert output_size(1296, 720, 320) == (320, 178)  # 177.8 rounds
    assert output_size(720, 1280, 320) == (180, 320)
    assert output_size(200, 100, 320) == (200, 100)  # never upscales
    assert output_size(1280, 720, 0) == (1280, 720)
    names = ["f10.png", "f2.png", "F1.png", "f9.png"]
    assert sorted(names, key=natural_key) == ["F1.png", "f2.png", "f9.png", "f10.png"]

    # area resampling: a 1-px checkerboard halves to flat grey; block means survive a 4x reduction
    board = (np.indices((8, 8)).sum(0) % 2 * 255).astype(np.uint8)
    half = resize_area(np.repeat(board[..., None], 3, 2), (4, 4))
    assert half.shape == (4, 4, 3) and set(np.unique(half).tolist()) <= {127, 128}
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    small = resize_area(img, (6, 4))
    block_means = img.reshape(4, 4, 6, 4, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(small - block_means).max() <= 1.0  # PIL rounds to 8 bits between its two passes

    # K follows the resize: a point projects to the scaled pixel coordinates (edges map to edges)
    K = np.array([[1000.0, 0, 640], [0, 1000.0, 360], [0, 0, 1]])
    Ks = scale_intrinsics(K, (0.25, 0.25))
    x = np.array([0.1, -0.05, 0.7])
    uv = (K @ x)[:2] / x[2]
    assert np.allclose((Ks @ x)[:2] / x[2], uv * 0.25)
    assert np.allclose(Ks[:2, 2], [160.0, 90.0])  # the image centre stays the centre of a 320x180 image

    assert resolve_frame("12", 30.0, "--start", "v") == 12
    assert resolve_frame("1.5s", 10.0, "--start", "v") == 15
    for bad, fps in (("abc", 10.0), ("-1", 10.0), ("1s", None)):
        with pytest.raises(SequenceError, match="--start"):
            resolve_frame(bad, fps, "--start", "v")


@pytest.mark.parametrize("backend", ["pyav", "ffmpeg"])
def test_video_stride_range_and_record(tmp_path, video, synth_frames, backend):
    seq = tmp_path / "seq"
    assert main([str(video), "--out", str(seq), "--stride", "3", "--backend", backend, "--quiet"]) == 0
    _assert_frames_are(_images(seq), [0, 3, 6, 9], synth_frames)
    info = load_frames_info(seq)
    assert info.num_frames == 4 and info.source_frames == [0, 3, 6, 9]
    assert info.fps == pytest.approx(FPS / 3) and info.source_fps == pytest.approx(FPS)
    assert info.image_size == (96, 64) == info.original_size and info.scale_xy == (1.0, 1.0)
    assert info.source_num_frames == 10
    assert info.source["backend"] == ("pyav" if backend == "pyav" else "imageio-ffmpeg")
    assert Image.open(seq / "qa" / "frames.png").size[0] > 96

    seq2 = tmp_path / "seq2"
    extract_frames(video, seq2, FramesConfig(stride=3, start="1", end="8", backend=backend), progress=False)
    _assert_frames_are(_images(seq2), [1, 4, 7], synth_frames)
    seq3 = tmp_path / "seq3"
    extract_frames(video, seq3, FramesConfig(start="0.2s", end="0.7s", backend=backend), progress=False)
    _assert_frames_are(_images(seq3), [2, 3, 4, 5, 6], synth_frames)
    assert load_frames_info(seq3).source_frames == [2, 3, 4, 5, 6]


def test_resize_by_area_and_recorded_factor(tmp_path, video, synth_frames):
    seq = tmp_path / "seq"
    main([str(video), "--out", str(seq), "--max-side", "48", "--quiet"])
    out = _images(seq)
    assert len(out) == 10 and out[0].shape == (32, 48, 3)
    small = [resize_area(f, (48, 32)) for f in synth_frames]
    _assert_frames_are(out, list(range(10)), small, tol=4.0)
    info = load_frames_info(seq)
    assert info.scale_xy == (0.5, 0.5) and info.original_size == (96, 64) and info.image_size == (48, 32)
    assert np.allclose(info.scale_intrinsics(np.diag([100.0, 100.0, 1.0])), np.diag([50.0, 50.0, 1.0]))


def test_rerun_skips_redoes_and_never_leaves_stale_frames(tmp_path, video, capsys):
    seq = tmp_path / "seq"
    main([str(video), "--out", str(seq), "--quiet"])
    assert len(_images(seq)) == 10
    first = (seq / "images" / "000000.png").stat().st_mtime_ns
    main([str(video), "--out", str(seq), "--quiet"])
    assert "skipped" in capsys.readouterr().err
    assert (seq / "images" / "000000.png").stat().st_mtime_ns == first

    main([str(video), "--out", str(seq), "--stride", "2", "--quiet"])
    assert sorted(p.name for p in (seq / "images").iterdir()) == [f"{i:06d}.png" for i in range(5)]
    assert load_frames_info(seq).source_frames == [0, 2, 4, 6, 8]
    kept = _images(seq)
    rec = load_record(seq, "frames")

    # a failing redo (2 frames are too few) keeps the previous frames and their record
    with pytest.raises(SequenceError, match="at least 3 frames"):
        main([str(video), "--out", str(seq), "--stride", "5", "--quiet"])
    assert all(np.array_equal(a, b) for a, b in zip(_images(seq), kept)) and len(_images(seq)) == 5
    assert load_record(seq, "frames") == rec
    assert [p.name for p in seq.iterdir() if p.name.startswith(".")] == []
    capsys.readouterr()
    main([str(video), "--out", str(seq), "--stride", "2", "--quiet"])
    assert "skipped" in capsys.readouterr().err
    main([str(video), "--out", str(seq), "--stride", "2", "--quiet", "--force"])
    assert load_record(seq, "frames").finished >= rec.finished and "--force" in capsys.readouterr().err


def test_image_folder_in_natural_order(tmp_path, synth_frames):
    folder = tmp_path / "shots"
    folder.mkdir()
    for i, f in enumerate(synth_frames):  # f1 ... f10: plain string order would put f10 second
        Image.fromarray(f).save(folder / f"f{i + 1}.png")
    (folder / "notes.txt").write_text("not a frame")
    seq = tmp_path / "seq"
    main([str(folder), "--out", str(seq), "--fps", "5", "--stride", "2", "--quiet"])
    out = _images(seq)
    assert len(out) == 5 and all(np.array_equal(a, synth_frames[i]) for a, i in zip(out, range(0, 10, 2)))
    info = load_frames_info(seq)
    assert info.source_names == ["f1", "f3", "f5", "f7", "f9"] and info.fps == pytest.approx(2.5)
    assert info.source["kind"] == "images"


def test_rotated_phone_video_is_written_upright(tmp_path, video):
    rotated = tmp_path / "rotated.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation", "90",
                    "-i", str(video), "-c", "copy", str(rotated)], check=True)
    main([str(video), "--out", str(tmp_path / "plain"), "--quiet"])
    plain = _images(tmp_path / "plain")
    for backend in ("pyav", "ffmpeg"):
        seq = tmp_path / backend
        main([str(rotated), "--out", str(seq), "--backend", backend, "--quiet"])
        out = _images(seq)
        assert out[0].shape == (96, 64, 3)  # portrait, as a player shows it
        # 90 degrees counter-clockwise, as the display matrix says (the pixels are the same decoded frames)
        assert all(_mae(a, np.rot90(b)) < 1.0 for a, b in zip(out, plain))
    assert load_frames_info(tmp_path / "pyav").source["rotation_deg"] == 90


def test_bad_inputs_stop_with_one_clear_error(tmp_path, video, synth_frames, capsys):
    seq = tmp_path / "seq"

    def fails(args, *needles):
        with pytest.raises(SequenceError) as e:
            main([*map(str, args), "--out", str(seq), "--quiet"])
        for n in needles:
            assert n in str(e.value), str(e.value)
        assert "Fix:" in str(e.value)

    fails([tmp_path / "missing.mp4"], "missing.mp4", "not found")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).bytes(20000))
    fails([noise], "noise.mp4", "cannot be read as a video")
    data = video.read_bytes()
    cut = tmp_path / "cut.mp4"  # moov atom at the end: the header is gone
    cut.write_bytes(data[: len(data) * 2 // 3])
    fails([cut], "cut.mp4", "cannot be read as a video")
    fast = tmp_path / "fast.mp4"  # header first: it opens, then the frames run out
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(video), "-c", "copy",
                    "-movflags", "+faststart", str(fast)], check=True)
    data = fast.read_bytes()
    fast.write_bytes(data[: len(data) // 2])
    fails([fast], "fast.mp4", "truncated or corrupt", "10 frames its container declares")
    fails([fast, "--backend", "ffmpeg"], "fast.mp4", "truncated or corrupt")
    (tmp_path / "empty").mkdir()
    fails([tmp_path / "empty"], "empty", "no png/jpg images")
    fails([video, "--stride", "5"], "synth.mp4", "2 frame(s)", "at least 3 frames")
    fails([video, "--start", "8"], "at least 3 frames")

    odd = tmp_path / "odd"
    odd.mkdir()
    for i in range(4):
        Image.fromarray(synth_frames[i]).save(odd / f"{i}.png")
    Image.fromarray(synth_frames[0][:32]).save(odd / "4.png")
    fails([odd], "4.png", "size 96x32", "96x64")
    (odd / "4.png").write_bytes(b"not a png")
    fails([odd], "4.png", "cannot be read as an image")
    assert not (seq / "images").exists() and not (seq / "preprocess" / "frames.json").exists()
    shutil.copytree(odd, seq / "images")
    fails([seq / "images"], "output folder of this step")

    # through the `hold` command: one line on stderr, exit code 1, no traceback
    capsys.readouterr()
    assert hold_main(["preprocess", "frames", str(noise), "--out", str(seq), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "noise.mp4" in err and "Traceback" not in err


@pytest.mark.skipif(not HAND_VIDEO.is_file(), reason="shared real video not present")
def test_real_hand_video(tmp_path):
    import av

    with av.open(str(HAND_VIDEO)) as c:
        declared = c.streams.video[0].frames
    seq = tmp_path / "hand"
    main([str(HAND_VIDEO), "--out", str(seq), "--stride", "10", "--max-side", "320", "--quiet"])
    names = sorted(p.name for p in (seq / "images").iterdir())
    assert len(names) == math.ceil(declared / 10) == 63
    assert Image.open(seq / "images" / names[-1]).size == (320, 180)
    info = load_frames_info(seq)
    assert info.fps == pytest.approx(3.0) and info.original_size == (1280, 720) and info.scale_xy == (0.25, 0.25)
    assert info.source_frames[-1] == 620
    shutil.rmtree(seq)
