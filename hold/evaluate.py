"""`hold evaluate PRED [GT]`: HOLD's metrics plus contact/penetration statistics, to metrics.json.

PRED is a reconstruction directory (RUN/final/pred, else RUN/fit/pred), a trained run (its pred/,
written by `hold export`) or a folder in the gt/ layout. GT is a folder in the gt/ layout, a build
holding gt/, or one HO3D sequence (meta/*.pkl; needs --ycb-models for the object and --mano-dir for
hand vertices); by default the build the prediction was trained on (run.json 'build') when it has
gt/. Without ground truth only the prediction's contact/penetration statistics are reported.
Metric definitions: docs/evaluation.md.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from hold.data.groundtruth import PRED_DIR, HandObjectTrajectory, load_trajectory
from hold.data.io import atomic_write_json
from hold.data.schema import GT_DIR, SEQUENCE_JSON
from hold.metrics import contact_unavailable_reason, evaluate_trajectories, trajectory_contact_metrics
from hold.run_dir import RUN_JSON, STAGES, read_run_json

GtFormat = Literal["auto", "hold", "ho3d"]
METRICS_JSON = "metrics.json"
SUMMARY_KEYS = (("mpjpe_ra_r", "MPJPE_r {:.1f} mm"), ("mpjpe_ra_l", "MPJPE_l {:.1f} mm"),
                ("cd_obj", "CD_obj {:.3f} cm²"), ("f10_obj", "F10 {:.1%}"), ("f5_obj", "F5 {:.1%}"),
                ("cd_h", "CD_h {:.3f} cm²"), ("obj_rot_err_deg_median", "rot {:.2f}°"),
                ("obj_trans_err_mm_median", "trans {:.1f} mm"),
                ("pen_depth_mm", "pen {:.1f} mm"), ("pen_ratio", "pen frames {:.0%}"),
                ("contact_ratio", "contact {:.0%}"), ("gt_pen_depth_mm", "gt pen {:.1f} mm"),
                ("gt_contact_ratio", "gt contact {:.0%}"))


@dataclass
class EvalInputs:
    """What `hold evaluate` resolved its arguments to."""

    pred: Path
    """The prediction folder in the gt/ layout."""
    default_out: Path | None
    """Where metrics.json goes unless --out says otherwise (None: only with --out)."""
    gt: Path | None = None
    """The ground truth (a gt/-layout folder or an HO3D sequence), None when there is none."""
    gt_format: str | None = None
    """'hold' or 'ho3d' (None without ground truth)."""
    notes: list[str] = field(default_factory=list)
    """Messages for the user (how the inputs were found, what cannot be computed)."""


# ----------------------------------------------------------------------------------------------
# Finding the prediction and the ground truth
# ----------------------------------------------------------------------------------------------


def _is_trajectory_folder(path: Path) -> bool:
    return (path / "hands.npz").is_file() or (path / "object.npz").is_file()


def _is_run(path: Path) -> bool:
    return (path / RUN_JSON).is_file()


def resolve_prediction(path: Path | str) -> tuple[Path, Path | None]:
    """(prediction folder, default metrics.json path) of a RUN, a trained run or a gt-layout folder;
    a build stands for its gt/ (no default output: nothing is written into a build)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"PRED '{path}' does not exist; pass a reconstruction directory (hold reconstruct "
                                f"--out), a trained run (hold train + hold export) or a prediction folder.")
    if (path / SEQUENCE_JSON).is_file():  # a build (its hands.npz / object.npz are estimates, not a trajectory)
        if _is_trajectory_folder(path / GT_DIR):  # its own ground truth, e.g. for the GT's contact statistics
            return path / GT_DIR, None  # never written into the build (its fingerprint would change)
        raise FileNotFoundError(f"PRED '{path}' is a sequence build without {GT_DIR}/, not a prediction. Fix: pass "
                                f"the reconstruction directory or trained run made from it.")
    for run in [path / s for s in STAGES] + [path]:
        if (run / PRED_DIR).is_dir() and _is_trajectory_folder(run / PRED_DIR):
            return run / PRED_DIR, path / METRICS_JSON
    if _is_trajectory_folder(path):
        return path, path / METRICS_JSON
    runs = [r for r in [path / s for s in STAGES] + [path] if _is_run(r)]
    if runs:
        raise FileNotFoundError(f"PRED '{path}': the trained run {runs[0]} has no {PRED_DIR}/ prediction yet. "
                                f"Fix: run `hold export {runs[0]}` first.")
    raise FileNotFoundError(f"PRED '{path}' holds no prediction: expected {PRED_DIR}/ (a trained run after "
                            f"`hold export`), final/{PRED_DIR}/ or fit/{PRED_DIR}/ (a reconstruction directory), or "
                            f"hands.npz / object.npz (the gt/ layout).")


