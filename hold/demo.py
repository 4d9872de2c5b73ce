"""`hold demo`: the main job on the embedded synthetic sequence, end to end, no downloads.

Today it covers what exists: synthesize a sequence (hand grasping a textured box) -> validate the
build -> evaluate ground truth against itself (the metrics pipeline a reconstruction is scored
with) -> print where everything is. Reconstruction stages join this same command as they land.
"""
from __future__ import annotations

import time
from pathlib import Path


def run_demo(out: Path, frames: int = 30, size: tuple[int, int] = (256, 256), seed: int = 0) -> int:
    from hold.data.validate import format_report, validate
    from hold.evaluate import evaluate_paths
    from hold.synth.preview import contact_sheet
    from hold.synth.sequence import SynthConfig, generate

    out.mkdir(parents=True, exist_ok=True)
    build = out / "build"
    t0 = time.perf_counter()
    generate(SynthConfig(num_frames=frames, width=size[0], height=size[1], seed=seed), build)
    t_synth = time.perf_counter() - t0
    problems = validate(build, require_masks=True)
    print(format_report(problems, build))
    if any(p.severity == "error" for p in problems):
        return 1
    metrics = evaluate_paths(build / "gt", build / "gt", out / "metrics.json")
    preview = contact_sheet(build, out / "preview.png")
    print(f"\nhold demo: done in {time.perf_counter() - t0:.1f} s (synthesis {t_synth:.1f} s)")
    print(f"  build (images/, masks/, hands.npz, object.npz, sequence.json): {build}")
    print(f"  ground truth (gt/: hands, object mesh + poses, depth):          {build / 'gt'}")
    print(f"  preview (frames + label overlays):                              {preview}")
    print(f"  metrics of GT vs itself (all errors 0, F-scores 1):             {out / 'metrics.json'}")
    print(f"  summary: {', '.join(f'{k}={v:.3g}' for k, v in metrics.items() if isinstance(v, float))}")
    return 0
