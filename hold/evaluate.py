"""`hold evaluate PRED GT`: HOLD's metrics between two trajectories (gt/ layout), to metrics.json."""
from __future__ import annotations

from pathlib import Path

from hold.data.groundtruth import HandObjectTrajectory, load_trajectory, resolve_trajectory_folder
from hold.data.io import atomic_write_json
from hold.metrics import evaluate_trajectories

SUMMARY_KEYS = (("mpjpe_ra_r", "MPJPE_r {:.1f} mm"), ("mpjpe_ra_l", "MPJPE_l {:.1f} mm"),
                ("cd_obj", "CD_obj {:.3f} cm²"), ("f10_obj", "F10 {:.1%}"), ("f5_obj", "F5 {:.1%}"),
                ("cd_h", "CD_h {:.3f} cm²"), ("obj_rot_err_deg_median", "rot {:.2f}°"),
                ("obj_trans_err_mm_median", "trans {:.1f} mm"))


def trajectory_as_dict(traj: HandObjectTrajectory) -> dict:
    """The plain-dict form `hold.metrics.evaluate_trajectories` takes."""
    out: dict = {"hands": {s: {"keypoints": h.keypoints, "vertices": h.vertices, "faces": h.faces}
                           for s, h in traj.hands.items()}, "object": None}
    if traj.object is not None:
        out["object"] = {"vertices": traj.object.vertices, "faces": traj.object.faces,
                         "T_cam_from_obj": traj.object.T_cam_from_obj}
    return out


def summary_line(metrics: dict) -> str:
    return ", ".join(fmt.format(metrics[k]) for k, fmt in SUMMARY_KEYS if k in metrics)


def evaluate_paths(pred: Path, gt: Path, out: Path | None = None) -> dict:
    """Evaluate `pred` against `gt`; write metrics.json (default: inside the prediction folder)."""
    pred_traj, gt_traj = load_trajectory(pred), load_trajectory(gt)
    if pred_traj.num_frames != gt_traj.num_frames:
        raise ValueError(f"{pred} has {pred_traj.num_frames} frames but {gt} has {gt_traj.num_frames}: "
                         f"evaluate a prediction of the same sequence (same frame list)")
    metrics = evaluate_trajectories(trajectory_as_dict(pred_traj), trajectory_as_dict(gt_traj))
    out = Path(out) if out is not None else resolve_trajectory_folder(pred) / "metrics.json"
    atomic_write_json(out, {"pred": str(pred), "gt": str(gt), "metrics": metrics})
    return metrics


def evaluate_command(pred: Path, gt: Path, out: Path | None) -> int:
    metrics = evaluate_paths(pred, gt, out)
    where = out if out is not None else resolve_trajectory_folder(pred) / "metrics.json"
    print(f"hold evaluate: {summary_line(metrics)}  ->  {where}")
    return 0
