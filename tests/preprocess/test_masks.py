"""`hold preprocess masks`: label masks and per-entity binary masks become the contract's label masks
exactly (matched by name, order or stride; rescaled by nearest neighbour), overlaps resolve hand-over-object
and are reported, the ignore band is the set of pixels near another label, and bad mask sets stop with one
clear message that leaves the previous masks intact."""
import shutil

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation

from hold.cli import main as hold_main
from hold.data.errors import SequenceError
from preprocess.frames import main as frames_main
from preprocess.masks import (
    apply_ignore_band, binarize, boundary_band, combine_entities, is_clean_rescale, main,
)
from preprocess.records import load_record

from . import synth_build


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return synth_build(tmp_path_factory)


@pytest.fixture(scope="module")
def labels(build):
    return [np.asarray(Image.open(p)) for p in sorted((build / "masks").glob("*.png"))]


@pytest.fixture()
def seq(tmp_path, build):
    seq = tmp_path / "seq"
    shutil.copytree(build / "images", seq / "images")
    return seq


def _written(seq):
    return [np.asarray(Image.open(p)) for p in sorted((seq / "masks").glob("*.png"))]


def _save_all(folder, arrays, name="{:06d}.png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(folder / name.format(i))
    return folder


def test_pure_helpers():
    m, ok = binarize(np.array([[0, 255], [255, 0]], np.uint8))
    assert ok and m.tolist() == [[False, True], [True, False]]
    m, ok = binarize(np.array([[0, 1, 1]], np.uint8))
    assert ok and m.tolist() == [[False, True, True]]
    m, ok = binarize(np.array([[0, 50, 200, 128]], np.uint8))
    assert not ok and m.tolist() == [[False, False, True, True]]
    m, ok = binarize(np.array([[0, 100, 40000]], np.uint16))  # 16-bit: threshold 128 * 257
    assert not ok and m.tolist() == [[False, False, True]]
    m, ok = binarize(np.array([[0.0, 0.3, 0.9]]))  # soft masks in [0, 1]
    assert not ok and m.tolist() == [[False, False, True]]

    obj = np.array([[1, 1, 1, 0]], bool)
    right = np.array([[0, 1, 1, 0]], bool)
    left = np.array([[0, 0, 1, 1]], bool)
    lab, overlap = combine_entities(obj, right, left, (1, 4))
    assert lab.tolist() == [[1, 2, 255, 3]] and overlap == {"hand_object": 2, "right_left": 1}
    lab, overlap = combine_entities(obj, None, None, (1, 4))
    assert lab.tolist() == [[1, 1, 1, 0]] and overlap == {"hand_object": 0, "right_left": 0}

    # two labels meeting between columns 9 and 10: radius r marks columns 10-r ... 9+r, on every row
    a = np.zeros((6, 20), np.uint8)
    a[:, 10:] = 1
    for r in (1, 2, 3):
        cols = np.flatnonzero(boundary_band(a, r).all(axis=0))
        assert cols.tolist() == list(range(10 - r, 10 + r)) and boundary_band(a, r).sum() == 6 * 2 * r
    # an ignore region is no label: next to it nothing is marked; the image border is no boundary
    b = np.zeros((6, 20), np.uint8)
    b[:, 10:] = 255
    assert not boundary_band(b, 2).any()
    assert apply_ignore_band(a, 0) is a
    assert (apply_ignore_band(a, 1)[:, [9, 10]] == 255).all() and (apply_ignore_band(a, 1)[:, [8, 11]] != 255).all()

    assert is_clean_rescale((1280, 720), (320, 180)) and is_clean_rescale((1296, 720), (320, 178))
    assert is_clean_rescale((48, 32), (96, 64))
    assert not is_clean_rescale((640, 640), (320, 180)) and not is_clean_rescale((100, 64), (96, 64))


def test_label_masks_round_trip_skip_and_qa(seq, build, labels, capsys):
    assert main([str(seq), "--labels", str(build / "masks"), "--quiet"]) == 0
    out = _written(seq)
    assert len(out) == len(labels) and all(np.array_equal(a, b) for a, b in zip(out, labels))
    rec = load_record(seq, "masks")
    assert rec.info["matching"] == {"labels": "by the frames' names"} and rec.estimated == []
    assert rec.info["label_px"]["object"] == [int((m == 1).sum()) for m in labels]
    assert rec.info["frames_without_object"] == [] and "imported label masks" in rec.info["source"]
    qa = Image.open(seq / "qa" / "masks.png")
    assert qa.mode == "RGB" and qa.size[0] >= 4 * 96

    main([str(seq), "--labels", str(build / "masks"), "--quiet"])
    assert "skipped" in capsys.readouterr().err
    main([str(seq), "--labels", str(build / "masks"), "--ignore-band", "1", "--quiet"])  # other options: redo
    assert load_record(seq, "masks").options["ignore_band"] == 1 and (_written(seq)[0] == 255).any()


def test_sorted_names_and_clean_rescale(seq, tmp_path, labels):
    big = [np.repeat(np.repeat(m, 2, 0), 2, 1) for m in labels]  # masks at twice the frame resolution
    folder = _save_all(tmp_path / "sam", big, "mask_{}.png")  # mask_0 ... mask_9 (mask_10 would sort last)
    main([str(seq), "--labels", str(folder), "--quiet"])
    assert all(np.array_equal(a, b) for a, b in zip(_written(seq), labels))
    info = load_record(seq, "masks").info
    assert info["matching"]["labels"] == "one per frame, in sorted order"
    assert info["resized_from"] == {"labels": [192, 128]}


def test_entity_masks_hand_wins_and_overlaps_are_reported(seq, tmp_path, labels, capsys):
    obj = [np.where(m == 1, 255, 0).astype(np.uint8) for m in labels]
    right = [binary_dilation(m == 2, iterations=2) for m in labels]  # grows over the object it holds
    left = [np.zeros_like(m, bool) for m in labels]
    top = int(np.nonzero(right[4])[0].min())
    left[4][top:top + 5] = True  # one frame where a "left hand" band overlaps the top of the right one
    main([str(seq), "--object", str(_save_all(tmp_path / "o", obj)),
          "--right", str(_save_all(tmp_path / "r", [r.astype(np.uint8) for r in right])),  # {0, 1} masks
          "--left", str(_save_all(tmp_path / "l", [x.astype(np.uint8) * 255 for x in left])), "--quiet"])
    for t, (out, m) in enumerate(zip(_written(seq), labels)):
        expected = np.where(right[t], 2, np.where(m == 1, 1, 0)).astype(np.uint8)
        expected[left[t]] = 3
        expected[left[t] & right[t]] = 255
        assert np.array_equal(out, expected), t
    rec = load_record(seq, "masks")
    overlaps = [int(((m == 1) & r).sum()) for m, r in zip(labels, right)]
    assert sum(overlaps) > 0 and rec.info["overlap_hand_object_px"] == overlaps
    assert rec.info["overlap_right_left_px"][4] == int((left[4] & right[4]).sum()) > 0
    err = capsys.readouterr().err
    assert "hand and object masks overlap" in err and "labelled hand" in err and "labelled ignore" in err
    assert any("overlap" in w for w in rec.warnings)


def test_non_binary_masks_warn_and_threshold(seq, tmp_path, labels, capsys):
    soft = []
    for m in labels:  # object at 200 with a faint 60-valued halo, as a soft or compressed mask has
        halo = binary_dilation(m == 1, iterations=2) & (m != 1)
        soft.append(np.where(m == 1, 200, np.where(halo, 60, 0)).astype(np.uint8))
    main([str(seq), "--object", str(_save_all(tmp_path / "soft", soft)), "--quiet"])
    assert all(np.array_equal(a, (m == 1).astype(np.uint8)) for a, m in zip(_written(seq), labels))
    err = capsys.readouterr().err
    assert "not binary" in err and "thresholded at 128" in err
    assert load_record(seq, "masks").info["nonbinary_files"]["object"][0] == "000000.png"


def test_ignore_band_marks_exactly_the_pixels_near_another_label(seq, build, labels):
    main([str(seq), "--labels", str(build / "masks"), "--ignore-band", "2", "--quiet"])
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if 0 < dy * dy + dx * dx <= 4]
    for out, m in zip(_written(seq), labels):
        H, W = m.shape
        near_other = np.zeros_like(m, bool)  # brute force: any other label within 2 px, centre to centre
        for dy, dx in offsets:
            shifted = np.full((H + 4, W + 4), 255, np.uint8)
            shifted[2:-2, 2:-2] = m
            nb = shifted[2 + dy:2 + dy + H, 2 + dx:2 + dx + W]
            near_other |= (nb != 255) & (nb != m)
        assert near_other.any()
        assert np.array_equal(out == 255, near_other) and np.array_equal(out[~near_other], m[~near_other])


