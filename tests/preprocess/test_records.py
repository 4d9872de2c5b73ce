"""Step records: fingerprints see every input/option change and nothing else; a finished step with unchanged
inputs and outputs is skipped, anything else redoes it; staged folders replace outputs whole or not at all."""
import json
import os

import numpy as np
import pytest

from preprocess.records import (
    StepRecord, fingerprint, load_record, path_stats, record_path, remove_record, should_skip, staged_folder,
    write_record,
)


def _touch(path, ns):
    os.utime(path, ns=(ns, ns))


@pytest.fixture()
def inputs(tmp_path):
    video = tmp_path / "in" / "clip.mp4"
    folder = tmp_path / "in" / "masks"
    folder.mkdir(parents=True)
    video.write_bytes(b"x" * 100)
    for i in range(3):
        (folder / f"{i}.png").write_bytes(b"m" * (10 + i))
    _touch(video, 1_000_000_000)
    return video, folder


def test_fingerprint_sees_sizes_mtimes_files_and_options(inputs):
    video, folder = inputs
    opts = {"stride": 2, "max_side": 320}
    fp = fingerprint([video, folder], opts)
    assert fp == fingerprint([video, folder], {"max_side": 320, "stride": 2})  # key order is irrelevant
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert fingerprint([video, folder], {**opts, "stride": 3}) != fp

    _touch(video, 2_000_000_000)  # same bytes, newer mtime
    fp_mtime = fingerprint([video, folder], opts)
    assert fp_mtime != fp
    video.write_bytes(b"x" * 101)
    _touch(video, 2_000_000_000)  # same mtime, other size
    assert fingerprint([video, folder], opts) != fp_mtime

    before = fingerprint([folder], {})
    (folder / ".0.png.123.tmp").write_bytes(b"junk")  # hidden temp files are not inputs
    assert fingerprint([folder], {}) == before
    (folder / "3.png").write_bytes(b"m")
    assert fingerprint([folder], {}) != before
    (folder / "3.png").unlink()
    assert fingerprint([folder], {}) == before
    (folder / "1.png").write_bytes(b"n" * 11)  # rewritten: same size, new mtime
    _touch(folder / "1.png", 5_000_000_000)
    assert fingerprint([folder], {}) != before


def test_path_stats_kinds_and_relative_keys(tmp_path, inputs):
    video, folder = inputs
    stats = path_stats([video, folder, tmp_path / "nope"], root=tmp_path)
    assert stats["in/clip.mp4"] == {"kind": "file", "size": 100, "mtime_ns": 1_000_000_000}
    assert stats["in/masks"]["kind"] == "dir" and stats["in/masks"]["files"] == 3
    assert stats["in/masks"]["size"] == 10 + 11 + 12
    assert stats["nope"] == {"kind": "missing"}
    # a moved sequence folder keeps the fingerprints of what lies inside it
    moved = tmp_path.parent / (tmp_path.name + "_moved")
    os.rename(tmp_path, moved)
    try:
        assert path_stats([moved / "in" / "clip.mp4"], root=moved) == {"in/clip.mp4": stats["in/clip.mp4"]}
    finally:
        os.rename(moved, tmp_path)


def _finish(seq, fp, video):
    out = seq / "images"
    out.mkdir(parents=True, exist_ok=True)
    (out / "000000.png").write_bytes(b"frame")
    return write_record(seq, "frames", fp, options={"stride": 2, "path": video}, inputs=[video], outputs=["images"],
                        info={"fps": np.float32(15.0), "size": (320, 180), "px": np.arange(3)}, warnings=["w"],
                        timings={"total": 1.23456})


def test_should_skip_only_when_inputs_options_and_outputs_are_unchanged(tmp_path, inputs):
    video, _ = inputs
    seq = tmp_path / "seq"
    said = []
    fp = fingerprint([video], {"stride": 2})
    assert not should_skip(seq, "frames", fp, force=False, say=said.append)  # never ran
    assert said == []
    rec = _finish(seq, fp, video)
    assert should_skip(seq, "frames", fp, force=False, say=said.append)
    assert "skipped" in said[-1] and "--force" in said[-1]
    assert not should_skip(seq, "frames", fp, force=True, say=said.append)
    assert not should_skip(seq, "frames", fingerprint([video], {"stride": 3}), force=False, say=said.append)
    assert "changed" in said[-1]

    # the record round-trips as the dataclass, with JSON types
    loaded = load_record(seq, "frames")
    assert isinstance(loaded, StepRecord) and loaded == rec
    assert loaded.options == {"stride": 2, "path": str(video)}
    assert loaded.info == {"fps": 15.0, "size": [320, 180], "px": [0, 1, 2]}
    assert loaded.timings == {"total": 1.2346}
    assert list(loaded.inputs) == [str(video)] and loaded.inputs[str(video)]["size"] == 100

    # outputs edited or deleted after the step finished: redo
    (seq / "images" / "000000.png").write_bytes(b"edited!")
    assert not should_skip(seq, "frames", fp, force=False, say=said.append) and "outputs" in said[-1]
    _finish(seq, fp, video)
    assert should_skip(seq, "frames", fp, force=False, say=said.append)
    (seq / "images" / "000000.png").unlink()
    (seq / "images").rmdir()
    assert not should_skip(seq, "frames", fp, force=False, say=said.append) and "missing" in said[-1]

    # a broken or foreign record is no record
    _finish(seq, fp, video)
    record_path(seq, "frames").write_text("{not json")
    assert load_record(seq, "frames") is None and not should_skip(seq, "frames", fp, False, say=said.append)
    _finish(seq, fp, video)
    raw = json.loads(record_path(seq, "frames").read_text())
    record_path(seq, "frames").write_text(json.dumps({**raw, "record_version": 99}))
    assert load_record(seq, "frames") is None
    remove_record(seq, "frames")
    remove_record(seq, "frames")  # idempotent
    assert not record_path(seq, "frames").exists()


def test_staged_folder_replaces_whole_or_not_at_all(tmp_path):
    final = tmp_path / "images"
    final.mkdir()
    for i in range(5):
        (final / f"{i:06d}.png").write_bytes(b"old")
    (tmp_path / ".images.999.deadbeef.tmp").mkdir()  # left by a killed run

    with pytest.raises(RuntimeError):
        with staged_folder(final) as tmp:
            (tmp / "000000.png").write_bytes(b"new")
            raise RuntimeError("decoder failed")
    assert sorted(p.name for p in final.iterdir()) == [f"{i:06d}.png" for i in range(5)]
    assert (final / "000000.png").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["images"]  # no temp folders left

    with staged_folder(final) as tmp:
        for i in range(2):
            (tmp / f"{i:06d}.png").write_bytes(b"new")
    assert sorted(p.name for p in final.iterdir()) == ["000000.png", "000001.png"]  # no stale frames
    assert [p.name for p in tmp_path.iterdir()] == ["images"]
