"""Stage `final`: re-fit the fields over the refined poses (HOLD's stage 3).

The same trainer as stage `fit` (recon.train.train), told to take its initial poses from the pose
folder the refinement wrote (`poses_from`, e.g. RUN/refine) and, by default, to start its networks
from the fit's weights (`init_from`) instead of from scratch, because it measured better at the same
step count and needs no hand SDF pre-fit.

Measured 2026-11-21 on the demo sequence (`hold demo`'s build: 16 frames, 96x96, hand noise 5 deg / 1 cm,
object noise 2 deg / 3 mm), configs/demo.yaml with fit 100 steps -> refine 25 steps -> final 100 steps,
1 CPU thread on a shared machine (CPU seconds are the comparable figure; wall time was inflated ~4x):

    final from      object CD   F5      F10     CD_h     MPJPE    last-batch PSNR   CPU s (wall s)
    (fit only)      0.342 cm2   76.6 %  98.2 %  2.66 cm2  7.7 mm   21.8 dB           -
    scratch         0.342 cm2   75.7 %  98.7 %  2.31 cm2  6.5 mm   22.5 dB           77.6 (394)
    warm start      0.175 cm2   91.4 %  100 %   2.08 cm2  6.5 mm   22.5 dB           70.6 (314)

From scratch, 100 steps only re-learn what the fit had (its CD equals the fit's); warm-started, they
refine the fit's surfaces over the better poses. `final_warm_start=false` (hold reconstruct) trains
from scratch.
"""
from __future__ import annotations

from pathlib import Path

from hold.run_dir import read_run_json
from recon.config import TrainConfig
from recon.train import train


def fit_build(fit_run: Path) -> Path:
    """The build a finished `fit` run was trained on (from its run.json)."""
    record = Path(fit_run) / "run.json"
    if not record.exists():
        raise FileNotFoundError(f"{record} does not exist: {fit_run} is not a training run; "
                                f"fix: run `hold train BUILD --out {fit_run}` first")
    return Path(read_run_json(fit_run)["build"])


def train_final(fit_run: Path, poses: Path, out: Path, cfg: TrainConfig, warm_start: bool = True,
                progress: bool = True, callbacks: list | None = None) -> Path:
    """Train `out` on the fit run's build with the poses in `poses` (hands.npz/object.npz); the networks
    start from the fit's model.pt when `warm_start`. Resumable like any training run; returns model.pt."""
    fit_run = Path(fit_run)
    init_from = fit_run / "checkpoints" / "model.pt" if warm_start else None
    if init_from is not None and not init_from.exists():
        raise FileNotFoundError(f"{init_from} does not exist: the fit run {fit_run} is not finished; "
                                f"fix: finish stage fit first (re-run it to resume)")
    return train(fit_build(fit_run), out, cfg, progress=progress, callbacks=callbacks, poses_from=poses,
                 init_from=init_from)
