"""`validate` reports every problem of a build, each naming its file and field; `hold validate` exit codes."""
import hold  # noqa: F401

import shutil

import numpy as np
import pytest
from PIL import Image

from hold.data import SequenceError, format_report, load_sequence, validate, validate_command
from hold.data.io import write_mask

T, W, H = 4, 16, 12


def _errors(problems):
    return [p for p in problems if p.severity == "error"]


def _warnings(problems):
    return [p for p in problems if p.severity == "warning"]


# Each case: (what to break, the mutation, substrings the ONE resulting error must contain, does load fail too).
def _missing_image(b, **_):
    (b / "images" / "000002.png").unlink()


def _extra_image(b, **_):
    shutil.copy(b / "images" / "000000.png", b / "images" / "000004.png")


def _small_image(b, **_):
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(b / "images" / "000001.png")


def _rgba_image(b, **_):
    Image.fromarray(np.zeros((H, W, 4), np.uint8)).save(b / "images" / "000003.png")


def _mask_value_7(b, **_):
    m = np.zeros((H, W), np.uint8)
    m[3, 4] = 7
    Image.fromarray(m).save(b / "masks" / "000001.png")


def _missing_mask(b, **_):
    (b / "masks" / "000000.png").unlink()


def _hand_shape(b, edit_npz, **_):
    edit_npz(b / "hands.npz", lambda a: a.__setitem__("right/global_orient", a["right/global_orient"][:3]))


def _hand_nan(b, edit_npz, **_):
    edit_npz(b / "hands.npz", lambda a: a["left/hand_pose"].__setitem__((1, 5), np.nan))


def _valid_not_bool(b, edit_npz, **_):
    edit_npz(b / "hands.npz", lambda a: a.__setitem__("right/valid", a["right/valid"].astype(np.uint8)))


def _hand_absent(b, edit_npz, **_):
    edit_npz(b / "hands.npz", lambda a: [a.pop(k) for k in list(a) if k.startswith("left/")])


def _confidence(b, edit_npz, **_):
    edit_npz(b / "hands.npz", lambda a: a["right/keypoints_2d"].__setitem__((2, 0, 2), 1.5))


def _non_rigid(b, edit_npz, **_):
    edit_npz(b / "object.npz", lambda a: a["T_cam_from_obj"].__setitem__((1, slice(0, 3), 0), [1.0, 1.0, 0.0]))


def _reflection(b, edit_npz, **_):
    edit_npz(b / "object.npz", lambda a: a["T_cam_from_obj"].__setitem__((2, slice(0, 3), 0),
                                                                          -a["T_cam_from_obj"][2, :3, 0]))


def _outside_sphere(b, edit_npz, **_):
    edit_npz(b / "object.npz", lambda a: a["points"].__setitem__(7, [0.0, 1.2, 0.0]))


def _scale_zero(b, edit_npz, **_):
    edit_npz(b / "object.npz", lambda a: a.__setitem__("scale", np.float32(0.0)))


def _newer_schema(b, edit_json, **_):
    edit_json(b / "sequence.json", lambda m: m.__setitem__("schema_version", 3))


def _older_schema(b, edit_json, **_):
    edit_json(b / "sequence.json", lambda m: m.__setitem__("schema_version", 0))


def _missing_key(b, edit_json, **_):
    edit_json(b / "sequence.json", lambda m: m.pop("image_size"))


def _bad_K(b, edit_json, **_):
    edit_json(b / "sequence.json", lambda m: m.__setitem__("K", [[20.0, 0.0, 8.0], [0.0, 21.5, 6.0]]))


def _missing_json(b, **_):
    (b / "sequence.json").unlink()


def _bad_json(b, **_):
    (b / "sequence.json").write_text("{\n  \"schema_version\": 1\n  \"num_frames\": 4}")


def _gt_non_rigid(b, edit_npz, **_):
    edit_npz(b / "gt" / "object.npz",
             lambda a: a["T_cam_from_obj"].__setitem__((0, slice(0, 3), slice(0, 3)), 2 * np.eye(3)))


def _gt_mesh_missing(b, **_):
    (b / "gt" / "object_mesh.ply").unlink()


def _gt_keypoints_T(b, edit_npz, **_):
    edit_npz(b / "gt" / "hands.npz", lambda a: a.__setitem__("right/keypoints", a["right/keypoints"][:2]))


def _gt_depth_8bit(b, **_):
    Image.fromarray(np.zeros((H, W), np.uint8)).save(b / "gt" / "depth" / "000002.png")


