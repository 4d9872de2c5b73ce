"""`hold train BUILD --out RUN [--config YAML ...] [key=value ...]`: stage `fit` into a run directory.

RUN/ config.yaml (fully resolved), run.json (build path, versions, poses_from, init_from),
checkpoints/last.ckpt (resume),
checkpoints/model.pt (plain state dict, loadable without Lightning), logs/fit/ (CSV + TensorBoard; a resumed segment logs to logs/fit_resumed_at_<step>/),
timings.json (device, steps/s, wall time, peak memory). A run whose model.pt exists is finished and
skipped; an interrupted run resumes from last.ckpt at the same step.

Two options make the same trainer stage `final`: `poses_from` (a pose folder with hands.npz/object.npz,
e.g. RUN/refine, replaces the build's initial poses) and `init_from` (a finished run's model.pt whose
network weights, not poses, start the fields: a warm start). Both are recorded in run.json and honoured
whenever the run is loaded again.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

import hold
from hold.config import resolve_config, resolve_preset, to_yaml
from hold.data import load_sequence
from hold.data.poses import with_poses_from
from hold.data.schema import Sequence
from hold.data.io import atomic_write_json, atomic_write_bytes
from hold.data.validate import format_report, validate
from hold.model import HoldModel
from hold.nodes import BackgroundNode
from recon.config import TrainConfig
from recon.data import RaySampler


def check_build(build: Path) -> None:
    """Stop before training on a build that cannot train: every problem listed, with fixes."""
    problems = [p for p in validate(build, require_masks=True) if p.severity == "error"]
    if problems:
        raise ValueError("the build cannot be trained on:\n" + format_report(problems, build))
    seq = load_sequence(build)
    if seq.num_frames < 2:
        raise ValueError(f"{build}: the build has {seq.num_frames} frame(s); training needs at least 2")
    if not seq.hands and seq.object is None:
        raise ValueError(f"{build}: the build has neither a hand nor an object to reconstruct")


def device_of(cfg) -> str:
    """The torch device of a config with a `device` field: 'auto' (CUDA when available), 'cpu' or 'cuda'."""
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {cfg.device!r}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda was asked for but torch sees no CUDA device (CPU build of torch?). "
                         "Fix: device=cpu or auto")
    return cfg.device


def load_run_sequence(build: Path, poses_from: Path | None = None) -> Sequence:
    """The build, with its initial poses replaced by the pose folder `poses_from` when given."""
    seq = load_sequence(build)
    return with_poses_from(seq, poses_from) if poses_from is not None else seq


def build_model(build: Path, cfg: TrainConfig, poses_from: Path | None = None) -> tuple[HoldModel, RaySampler]:
    seq = load_run_sequence(build, poses_from)
    sampler = RaySampler(seq, cfg.sampler)
    idx = np.linspace(0, seq.num_frames - 1, min(cfg.model.background.init_from_frames, seq.num_frames)).astype(int)
    bg = BackgroundNode.median_init([sampler.images[i] for i in idx], [sampler.labels[i] for i in idx])
    if cfg.mano_dir is not None:
        cfg.model.mano_dir = cfg.mano_dir
    return HoldModel(seq, cfg.model, background_init=bg), sampler


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def warm_start_(model: HoldModel, model_pt: Path) -> list[str]:
    """Copy the network weights (not the poses) of a finished run's model.pt into `model`; returns the names."""
    model_pt = Path(model_pt)
    if not model_pt.is_file():
        raise FileNotFoundError(f"init_from={model_pt}: no such file (expected a finished run's checkpoints/model.pt)")
    source = torch.load(model_pt, map_location="cpu", weights_only=False)["state_dict"]
    target = model.named_network_parameters()
    missing = sorted(set(target) - set(source))
    bad = [f"{k}: {tuple(source[k].shape)} vs {tuple(v.shape)}" for k, v in target.items()
           if k in source and source[k].shape != v.shape]
    if missing or bad:
        raise ValueError(f"init_from={model_pt}: its networks do not fit this config's model "
                         f"(missing {missing[:4]}, shape mismatch {bad[:4]}); fix: warm-start from a run with "
                         f"the same model config (hash grids, MLP sizes, hands), or train fresh")
    with torch.no_grad():
        for k, p in target.items():
            p.copy_(source[k])
    return sorted(target)


def _check_same_run(out: Path, record: dict) -> None:
    """An unfinished run directory only resumes the run it was started for."""
    path = out / "run.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())
    changed = [k for k in ("build", "poses_from", "init_from") if old.get(k) != record[k]]
    if changed:
        raise ValueError(f"{out} holds an unfinished run started with other inputs "
                         f"({', '.join(f'{k}: {old.get(k)} -> {record[k]}' for k in changed)}); "
                         f"fix: use another --out, or delete {out} to start over")


