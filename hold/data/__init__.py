"""The sequence contract (DESIGN.md "The sequence build"): schema, load / save / validate, ground truth.

    seq = load_sequence("clip/build")          # raises SequenceError on the first problem
    problems = validate("clip/build")          # every problem, for `hold validate`
    gt = load_trajectory("clip/build")         # the build's gt/ (or a prediction folder)
"""
from hold.data.errors import Problem, SequenceError
from hold.data.groundtruth import (
    HandObjectTrajectory, HandTrajectory, ObjectTrajectory, load_trajectory, save_trajectory,
)
from hold.data.io import (
    atomic_write_bytes, atomic_write_json, atomic_write_npz, load_sequence, read_depth, save_sequence,
    write_depth, write_image, write_mask,
)
from hold.data.schema import (
    LABELS, SCHEMA_VERSION, HandTrack, Intrinsics, ObjectTrack, Sequence,
)
from hold.data.validate import format_report, validate, validate_command

__all__ = [
    "LABELS", "SCHEMA_VERSION", "HandObjectTrajectory", "HandTrack", "HandTrajectory", "Intrinsics",
    "ObjectTrack", "ObjectTrajectory", "Problem", "Sequence", "SequenceError", "atomic_write_bytes",
    "atomic_write_json", "atomic_write_npz", "format_report", "load_sequence", "load_trajectory",
    "read_depth", "save_sequence", "save_trajectory", "validate", "validate_command", "write_depth",
    "write_image", "write_mask",
]