def default_ground_truth(pred_arg: Path | str) -> Path | None:
    """The gt/ of the build the prediction was made from: RUN/build/gt, else the build named by the
    run.json of RUN/final, RUN/fit or the run itself; None when there is none. A run.json that is not
    a trained run's (no readable 'build') raises ValueError naming it."""
    path = Path(pred_arg)
    if (path / "build" / GT_DIR).is_dir():
        return path / "build" / GT_DIR
    for run in [path / s for s in STAGES] + [path, path.parent]:
        if _is_run(run):
            build = read_run_json(run)["build"]
            return Path(build) / GT_DIR if build and (Path(build) / GT_DIR).is_dir() else None
    return None


def detect_gt_format(gt: Path) -> str:
    """'ho3d' for a folder with meta/*.pkl, else 'hold'."""
    from hold.ho3d import is_ho3d_sequence

    return "ho3d" if is_ho3d_sequence(gt) else "hold"


def resolve_inputs(pred: Path | str, gt: Path | str | None = None, gt_format: GtFormat = "auto") -> EvalInputs:
    """Resolve PRED / GT arguments as `hold evaluate` does (see the module docstring)."""
    pred_folder, default_out = resolve_prediction(pred)
    inputs = EvalInputs(pred=pred_folder, default_out=default_out)
    if gt is None and (Path(pred) / SEQUENCE_JSON).is_file():
        inputs.notes.append(f"PRED is a build: reporting the contact/penetration statistics of its {GT_DIR}/ "
                            f"(the ground truth itself)")
        return inputs
    if gt is None:
        gt = default_ground_truth(pred)
        if gt is None:
            inputs.notes.append("no ground truth (no GT argument, and the prediction's build has no gt/): "
                                "reporting the prediction's own contact/penetration statistics only")
            return inputs
        inputs.notes.append(f"ground truth: {gt} (the prediction's build)")
    gt = Path(gt)
    if not gt.exists():
        raise FileNotFoundError(f"GT '{gt}' does not exist; pass a gt/-layout folder, a build with gt/, or one "
                                f"HO3D sequence folder (holding meta/).")
    if gt_format not in ("auto", "hold", "ho3d"):
        raise ValueError(f"--gt-format is {gt_format!r}; expected auto, hold or ho3d.")
    inputs.gt = gt
    inputs.gt_format = detect_gt_format(gt) if gt_format == "auto" else gt_format
    return inputs


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


def trajectory_as_dict(traj: HandObjectTrajectory, valid: np.ndarray | None = None) -> dict:
    """The plain-dict form `hold.metrics.evaluate_trajectories` takes (hands without vertices, e.g.
    HO3D without MANO, carry keypoints only)."""
    fill = (lambda a: a) if valid is None else (lambda a: fill_invalid_frames(a, valid))
    hands = {}
    for s, h in traj.hands.items():
        hands[s] = {"keypoints": fill(h.keypoints)}
        if h.vertices.ndim == 3 and h.vertices.shape[1] > 0 and len(h.faces):
            hands[s].update(vertices=fill(h.vertices), faces=h.faces)
    out: dict = {"hands": hands, "object": None, "valid": valid}
    if traj.object is not None:
        out["object"] = {"vertices": traj.object.vertices, "faces": traj.object.faces,
                         "T_cam_from_obj": fill(traj.object.T_cam_from_obj)}
    return out