def train(build: Path, out: Path, cfg: TrainConfig, progress: bool = True, callbacks: list | None = None,
          poses_from: Path | None = None, init_from: Path | None = None) -> Path:
    """Train the fields (stage `fit`, or `final` with `poses_from`/`init_from`; resumable). Returns the
    path of the plain state dict. `callbacks`: extra Lightning callbacks (progress hooks, early stops).
    `poses_from`: folder with hands.npz/object.npz replacing the build's initial poses. `init_from`: a
    model.pt whose network weights start the fields (poses still come from the build / `poses_from`)."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    from recon.module import AtomicCheckpoint, HoldModule

    build, out = Path(build).resolve(), Path(out)
    poses_from = Path(poses_from).resolve() if poses_from is not None else None
    init_from = Path(init_from).resolve() if init_from is not None else None
    check_build(build)
    final = out / "checkpoints" / "model.pt"
    if final.exists():
        print(f"hold train: {out} is already trained (checkpoints/model.pt exists); nothing to do")
        return final
    record = {"build": str(build), "poses_from": str(poses_from) if poses_from else None,
              "init_from": str(init_from) if init_from else None}
    _check_same_run(out, record)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the fields' initial weights are seeded too
    model, sampler = build_model(build, cfg, poses_from)  # bad pose folders fail here, before anything is written
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "config.yaml", to_yaml(cfg).encode())
    atomic_write_json(out / "run.json", {**record, "hold_version": hold.__version__,
                                         "torch": torch.__version__, "python": platform.python_version()})
    device = device_of(cfg)
    last = out / "checkpoints" / "last.ckpt"
    t0 = time.perf_counter()
    prefit_s = 0.0
    if init_from is not None and not last.exists():
        warm_start_(model, init_from)  # trained hand SDFs: no pre-fit
    elif not last.exists() and model.hands:
        model.to(device)
        model.prefit_hands()
        prefit_s = time.perf_counter() - t0
    module = HoldModule(model, sampler, cfg)
    resumed_from = int(torch.load(last, map_location="cpu", weights_only=False)["global_step"]) if last.exists() else 0
    # each (re)start logs into its own folder: a resume never overwrites the logs written before the kill
    version = "fit" if resumed_from == 0 else f"fit_resumed_at_{resumed_from}"
    loggers = [CSVLogger(out, name="logs", version=version), TensorBoardLogger(out, name="logs", version=version)]
    trainer = pl.Trainer(max_steps=cfg.max_steps, accelerator="gpu" if device == "cuda" else "cpu", devices=1,
                         logger=loggers, log_every_n_steps=cfg.log_every, enable_checkpointing=False,
                         callbacks=[AtomicCheckpoint(last, cfg.checkpoint_every), *(callbacks or [])],
                         enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0)
    t_fit = time.perf_counter()
    trainer.fit(module, ckpt_path=str(last) if last.exists() else None)
    fit_s = time.perf_counter() - t_fit
    if trainer.interrupted or trainer.global_step < cfg.max_steps:
        raise KeyboardInterrupt(f"hold train: interrupted at step {trainer.global_step}; "
                                f"re-run the same command to resume from {last}")
    steps = cfg.max_steps - resumed_from
    tmp = final.with_name("model.pt.tmp")
    torch.save({"state_dict": model.state_dict(), "config": to_yaml(cfg), "step": cfg.max_steps}, tmp)
    os.replace(tmp, final)
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    timings["fit"] = {
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "steps": steps, "resumed_from_step": resumed_from, "wall_s": round(fit_s + prefit_s, 2),
        "hand_prefit_s": round(prefit_s, 2), "steps_per_s": round(steps / max(fit_s, 1e-9), 3),
        "rays_per_step": cfg.sampler.rays_per_batch, "peak_memory_mb": round(peak_memory_mb(device), 1),
        "final_loss": module.last_terms.get("loss"), "final_psnr": module.last_terms.get("psnr"),
        "warm_started": init_from is not None,
    }
    atomic_write_json(timings_path, timings)
    return final


def train_command(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hold train", description="Fit the hand and object fields to a sequence build "
                                "(stage `fit`). key=value arguments override TrainConfig fields, e.g. max_steps=500.")
    p.add_argument("build", type=Path)
    p.add_argument("--out", type=Path, required=True, help="run directory (resumed if it exists)")
    p.add_argument("--config", action="append", default=[], help="YAML file or preset name in configs/ (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--poses-from", type=Path, default=None,
                   help="folder with hands.npz/object.npz (e.g. RUN/refine) replacing the build's initial poses")
    p.add_argument("--init-from", type=Path, default=None,
                   help="a finished run's checkpoints/model.pt: warm-start the networks (not the poses)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(argv)  # key=value may come before or after the options
    cfg = resolve_config(TrainConfig(), [resolve_preset(c) for c in args.config], args.overrides)
    path = train(args.build, args.out, cfg, progress=not args.quiet, poses_from=args.poses_from,
                 init_from=args.init_from)
    print(f"hold train: done -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(train_command())