def test_masks_follow_the_frames_selection(tmp_path, build, labels):
    shots = _save_all(tmp_path / "shots", [np.asarray(Image.open(p)) for p in sorted((build / "images").glob("*.png"))],
                      "f{}.png")
    seq = tmp_path / "seq"
    frames_main([str(shots), "--out", str(seq), "--stride", "2", "--quiet"])  # frames f0, f2, ..., f8
    by_name = _save_all(tmp_path / "by_name", labels, "f{}.png")  # one mask per input image, same names
    main([str(seq), "--labels", str(by_name), "--quiet"])
    assert all(np.array_equal(a, labels[2 * k]) for k, a in enumerate(_written(seq)))
    assert load_record(seq, "masks").info["matching"]["labels"] == "by the input frames' names"
    by_order = _save_all(tmp_path / "by_order", labels, "{:05d}.png")  # one per input frame, other names
    main([str(seq), "--labels", str(by_order), "--quiet"])
    assert all(np.array_equal(a, labels[2 * k]) for k, a in enumerate(_written(seq)))
    assert load_record(seq, "masks").info["matching"]["labels"].startswith("one per input frame")


def test_bad_mask_sets_stop_with_one_clear_error_and_keep_previous_masks(seq, tmp_path, build, labels, capsys):
    def fails(args, *needles, where=seq):
        with pytest.raises(SequenceError) as e:
            main([str(where), *map(str, args), "--quiet"])
        for n in needles:
            assert n in str(e.value), str(e.value)
        assert "Fix:" in str(e.value)

    fails(["--labels", build / "masks"], "images", "hold preprocess frames", where=tmp_path / "fresh")
    main([str(seq), "--labels", str(build / "masks"), "--quiet"])
    good, rec = _written(seq), load_record(seq, "masks")

    fails(["--object", _save_all(tmp_path / "short", labels[:-1])], "short", "9 mask files", "10 (one per frame")
    fails(["--labels", _save_all(tmp_path / "square", [np.zeros((50, 50), np.uint8)] * 10)], "000000.png",
          "size 50x50", "96x64")
    bad = [m.copy() for m in labels]
    bad[3][0, 0] = 7
    fails(["--labels", _save_all(tmp_path / "seven", bad)], "seven/000003.png", "label values [7]")
    empty = _save_all(tmp_path / "empty", [np.zeros_like(m) for m in labels])
    hand = _save_all(tmp_path / "hand", [np.where(m == 2, 255, 0).astype(np.uint8) for m in labels])
    fails(["--object", empty, "--right", hand],
          "no object found in any mask", "empty")
    binary = _save_all(tmp_path / "binary", [np.where(m == 2, 255, 0).astype(np.uint8) for m in labels])
    fails(["--labels", binary], "no object found in any mask", "--object")
    fails(["--labels", build / "masks", "--right", binary], "--labels", "either")
    fails(["--object", tmp_path / "nowhere"], "nowhere", "not found")
    fails(["--labels", seq / "masks"], "output folder of this step")

    assert all(np.array_equal(a, b) for a, b in zip(_written(seq), good)) and load_record(seq, "masks") == rec
    assert [p.name for p in seq.iterdir() if p.name.startswith(".")] == []

    capsys.readouterr()
    assert hold_main(["preprocess", "masks", str(seq), "--object", str(empty), "--quiet"]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("hold preprocess: error:") and "no object found" in errors[0]
    assert "Traceback" not in err