def fill_invalid_frames(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A copy of per-frame array `a` whose frames outside `valid` repeat the first valid frame.

    Unannotated frames are NaN; the metrics skip them through `valid`, but some steps (SVDs,
    inverses) run over all frames at once and must not see NaN.
    """
    valid = np.asarray(valid, dtype=bool)
    if valid.all() or not valid.any():
        return a
    out = np.array(a, copy=True)
    out[~valid] = out[int(np.argmax(valid))]
    return out


def load_ground_truth(gt: Path, gt_format: str, mano_dir: Path | str | None = None,
                      ycb_models: Path | str | None = None) -> tuple[dict, list[str]]:
    """(metrics dict of the ground truth, notes) for a 'hold' or 'ho3d' ground truth."""
    notes: list[str] = []
    if gt_format == "hold":
        if (gt / SEQUENCE_JSON).is_file() and not (gt / GT_DIR).is_dir():
            raise ValueError(f"GT '{gt}' is a sequence build without ground truth ({GT_DIR}/ missing). Fix: pass a "
                             f"build made with ground truth (hold synth), an HO3D sequence (--gt-format ho3d), or "
                             f"leave GT out for prediction-only statistics.")
        return trajectory_as_dict(load_trajectory(gt)), notes
    if gt_format != "ho3d":
        raise ValueError(f"--gt-format is {gt_format!r}; expected auto, hold or ho3d.")
    from hold.ho3d import load_ho3d_sequence

    seq = load_ho3d_sequence(gt, ycb_dir=ycb_models, mano_dir=mano_dir)
    if not seq.valid.any():
        raise ValueError(f"GT '{gt}': no frame has all 21 hand joints and the object pose, so there is nothing to "
                         f"score. HO3D's evaluation split looks like this (its meta/*.pkl hold only the root joint; "
                         f"the rest is kept by the benchmark server). Fix: evaluate against a sequence of the train "
                         f"split, or leave GT out for prediction-only statistics.")
    if ycb_models is None:
        notes.append("HO3D without --ycb-models: no object mesh, so no object metrics (CD, F-scores, CD_h, "
                     "MRRPE, pose errors, contact)")
    if mano_dir is None:
        notes.append("HO3D without --mano-dir: hand keypoints only (MPJPE); no hand vertices, so no CD_hand, "
                     "v2v or ground-truth contact/penetration")
    n_invalid = int((~seq.valid).sum())
    if n_invalid:
        notes.append(f"HO3D: {n_invalid} of {len(seq.valid)} frames have no full annotation and are not scored")
    return trajectory_as_dict(seq.trajectory, seq.valid), notes


def evaluate_paths(pred: Path | str, gt: Path | str | None = None, out: Path | str | None = None, *,
                   gt_format: GtFormat = "auto", mano_dir: Path | str | None = None,
                   ycb_models: Path | str | None = None) -> dict:
    """Evaluate `pred` (against `gt` when there is one); write metrics.json; return the metrics.

    Default output: metrics.json in the run / reconstruction directory, or in the prediction
    folder when PRED is one.
    """
    inputs = resolve_inputs(pred, gt, gt_format)
    return _evaluate(inputs, out, mano_dir, ycb_models)[0]


def _evaluate(inputs: EvalInputs, out: Path | str | None, mano_dir, ycb_models
              ) -> tuple[dict, Path | None, list[str]]:
    pred_traj = load_trajectory(inputs.pred)
    pred_dict = trajectory_as_dict(pred_traj)
    notes = list(inputs.notes)
    if inputs.gt is None:
        metrics: dict = {"num_frames": int(pred_traj.num_frames), **trajectory_contact_metrics(pred_dict)}
        if len(metrics) == 1:
            notes.append(f"no contact/penetration statistics either: the prediction has "
                         f"{contact_unavailable_reason(pred_dict)}")
    else:
        gt_dict, gt_notes = load_ground_truth(inputs.gt, inputs.gt_format, mano_dir, ycb_models)
        notes += gt_notes
        T_gt = _num_frames(gt_dict)
        if pred_traj.num_frames != T_gt:
            raise ValueError(f"PRED {inputs.pred} has {pred_traj.num_frames} frames but GT {inputs.gt} has {T_gt}: "
                             f"evaluate a prediction of the same frames (no stride, same start and end)")
        metrics = evaluate_trajectories(pred_dict, gt_dict)
    out = Path(out) if out is not None else inputs.default_out
    if out is None:
        notes.append("metrics.json not written (PRED is a build; pass --out FILE to save)")
    else:
        atomic_write_json(out, {"pred": str(inputs.pred), "gt": None if inputs.gt is None else str(inputs.gt),
                                "gt_format": inputs.gt_format, "notes": notes, "metrics": metrics})
    return metrics, out, notes


def _num_frames(d: dict) -> int:
    for h in (d.get("hands") or {}).values():
        return len(h["keypoints"])
    return len(d["object"]["T_cam_from_obj"])


def summary_line(metrics: dict) -> str:
    """One line with the headline metrics present in `metrics`."""
    return ", ".join(fmt.format(metrics[k]) for k, fmt in SUMMARY_KEYS if k in metrics)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hold evaluate",
        description="HOLD's metrics (MPJPE, object CD/F5/F10 after ICP with scale, CD_h, MRRPE) and contact/"
                    "penetration statistics of a prediction; writes metrics.json and prints a summary. "
                    "Definitions: docs/evaluation.md.")
    p.add_argument("pred", type=Path, help="reconstruction directory, trained run (after hold export) or a "
                                           "folder in the gt/ layout")
    p.add_argument("gt", type=Path, nargs="?", default=None,
                   help="ground truth: gt/-layout folder, build with gt/, or one HO3D sequence folder (meta/*.pkl); "
                        "default: the prediction's build's gt/ when it has one, else prediction-only statistics")
    p.add_argument("--gt-format", default="auto", choices=("auto", "hold", "ho3d"),
                   help="auto: HO3D when GT holds meta/*.pkl, else hold's gt/ layout")
    p.add_argument("--mano-dir", type=Path, default=None, help="folder with your MANO_RIGHT.pkl (HO3D hand vertices)")
    p.add_argument("--ycb-models", type=Path, default=None,
                   help="YCB-Video 3D models folder (HO3D objects: <dir>/[models/]<objName>/textured_simple.obj)")
    p.add_argument("--out", type=Path, default=None,
                   help="metrics.json path (default: in the run / reconstruction directory, or the prediction folder)")
    return p


def evaluate_command(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    inputs = resolve_inputs(args.pred, args.gt, args.gt_format)
    metrics, out, notes = _evaluate(inputs, args.out, args.mano_dir, args.ycb_models)
    for note in notes:
        print(f"hold evaluate: note: {note}")
    where = f"  ->  {out}" if out is not None else ""
    print(f"hold evaluate: {summary_line(metrics) or 'no metric could be computed'}{where}")
    return 0
