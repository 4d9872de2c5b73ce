"""End-to-end benchmark of `hold preprocess all` on a synthetic video, against its ground truth.

    python scripts/bench_preprocess.py [--frames 60] [--size 512] [--seed 0] [--work DIR] [--out bench.json]

Renders a hand + box clip with `hold.synth`, encodes its frames as an H.264 mp4 (crf 16), and runs the whole
pipeline on it with the clip's label masks as `--masks.dir` and its emulated noisy hand keypoints as
`--hands.keypoints` (as if from SAM2 and a keypoint detector). Then compares the build with the ground truth
the way issue 4 asks: object poses after ONE similarity alignment (Umeyama on the camera centres in the object
frame: rotation / translation errors and the similarity's scale, which is 1 for a metric build), frames
registered by SfM, hand MPJPE (root-relative) of the build vs the emulated estimate's. Prints a table with the
per-step wall times and writes the same numbers as JSON. The test tests/preprocess/test_all.py uses the same
evaluation on a smaller clip.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import hold  # noqa: F401  (import-order guard)
import numpy as np
import torch
from PIL import Image

from hold.geometry.se3 import umeyama


def write_video(frames_dir: Path, path: Path, num_frames: int | None = None, fps: float = 10) -> Path:
    """The PNG frames of a folder as an H.264 mp4 (near-lossless, crf 16, like a good phone video)."""
    import av

    files = sorted(Path(frames_dir).glob("*.png"))[:num_frames]
    first = np.asarray(Image.open(files[0]).convert("RGB"))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = first.shape[1], first.shape[0]
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "16"}
        for f in files:
            frame = av.VideoFrame.from_ndarray(np.asarray(Image.open(f).convert("RGB")), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def camera_centre_alignment(
    T_pred: np.ndarray, T_gt: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """One similarity (Umeyama) between the camera centres in the build's object frame and in the GT object frame
    (the usual SfM trajectory alignment); returns (its scale, rotation errors in degrees, translation errors in
    metres) of the aligned per-frame poses T_cam_from_obj (T, 4, 4). For a metric build the scale is 1."""
    T_pred, T_gt = torch.as_tensor(T_pred, dtype=torch.float64), torch.as_tensor(T_gt, dtype=torch.float64)
    R, t, Rg, tg = T_pred[:, :3, :3], T_pred[:, :3, 3], T_gt[:, :3, :3], T_gt[:, :3, 3]
    C = -(R.transpose(1, 2) @ t[..., None])[..., 0]  # the camera centre in the object frame: -R^T t
    Cg = -(Rg.transpose(1, 2) @ tg[..., None])[..., 0]
    s, Ra, ta = umeyama(C, Cg)  # x_gt = s Ra x_build + ta (object frames)
    R_hat = R @ Ra.T  # so that T_gt ~ T_pred with x_build = (Ra^T (x_gt - ta)) / s
    t_hat = s * t - (R_hat @ ta)
    cos = ((R_hat.transpose(1, 2) @ Rg).diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2
    rot = torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))
    return float(s), rot.numpy(), (t_hat - tg).norm(dim=-1).numpy()


def hand_keypoints(hands_npz: Path, model, side: str = "right") -> np.ndarray:
    """(T, 21, 3) keypoints of a hands.npz's `side` hand under `model`, metres."""
    z = np.load(hands_npz)
    T = len(z[f"{side}/transl"])
    with torch.no_grad():
        out = model(*(torch.as_tensor(z[f"{side}/{k}"]) for k in ("global_orient", "hand_pose")),
                    torch.as_tensor(z[f"{side}/betas"])[None].expand(T, -1), torch.as_tensor(z[f"{side}/transl"]))
    return out.keypoints.numpy()