CASES = {
    "missing image": (_missing_image, ["images:", "is missing 1 of 4 images", "000002.png"], False),
    "extra image": (_extra_image, ["images:", "000004.png", "not frames 000000.png .. 000003.png"], False),
    "image size": (_small_image, ["images/000001.png: has size 10x10, expected 16x12"], False),
    "image mode": (_rgba_image, ["images/000003.png: has mode RGBA, expected mode RGB"], False),
    "mask value 7": (_mask_value_7, ["masks/000001.png: has label values [7], expected values in [0, 1, 2, 3, 255]"],
                     False),
    "missing mask": (_missing_mask, ["masks:", "is missing 1 of 4 masks", "000000.png"], False),
    "wrong shape": (_hand_shape, ["hands.npz: field 'right/global_orient' has shape (3, 3), expected (4, 3)"], True),
    "NaN pose": (_hand_nan, ["hands.npz: field 'left/hand_pose' contains NaN/inf at frame 1 (1 of 4)"], True),
    "valid not bool": (_valid_not_bool, ["hands.npz: field 'right/valid' has dtype uint8, expected bool"], True),
    "hand absent": (_hand_absent, ["hands.npz: field 'left' is missing: sequence.json lists hand 'left'"], True),
    "confidence": (_confidence, ["field 'right/keypoints_2d' has confidences outside [0, 1] at frame 2"], True),
    "non-rigid": (_non_rigid, ["object.npz: field 'T_cam_from_obj' is not rigid at frame 1 (1 of 4)"], True),
    "reflection": (_reflection, ["field 'T_cam_from_obj' is not rigid at frame 2", "det(R) = -1"], True),
    "outside sphere": (_outside_sphere, ["object.npz: field 'points' has 1 of 50 points outside the unit sphere",
                                         "max norm 1.2"], True),
    "scale <= 0": (_scale_zero, ["object.npz: field 'scale' is 0.0, expected a finite number > 0"], True),
    "newer schema": (_newer_schema, ["sequence.json: field 'schema_version' is 3: written by a newer hold "
                                     "(schema 3 > 1)", "Fix: upgrade hold"], True),
    "older schema": (_older_schema, ["sequence.json: field 'schema_version' is 0", "old schema version 0",
                                     "must be rebuilt"], True),
    "missing key": (_missing_key, ["sequence.json: field 'image_size' is missing"], True),
    "bad K": (_bad_K, ["sequence.json: field 'K' is", "[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]"], True),
    "missing json": (_missing_json, ["sequence.json: file not found"], True),
    "bad json": (_bad_json, ["sequence.json: is not valid JSON: Expecting ',' delimiter at line 3 column 3"], True),
    "gt non-rigid": (_gt_non_rigid, ["gt/object.npz: field 'T_cam_from_obj' is not rigid at frame 0"], False),
    "gt mesh missing": (_gt_mesh_missing, ["gt/object_mesh.ply: file not found"], False),
    "gt keypoints T": (_gt_keypoints_T, ["gt/hands.npz: field 'right/keypoints' has shape (2, 21, 3), expected "
                                         "(4, 21, 3) (T=4 from sequence.json num_frames)"], False),
    "gt depth 8-bit": (_gt_depth_8bit, ["gt/depth/000002.png: has mode L size 16x12, expected mode I;16"], False),
}


def test_valid_build_is_ok(build, capsys):
    assert validate(build.root) == []
    report = format_report([], build.root)
    assert report == (f"OK: {build.root} is a valid build (4 frames, 16x12 px, hands: right+left, object, "
                      "masks, ground truth)")
    assert validate_command([str(build.root)]) == 0
    assert capsys.readouterr().out.strip() == report


@pytest.mark.parametrize("case", list(CASES))
def test_each_problem_is_named(build, edit_npz, edit_json, case):
    mutate, needles, load_fails = CASES[case]
    mutate(build.root, edit_npz=edit_npz, edit_json=edit_json)
    problems = validate(build.root)
    errors = _errors(problems)
    assert len(errors) == 1, "\n".join(map(str, problems))
    text = str(errors[0])
    assert text.startswith(str(build.root)), text
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    assert errors[0].fix, "every error says how to fix it"
    report = format_report(problems, build.root)
    assert report.splitlines()[-1] == f"1 error, {len(_warnings(problems))} warning" + (
        "" if len(_warnings(problems)) == 1 else "s")
    # load_sequence agrees on the trajectory/json problems it is responsible for, and raises the same words.
    if load_fails:
        with pytest.raises(SequenceError) as e:
            load_sequence(build.root)
        assert str(e.value) == text
    else:
        load_sequence(build.root)


