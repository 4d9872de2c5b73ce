"""`hold reconstruct INPUT --out RUN`: video / image folder / sequence build -> meshes, renders, metrics.

Stages (each one resumable and skipped when done with unchanged inputs and config):

    preprocess  INPUT -> RUN/build           (`hold preprocess all`; skipped when INPUT is a build)
    fit         RUN/fit                      (`hold train`)
    refine      RUN/refine                   (contact-aware pose refinement, networks frozen)
    final       RUN/final                    (`hold train` over the refined poses)
    export      RUN/final/{meshes,pred}      (`hold export`)
    evaluate    RUN/metrics.json             (only when the build has gt/)
    render      RUN/render                   (`hold render`)

RUN/reconstruct.json records, per stage, a fingerprint of its inputs and config (a hash chained from
the build's content through every upstream stage) and whether it finished. A stage is skipped when
its record says done with the same fingerprint and its done marker exists; a stage whose fingerprint
changed has its old outputs removed and runs again; a stage that was interrupted resumes (training
from its last checkpoint, exactly). RUN/timings.json holds the wall time per stage.

This module is the front door, like hold/cli.py: the apps (preprocess, recon, render) are imported
lazily, inside the stages, so `import hold` stays free of Lightning.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hold.config import resolve_config, resolve_preset, to_yaml
from hold.data.io import atomic_write_bytes, atomic_write_json

STAGES = ("preprocess", "fit", "refine", "final", "export", "evaluate", "render")

# the app each stage needs: (module, what it provides), checked before any work starts
APPS = {"preprocess": ("preprocess.all", "run_all"), "fit": ("recon.train", "train"),
        "refine": ("recon.refine", "refine"), "final": ("recon.final", "train_final"),
        "export": ("recon.export", "export_run"), "render": ("render.cli", "render_run")}


class MissingApp(ValueError):
    """A stage's app is not installed/importable: one clear message, never a fake stage."""


@dataclass
class ReconstructConfig:
    """`hold reconstruct`: one section per stage (YAML presets in configs/, `section.key=value` overrides)."""

    fit: Any = None
    """Stage fit: a recon.config.TrainConfig."""
    refine: Any = None
    """Stage refine: a recon.refine.RefineConfig."""
    final: Any = None
    """Stage final: a recon.config.TrainConfig (its model must match fit's when final_warm_start)."""
    render: Any = None
    """Stage render: a render.cli.RenderConfig."""
    preprocess: Any = None
    """Preprocessing of a video / image folder: a preprocess.all.AllConfig (e.g. preprocess.frames.stride=2)."""
    final_warm_start: bool = True
    """Stage final starts its networks from the fit's weights (True) or from scratch (False)."""
    until: str = "render"
    """Last stage to run (preprocess, fit, refine, final, export, evaluate, render)."""


def _section_defaults() -> dict[str, Any]:
    """Default section configs of the apps that import; a missing app leaves its section None."""
    out: dict[str, Any] = {}
    for name, (module, attr) in (("preprocess", ("preprocess.all", "AllConfig")),
                                 ("fit", ("recon.config", "TrainConfig")), ("final", ("recon.config", "TrainConfig")),
                                 ("refine", ("recon.refine", "RefineConfig")),
                                 ("render", ("render.cli", "RenderConfig"))):
        try:
            out[name] = getattr(__import__(module, fromlist=[attr]), attr)()
        except ImportError:
            out[name] = None
    return out


def resolve_reconstruct_config(presets: list[str | Path] = (), overrides: list[str] = ()) -> ReconstructConfig:
    """Defaults <- presets <- `section.key=value` overrides; unknown keys and bad types are errors."""
    cfg = resolve_config(ReconstructConfig(**_section_defaults()), [resolve_preset(p) for p in presets],
                         list(overrides))
    if cfg.until not in STAGES:
        raise ValueError(f"until={cfg.until!r} is not a stage; expected one of {', '.join(STAGES)}")
    return cfg