def evaluate(synth: Path, seq: Path) -> dict:
    """The issue's numbers for the build in `seq` against the ground truth of the synthetic clip in `synth`."""
    from hold.data import load_sequence, load_trajectory
    from hold.hands import load_hand_model
    from hold.metrics import mpjpe

    build = load_sequence(seq)
    gt = load_trajectory(synth / "gt")
    obj = build.object
    reg = np.asarray(obj.valid, bool)
    s, rot, trans = camera_centre_alignment(obj.T_cam_from_obj[reg], gt.object.T_cam_from_obj[reg])
    model = load_hand_model(build.hand_model, "right")
    gt_kp = gt.hands["right"].keypoints
    kp_build = hand_keypoints(seq / "hands.npz", model)
    T = build.num_frames
    f, f_gt = float(build.intrinsics.K[0, 0]), float(gt.object.K[0, 0])
    return {
        "frames": T,
        "registered": int(reg.sum()),
        "registered_fraction": float(reg.mean()),
        "object_rotation_deg_median": float(np.median(rot)),
        "object_rotation_deg_max": float(rot.max()),
        "object_translation_mm_median": float(1e3 * np.median(trans)),
        "object_translation_mm_max": float(1e3 * trans.max()),
        "similarity_scale": s,
        "scale_error_percent": float(100 * (s - 1.0)),
        "focal_error_percent": float(100 * (f / f_gt - 1.0)),
        "hand_mpjpe_mm": float(mpjpe(kp_build, gt_kp)),
        "hand_mpjpe_mm_emulated": float(mpjpe(hand_keypoints(synth / "hands.npz", model), gt_kp)),
        "hand_root_error_mm_median": float(1e3 * np.median(np.linalg.norm(kp_build[:, 0] - gt_kp[:, 0], axis=-1))),
    }


def passes(m: dict) -> dict[str, bool]:
    """The issue's bars."""
    return {"rotation < 2 deg": m["object_rotation_deg_median"] < 2.0,
            "translation < 5 mm": m["object_translation_mm_median"] < 5.0,
            "scale within 5 %": abs(m["scale_error_percent"]) < 5.0,
            "registered >= 90 %": m["registered_fraction"] >= 0.9,
            "MPJPE <= emulated": m["hand_mpjpe_mm"] <= m["hand_mpjpe_mm_emulated"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=60, help="frames of the synthetic clip")
    p.add_argument("--size", type=int, default=512, help="image side, pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=None, help="work folder (default: a temp folder, removed)")
    p.add_argument("--out", type=Path, default=Path("bench_preprocess.json"), help="JSON results")
    args = p.parse_args(argv)

    from hold.synth.sequence import SynthConfig, generate
    from preprocess.all import main as all_main
    from preprocess.records import load_record

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_preprocess_"))
    try:
        t0 = time.perf_counter()
        synth = generate(SynthConfig(num_frames=args.frames, width=args.size, height=args.size, seed=args.seed),
                         work / "synth", progress=False)
        t_synth = time.perf_counter() - t0
        video = write_video(synth / "images", work / "clip.mp4")
        seq = work / "seq"
        shutil.rmtree(seq, ignore_errors=True)
        t1 = time.perf_counter()
        all_main([str(video), "--out", str(seq), "--hands.keypoints", str(synth / "hands.npz"),
                  "--masks.dir", str(synth / "masks"), "--quiet"])
        t_all = time.perf_counter() - t1
        metrics = evaluate(synth, seq)
        summary = json.loads((seq / "preprocess" / "all.json").read_text())
        steps = {s: {"seconds": v["seconds"], "status": v["status"],
                     "phases": (load_record(seq, s).timings if load_record(seq, s) is not None else {})}
                 for s, v in summary["steps"].items()}
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    result = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "frames": args.frames, "size": args.size, "seed": args.seed,
              "synth_seconds": round(t_synth, 2), "pipeline_seconds": round(t_all, 2), "steps": steps,
              "metrics": metrics, "passes": passes(metrics)}
    print(f"\nhold preprocess all: {args.frames} frames {args.size}x{args.size} (synth {t_synth:.1f} s, pipeline "
          f"{t_all:.1f} s)\n")
    print("| step | seconds |\n|---|---|")
    for s, v in steps.items():
        print(f"| {s} | {v['seconds']:.1f} |")
    print("\n| metric | value |\n|---|---|")
    for k, v in metrics.items():
        print(f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |")
    print("\n| bar | met |\n|---|---|")
    for k, v in result["passes"].items():
        print(f"| {k} | {'yes' if v else 'NO'} |")
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