def test_every_problem_is_reported_at_once(build, edit_npz, edit_json):
    for case in ("missing image", "mask value 7", "NaN pose", "non-rigid", "outside sphere", "gt mesh missing"):
        CASES[case][0](build.root, edit_npz=edit_npz, edit_json=edit_json)
    problems = validate(build.root)
    texts = [str(p) for p in _errors(problems)]
    assert len(texts) == 6, "\n".join(texts)
    for needle in ("000002.png", "masks/000001.png", "'left/hand_pose'", "'T_cam_from_obj' is not rigid",
                   "'points'", "object_mesh.ply"):
        assert sum(needle in t for t in texts) == 1, needle
    report = format_report(problems, build.root)
    assert report.splitlines()[0] == f"{build.root}: the build is NOT valid"
    assert report.splitlines()[-1] == "6 errors, 0 warnings"
    assert "ERROR   hands.npz: field 'left/hand_pose' contains NaN/inf at frame 1 (1 of 4)." in report


def test_many_bad_frames_are_grouped(build):
    for i in range(T):
        Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(build.root / "images" / f"{i:06d}.png")
    errors = _errors(validate(build.root))
    assert len(errors) == 1
    assert str(errors[0]).startswith(f"{build.root / 'images'}: has 4 images of the wrong size: "
                                     "000000.png (size 6x5), 000001.png (size 6x5), 000002.png (size 6x5), ")


def test_masks_optional_unless_required(build):
    shutil.rmtree(build.root / "masks")
    assert validate(build.root) == []
    assert "no masks" in format_report([], build.root)
    errors = _errors(validate(build.root, require_masks=True))
    assert len(errors) == 1 and str(errors[0]).startswith(f"{build.root / 'masks'}: folder not found")
    assert validate_command([str(build.root), "--require-masks"]) == 1


def test_check_images_false_reads_names_only(build):
    _mask_value_7(build.root)
    _small_image(build.root)
    assert len(_errors(validate(build.root))) == 2
    assert validate(build.root, check_images=False) == []
    _missing_image(build.root)
    assert len(_errors(validate(build.root, check_images=False))) == 1


def test_warnings_do_not_fail(build, edit_json, edit_npz, capsys):
    edit_json(build.root / "sequence.json", lambda m: m.__setitem__("notes", "hello"))
    edit_json(build.root / "sequence.json", lambda m: m.__setitem__("hands", ["right"]))
    (build.root / "images" / ".DS_Store").write_bytes(b"x")
    problems = validate(build.root)
    assert _errors(problems) == []
    texts = [str(p) for p in _warnings(problems)]
    assert any("field 'notes' is not part of the schema" in t for t in texts)
    assert any("field 'left' is in hands.npz but not in sequence.json hands ['right']" in t for t in texts)
    assert any("label left hand (3) appears although sequence.json hands is ['right']" in t for t in texts)
    assert any("images: has 1 other files that are ignored: .DS_Store" in t for t in texts)
    assert any("gt/hands.npz: has hands ['left', 'right'] but sequence.json lists ['right']" in t for t in texts)
    assert len(texts) == 5, "\n".join(texts)
    assert validate_command([str(build.root)]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].endswith("ground truth) with 5 warnings")
    assert out.count("WARNING ") == 5


def test_validate_command_exit_codes(build, tmp_path, capsys):
    _hand_nan(build.root, edit_npz=lambda p, fn: _edit(p, fn))
    assert validate_command([str(build.root)]) == 1
    out = capsys.readouterr().out
    assert "field 'left/hand_pose' contains NaN/inf" in out and out.strip().endswith("1 error, 0 warnings")
    assert validate_command([str(tmp_path / "nowhere")]) == 1
    assert "folder not found" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        validate_command([])
    assert e.value.code == 2


def _edit(path, fn):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    fn(arrays)
    np.savez(path, **arrays)


def test_written_masks_validate(build):
    # A mask written through write_mask with every legal label is accepted as-is.
    m = np.array([[0, 1, 2, 3, 255] * 3 + [0]] * H, np.uint8)
    write_mask(build.root / "masks" / "000002.png", m)
    assert validate(build.root) == []
    np.testing.assert_array_equal(load_sequence(build.root).load_mask(2), m)