def require_apps(stages: list[str]) -> None:
    """Import every app the planned stages need; a missing one stops here with one clear message."""
    for stage in stages:
        if stage not in APPS:
            continue
        module, attr = APPS[stage]
        try:
            getattr(__import__(module, fromlist=[attr]), attr)
        except (ImportError, AttributeError) as e:
            raise MissingApp(f"stage {stage!r} needs {module}.{attr}, which cannot be imported here ({e}). "
                             f"Fix: install the full package (`pip install -e .`), or stop before it with "
                             f"until=<an earlier stage>") from None


# --- fingerprints ----------------------------------------------------------------------------------
def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _hash_files(paths: list[Path], root: Path | None = None) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p.relative_to(root) if root is not None else p.name).encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def folder_fingerprint(folder: Path) -> str:
    """Content hash of every file under `folder` (names + bytes), in a fixed order."""
    return _hash_files(sorted(p for p in Path(folder).rglob("*") if p.is_file()), root=Path(folder))


def build_fingerprint(build: Path) -> str:
    """Content hash of what training reads: sequence.json, hands.npz, object.npz, images/, masks/."""
    build = Path(build)
    files = [build / n for n in ("sequence.json", "hands.npz", "object.npz") if (build / n).exists()]
    for sub in ("images", "masks"):
        if (build / sub).is_dir():
            files += sorted(p for p in (build / sub).iterdir() if p.is_file())
    return _hash_files(files)


