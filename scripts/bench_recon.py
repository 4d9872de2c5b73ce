"""Training-speed benchmark of the reconstruction core: presets x hash-grid implementations.

    python scripts/bench_recon.py [--presets default hold_mlp] [--steps 20] [--rays 4096] [--out bench.json]

Builds a small synthetic sequence, then for each preset times full training steps (render all nodes,
all losses, backward, Adam) after warm-up. Prints a table and writes JSON with the device name,
training it/s, rays/s, samples/s (ray samples through the fields per second, all nodes) and peak
memory. Runs on CPU too (use fewer rays/steps there); tcnn rows appear only where tinycudann imports.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import hold  # noqa: F401  (import-order guard)
import torch

from hold.config import resolve_config
from hold.fields import tcnn_available
from hold.synth.sequence import SynthConfig, generate
from recon.config import TrainConfig
from recon.train import build_model, resolve_preset


def bench_one(build: Path, preset: str, implementation: str, steps: int, warmup: int, rays: int, device: str) -> dict:
    overrides = [f"sampler.rays_per_batch={rays}"]
    for node in ("object", "hand"):
        overrides.append(f"model.{node}.sdf.hash_grid.implementation={implementation}")
    cfg = resolve_config(TrainConfig(), [resolve_preset(preset)], overrides)
    model, sampler = build_model(build, cfg)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    samples_per_ray = sum(n.cfg.n_coarse + n.cfg.n_importance for n in model.field_nodes)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(warmup + steps):
        if step == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        batch = {k: v.to(device) for k, v in sampler.batch(step, 0).items()}
        loss = model.losses(batch, step)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    return {"preset": preset, "encoding_impl": implementation, "rays_per_step": rays,
            "samples_per_ray_all_nodes": samples_per_ray, "it_per_s": round(1.0 / dt, 3),
            "rays_per_s": round(rays / dt, 1), "samples_per_s": round(rays * samples_per_ray / dt, 1),
            "ms_per_step": round(1000 * dt, 1), "peak_memory_mb": round(peak, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["default", "hold_mlp"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rays", type=int, default=4096)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--out", type=Path, default=Path("bench_recon.json"))
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    impls = ["torch"] + (["tcnn"] if device == "cuda" and tcnn_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        build = generate(SynthConfig(num_frames=args.frames, width=args.size, height=args.size), Path(tmp) / "b",
                         progress=False)
        rows = []
        for preset in args.presets:
            for impl in impls:
                if preset == "hold_mlp" and impl == "tcnn":
                    continue  # no hash grid in the baseline
                rows.append(bench_one(build, preset, impl, args.steps, args.warmup, args.rays, device))
                print(json.dumps(rows[-1]), flush=True)
    name = torch.cuda.get_device_name() if device == "cuda" else f"{platform.processor() or 'cpu'} ({torch.get_num_threads()} threads)"
    result = {"device": name, "torch": torch.__version__, "steps": args.steps, "rows": rows}
    args.out.write_text(json.dumps(result, indent=2))
    cols = ["preset", "encoding_impl", "rays_per_step", "it_per_s", "rays_per_s", "samples_per_s", "peak_memory_mb"]
    print(f"\ndevice: {name}")
    print(" | ".join(f"{c:>16}" for c in cols))
    for r in rows:
        print(" | ".join(f"{r[c]!s:>16}" for c in cols))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