def input_fingerprint(path: Path) -> str:
    """A video or image folder: names, sizes and modification times (cheap; re-encoding changes them)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    return _hash(str(path.resolve()), [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files])


# --- progress --------------------------------------------------------------------------------------
# Rough cost of one unit of each stage in seconds on 2 CPU cores (measured with cpu_smoke-sized models);
# the display rescales them by the speed it actually sees, so only their ratios matter.
SAMPLES_PER_S = 46e3  # training samples/s incl. backward (docs/benchmarks.md, cpu_smoke)


class PipelineProgress:
    """One display across stages: stage name, the stage's progress, and an ETA for the whole pipeline.

    Each stage has an estimated cost (seconds); the ETA is the estimated cost left, rescaled by the
    ratio of measured to estimated time of the work done so far in this invocation."""

    def __init__(self, estimates: dict[str, float], enabled: bool = True):
        self.estimates, self.enabled = dict(estimates), enabled
        self.done_est = 0.0  # estimated seconds of the work finished in this invocation
        self.done_real = 0.0
        self.stage: str | None = None
        self.stage_t0 = 0.0
        self.stage_frac = 0.0
        self._progress = self._task = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn,
                                       TimeElapsedColumn)

            self._progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                      TaskProgressColumn(), TimeElapsedColumn(),
                                      TextColumn("pipeline ETA {task.fields[eta]}"),
                                      console=Console(file=sys.stderr), transient=False)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def eta_s(self) -> float:
        """Seconds left for the whole pipeline (estimate)."""
        est_left = sum(self.estimates.values())
        if self.stage is not None:
            est_left -= self.estimates.get(self.stage, 0.0) * self.stage_frac
        elapsed_real = self.done_real + (time.perf_counter() - self.stage_t0 if self.stage else 0.0)
        elapsed_est = self.done_est + (self.estimates.get(self.stage, 0.0) * self.stage_frac if self.stage else 0.0)
        ratio = elapsed_real / elapsed_est if elapsed_est > 1e-6 and elapsed_real > 2.0 else 1.0
        return max(est_left, 0.0) * ratio

    def _fmt_eta(self) -> str:
        s = int(round(self.eta_s()))
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"

    def start(self, stage: str, index: int, total_stages: int, total: float | None = None) -> None:
        self.stage, self.stage_t0, self.stage_frac = stage, time.perf_counter(), 0.0
        if self._progress is not None:
            desc = f"[{index}/{total_stages}] {stage}"
            if self._task is None:
                self._task = self._progress.add_task(desc, total=total, eta=self._fmt_eta())
            else:
                self._progress.reset(self._task, total=total, description=desc, eta=self._fmt_eta())

    def update(self, completed: float, total: float) -> None:
        """The running stage has done `completed` of `total` units (steps, frames)."""
        self.stage_frac = min(max(completed / max(total, 1e-9), 0.0), 1.0)
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, total=total, eta=self._fmt_eta())

    def finish(self, ran: bool) -> None:
        """The running stage ended (ran: it did work; else it was skipped and costs nothing)."""
        stage = self.stage
        if ran:
            self.done_real += time.perf_counter() - self.stage_t0
            self.done_est += self.estimates.get(stage, 0.0)
        self.estimates.pop(stage, None)
        self.stage, self.stage_frac = None, 0.0
        if self._progress is not None:
            task = self._progress.tasks[self._task]
            self._progress.update(self._task, completed=task.total or 1, total=task.total or 1,
                                  eta=self._fmt_eta())


def _lightning_progress(progress: PipelineProgress, total_steps: int):
    """A Lightning callback feeding the pipeline display (Lightning's own bar stays off)."""
    import pytorch_lightning as pl

    class StageProgress(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            progress.update(trainer.global_step, total_steps)

    return StageProgress()


def _train_cost(cfg) -> float:
    """Estimated seconds of a training stage (steps x samples per step / throughput)."""
    samples = cfg.sampler.rays_per_batch * 2 * (cfg.model.object.n_coarse + cfg.model.object.n_importance)
    return cfg.max_steps * samples / SAMPLES_PER_S


# --- the run record --------------------------------------------------------------------------------
class RunRecord:
    """RUN/reconstruct.json: per stage its fingerprint, status (running/done), wall time and outputs."""

    def __init__(self, run: Path):
        self.path = run / "reconstruct.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.data.setdefault("stages", {})

    def stage(self, name: str) -> dict:
        return self.data["stages"].get(name, {})

    def set(self, name: str, **values) -> None:
        self.data["stages"][name] = {**self.data["stages"].get(name, {}), **values}
        self.save()

    def save(self) -> None:
        atomic_write_json(self.path, self.data)
        done = {k: v for k, v in self.data["stages"].items() if v.get("status") == "done"}
        wall = {k: v.get("wall_s") for k, v in done.items()}
        cpu = {k: v.get("cpu_s") for k, v in done.items()}
        atomic_write_json(self.path.with_name("timings.json"),
                          {"stages_s": wall, "total_s": round(sum(v or 0.0 for v in wall.values()), 2),
                           "stages_cpu_s": cpu, "total_cpu_s": round(sum(v or 0.0 for v in cpu.values()), 2)})


@dataclass
class Stage:
    """One pipeline stage: what it depends on, what marks it done, what to clear when stale, how to run."""

    name: str
    fingerprint: str
    done: Callable[[], bool]
    outputs: list[Path]
    run: Callable[[], dict]
    cost_s: float
    units: float | None = None
    """Units of progress the stage reports (training steps), None when it reports none."""


def _remove(paths: list[Path]) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _execute(stage: Stage, record: RunRecord, progress: PipelineProgress, index: int, n: int,
             log: Callable[[str], None]) -> bool:
    """Run one stage unless done; returns True when it did work."""
    rec = record.stage(stage.name)
    progress.start(stage.name, index, n, stage.units)
    if rec.get("fingerprint") == stage.fingerprint and rec.get("status") == "done" and stage.done():
        progress.finish(ran=False)
        log(f"[{index}/{n}] {stage.name}: done already (inputs and config unchanged), skipped")
        return False
    if rec.get("fingerprint") != stage.fingerprint and any(p.exists() for p in stage.outputs):
        # outputs of other inputs/config (or of unknown origin): never resume or reuse them
        log(f"[{index}/{n}] {stage.name}: inputs or config changed, removing its old outputs")
        _remove(stage.outputs)
        rec = {}
    resumed = rec.get("status") == "running"
    log(f"[{index}/{n}] {stage.name}: {'resuming' if resumed else 'running'}")
    record.set(stage.name, fingerprint=stage.fingerprint, status="running")
    t0, c0 = time.perf_counter(), time.process_time()
    partial = float(rec.get("partial_wall_s", 0.0)) if resumed else 0.0
    try:
        outputs = stage.run() or {}
    except KeyboardInterrupt as e:
        record.set(stage.name, partial_wall_s=round(partial + time.perf_counter() - t0, 2))
        raise KeyboardInterrupt(str(e) or f"interrupted in stage {stage.name}") from None
    except BaseException:
        record.set(stage.name, partial_wall_s=round(partial + time.perf_counter() - t0, 2))
        raise
    wall = round(partial + time.perf_counter() - t0, 2)
    # CPU seconds of this process (all threads): with other jobs on the machine, wall time overstates the cost
    record.set(stage.name, status="done", wall_s=wall, cpu_s=round(time.process_time() - c0, 2), partial_wall_s=0.0,
               outputs={k: str(v) for k, v in outputs.items()})
    progress.finish(ran=True)
    log(f"[{index}/{n}] {stage.name}: done in {wall:.1f} s")
    return True


def _training(name: str, fn: Callable[[list], Any]) -> Any:
    """Run a Lightning training; Ctrl+C (or a KeyboardInterrupt raised inside it) comes back as a
    KeyboardInterrupt naming the stage. Lightning turns it into sys.exit(1) and ignores SIGINT from
    then on; both are undone here so the caller (and a test) can handle the interrupt."""
    import pytorch_lightning  # noqa: F401  (imported first: it resets its loggers' levels on import)

    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # our display replaces its banners
    try:
        with warnings.catch_warnings():
            for msg in (".*weights_only.*", ".*LeafSpec.*", ".*litlogger.*"):  # library chatter, not user news
                warnings.filterwarnings("ignore", message=msg)
            return fn()
    except SystemExit as e:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt(f"interrupted in stage {name}") from e
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise


# --- the pipeline ----------------------------------------------------------------------------------
def input_kind(path: Path) -> str:
    """'build' (sequence.json inside), 'video' (a file) or 'images' (a folder of images)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"INPUT {path} does not exist; expected a video file, an image folder or a "
                                f"sequence build (a folder with sequence.json)")
    if path.is_dir() and (path / "sequence.json").exists():
        return "build"
    return "video" if path.is_file() else "images"


def plan_stages(kind: str, until: str, has_gt: bool) -> list[str]:
    """Stages to run, in order, for this input (evaluate only with ground truth)."""
    skip = {"preprocess"} if kind == "build" else set()
    if not has_gt:
        skip.add("evaluate")
    return [s for s in STAGES[: STAGES.index(until) + 1] if s not in skip]


def reconstruct(input_path: Path, run: Path, cfg: ReconstructConfig, progress: bool = True,
                train_callbacks: dict[str, list] | None = None, log: Callable[[str], None] = print) -> dict:
    """Run the pipeline into `run`; returns the summary (outputs, metrics, wall time per stage).

    `train_callbacks`: extra Lightning callbacks per training stage ({'fit': [...], 'final': [...]})."""
    input_path, run = Path(input_path).resolve(), Path(run).resolve()
    kind = input_kind(input_path)
    build = input_path if kind == "build" else run / "build"
    has_gt = (build / "gt").is_dir() if kind == "build" else True  # unknown until preprocessed
    planned = plan_stages(kind, cfg.until, has_gt)
    require_apps(planned)
    for name in ("fit", "final") if "final" in planned else ("fit",):
        if getattr(cfg, name) is None:
            raise MissingApp(f"stage {name!r} has no config (recon.config is not importable)")
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(run / "config.yaml", to_yaml(cfg).encode())
    record = RunRecord(run)
    record.data.update(input=str(input_path), input_kind=kind, build=str(build))
    record.save()
    t_start = time.perf_counter()
    cbs = train_callbacks or {}
    ran: dict[str, bool] = {}

    with PipelineProgress({}, enabled=progress) as display:
        # preprocess first: the build's content fingerprints everything after it
        if "preprocess" in planned:
            display.estimates["preprocess"] = 120.0
            fp = _hash("preprocess", input_fingerprint(input_path), to_yaml(cfg.preprocess))

            def _preprocess() -> dict:
                from preprocess.all import run_all

                run_all(input_path, build, cfg.preprocess, progress=False)  # one display: ours
                return {"build": build}

            ran["preprocess"] = _execute(Stage("preprocess", fp, lambda: (build / "sequence.json").exists(), [],
                                               _preprocess, 120.0), record, display, 1, len(planned), log)
            planned = plan_stages(kind, cfg.until, (build / "gt").is_dir())
        stages = _pipeline_stages(planned, build, run, cfg, cbs, display)
        display.estimates.update({s.name: s.cost_s for s in stages})
        offset = len(planned) - len(stages)
        for i, stage in enumerate(stages):
            ran[stage.name] = _execute(stage, record, display, offset + i + 1, len(planned), log)

    summary = summarize(run, record, planned, ran, time.perf_counter() - t_start)
    record.data["summary"] = summary
    record.save()
    return summary


def _pipeline_stages(planned: list[str], build: Path, run: Path, cfg: ReconstructConfig, cbs: dict,
                     display: PipelineProgress) -> list[Stage]:
    fit_dir, refine_dir, final_dir, render_dir = run / "fit", run / "refine", run / "final", run / "render"
    with open(build / "sequence.json") as f:
        num_frames = int(json.load(f).get("num_frames", 30))
    fps: dict[str, str] = {}
    fps["fit"] = _hash("fit", build_fingerprint(build), to_yaml(cfg.fit))
    stages: list[Stage] = []

    def train_stage(name: str, fn) -> Callable[[], dict]:
        def go() -> dict:
            steps = getattr(cfg, name).max_steps
            callbacks = [_lightning_progress(display, steps), *cbs.get(name, [])]
            _training(name, lambda: fn(callbacks))
            return {"model": run / name / "checkpoints" / "model.pt"}
        return go

    if "fit" in planned:
        from recon.train import train

        stages.append(Stage("fit", fps["fit"], lambda: (fit_dir / "checkpoints" / "model.pt").exists(), [fit_dir],
                            train_stage("fit", lambda cb: train(build, fit_dir, cfg.fit, progress=False, callbacks=cb)),
                            _train_cost(cfg.fit), cfg.fit.max_steps))
    if "refine" in planned:
        fps["refine"] = _hash("refine", fps["fit"], to_yaml(cfg.refine))

        def _refine() -> dict:
            from recon.refine import refine

            refine(fit_dir, refine_dir, cfg.refine, False)
            return {"poses": refine_dir, "report": refine_dir / "refine.json"}

        stages.append(Stage("refine", fps["refine"], lambda: (refine_dir / "refine.json").exists(), [refine_dir],
                            _refine, _refine_cost(cfg.refine, num_frames)))
    if "final" in planned:
        fps["final"] = _hash("final", fps["refine"], to_yaml(cfg.final), cfg.final_warm_start)
        from recon.final import train_final

        stages.append(Stage("final", fps["final"], lambda: (final_dir / "checkpoints" / "model.pt").exists(),
                            [final_dir], train_stage("final", lambda cb: train_final(
                                fit_dir, refine_dir, final_dir, cfg.final, cfg.final_warm_start, progress=False,
                                callbacks=cb)), _train_cost(cfg.final), cfg.final.max_steps))
    last = final_dir if "final" in planned else fit_dir  # export/render the last trained run
    last_fp = fps["final"] if "final" in planned else fps["fit"]
    if "export" in planned:
        fps["export"] = _hash("export", last_fp)

        def _export() -> dict:
            from recon.export import export_run

            export_run(last, progress=False)
            out = {"meshes": last / "meshes", "posed_meshes": last / "meshes" / "posed", "prediction": last / "pred"}
            if (last / "metrics.json").exists():
                out["run_metrics"] = last / "metrics.json"
            return out

        stages.append(Stage("export", fps["export"], lambda: (last / "pred").is_dir(),
                            [last / "meshes", last / "pred", last / "metrics.json"], _export,
                            10.0 + 0.3 * num_frames))
    if "evaluate" in planned:
        fps["evaluate"] = _hash("evaluate", fps["export"], folder_fingerprint(build / "gt"))

        def _evaluate() -> dict:
            from hold.evaluate import evaluate_paths

            evaluate_paths(last / "pred", build / "gt", run / "metrics.json")
            return {"metrics": run / "metrics.json"}

        stages.append(Stage("evaluate", fps["evaluate"], lambda: (run / "metrics.json").exists(),
                            [run / "metrics.json"], _evaluate, 3.0))
    if "render" in planned:
        fps["render"] = _hash("render", fps.get("export", last_fp), to_yaml(cfg.render))

        def _render() -> dict:
            from render.cli import render_run

            return dict(render_run(last, render_dir, cfg.render, False))

        stages.append(Stage("render", fps["render"], lambda: (render_dir / "render.json").exists(),
                            [render_dir], _render, 1.5 * num_frames))
    return stages


def _refine_cost(cfg, num_frames: int) -> float:
    """Rough seconds of stage refine (cfg: a RefineConfig): Adam steps per batch of frames x batches."""
    batches = -(-num_frames // cfg.batch_frames) if cfg.batch_frames > 0 else 1
    return 0.3 * cfg.steps * batches + 5.0


def summarize(run: Path, record: RunRecord, planned: list[str], ran: dict[str, bool], wall_s: float) -> dict:
    """Outputs of every stage, the metrics (when evaluated) and wall time per stage."""
    stages = {name: record.stage(name) for name in planned}
    metrics = {}
    if (run / "metrics.json").exists():
        metrics = json.loads((run / "metrics.json").read_text()).get("metrics", {})
    return {"run": str(run), "wall_s": round(wall_s, 2),
            "stages": {n: {"ran": ran.get(n, False), "wall_s": s.get("wall_s"), "outputs": s.get("outputs", {})}
                       for n, s in stages.items()},
            "metrics": metrics}


def print_summary(summary: dict) -> None:
    print(f"\nhold reconstruct: done in {summary['wall_s']:.1f} s -> {summary['run']}")
    for name, s in summary["stages"].items():
        how = "ran" if s["ran"] else "skipped (done before)"
        wall = f"{s['wall_s']:.1f} s" if s["wall_s"] is not None else "-"
        print(f"  {name:<10} {wall:>9}  {how}")
        for key, path in s["outputs"].items():
            print(f"      {key:<14} {path}")
    if summary["metrics"]:
        from hold.evaluate import summary_line

        print(f"  metrics: {summary_line(summary['metrics'])}")
    print(f"  record: {Path(summary['run']) / 'reconstruct.json'}, timings: {Path(summary['run']) / 'timings.json'}")


def print_interrupted(command: str, e: KeyboardInterrupt) -> None:
    print(f"\n{command}: {e or 'interrupted'}; finished stages are kept. Re-run the same command to resume.",
          file=sys.stderr)


def reconstruct_command(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="hold reconstruct", description="Video / image folder / sequence build -> "
                                "preprocess -> fit -> refine -> final -> export -> evaluate (with gt/) -> render. "
                                "Resumable: re-run the same command after an interruption. key=value arguments "
                                "override ReconstructConfig, e.g. fit.max_steps=300 refine.steps=100 "
                                "preprocess.stride=2 until=export.")
    p.add_argument("input", type=Path, help="a video file, a folder of images, or a sequence build")
    p.add_argument("--out", type=Path, required=True, help="reconstruction directory RUN (resumed if it exists)")
    p.add_argument("--config", action="append", default=[],
                   help="YAML file or preset in configs/ (e.g. reconstruct_cpu; repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(argv)
    cfg = resolve_reconstruct_config(args.config, args.overrides)
    try:
        summary = reconstruct(args.input, args.out, cfg, progress=not args.quiet)
    except KeyboardInterrupt as e:
        print_interrupted("hold reconstruct", e)
        return 130
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(reconstruct_command())
