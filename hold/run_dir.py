"""Trained runs on disk: find one (a run or a reconstruction directory) and load its model.

A *trained run* is a folder with `checkpoints/model.pt`, `run.json` and `config.yaml` (what
`hold train` writes). A *reconstruction directory* (`hold reconstruct INPUT --out RUN`) holds its
stages as trained runs: RUN/final when the final stage finished, else RUN/fit. Commands that read a
trained run (`hold export / render / evaluate`) accept either.

No app is imported here (apps never import each other): the model is rebuilt from `hold` alone,
from the `model` section of config.yaml and the build recorded in run.json, honouring run.json's
`poses_from` (a pose folder, e.g. RUN/refine, replacing the build's initial poses).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from hold.data import load_sequence
from hold.model import HoldModel, ModelConfig

MODEL_PT = Path("checkpoints") / "model.pt"
RUN_JSON = "run.json"
CONFIG_YAML = "config.yaml"
STAGES = ("final", "fit")
"""Stages of a reconstruction directory holding a trained run, preferred first."""


def is_trained_run(path: Path | str) -> bool:
    """True when `path` holds checkpoints/model.pt, run.json and config.yaml."""
    path = Path(path)
    return all((path / p).is_file() for p in (MODEL_PT, RUN_JSON, CONFIG_YAML))


def find_trained_run(path: Path | str) -> Path:
    """The trained run at `path`: `path` itself, or for a reconstruction directory path/final, else path/fit.

    Raises FileNotFoundError saying what is missing and which command makes it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"'{path}' does not exist; pass a trained run (made by `hold train`) or a "
                                f"reconstruction directory (made by `hold reconstruct INPUT --out {path}`).")
    if is_trained_run(path):
        return path
    for stage in STAGES:
        if is_trained_run(path / stage):
            return path / stage
    found = [p for p in (MODEL_PT, Path(RUN_JSON), Path(CONFIG_YAML)) if (path / p).is_file()]
    if found:
        missing = [str(p) for p in (MODEL_PT, Path(RUN_JSON), Path(CONFIG_YAML)) if not (path / p).is_file()]
        raise FileNotFoundError(f"'{path}' is an unfinished training run: {', '.join(missing)} missing. "
                                f"Fix: re-run the same `hold train` / `hold reconstruct` command (it resumes).")
    raise FileNotFoundError(f"'{path}' is neither a trained run (checkpoints/model.pt + run.json + config.yaml) "
                            f"nor a reconstruction directory with a finished stage in {path}/final or {path}/fit. "
                            f"Fix: run `hold reconstruct INPUT --out {path}` (or `hold train BUILD --out {path}`).")


@dataclass
class TrainedRun:
    """A trained run loaded back: the model with its weights, and where it came from."""

    model: HoldModel
    """The scene model with the trained weights (eval mode), on the requested device."""
    build: Path
    """The sequence build the run was trained on (run.json 'build')."""
    config: dict
    """The run's fully resolved config.yaml as a plain dict."""
    path: Path
    """The trained run folder (after resolving a reconstruction directory)."""
    poses_from: Path | None = None
    """Pose folder that replaced the build's initial poses (run.json 'poses_from'), None when none."""


def read_run_json(run: Path) -> dict:
    """run.json of a trained run, with a clear error when it is unreadable or has no build."""
    path = Path(run) / RUN_JSON
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot be read as JSON ({e}); `hold train` writes it — re-run it.") from None
    if not isinstance(info, dict) or not isinstance(info.get("build"), str):
        raise ValueError(f"{path}: field 'build' must be the path of the sequence build (a string), found "
                         f"{info.get('build') if isinstance(info, dict) else info!r}; re-run `hold train`.")
    return info


def model_config(config: dict) -> ModelConfig:
    """The ModelConfig of a resolved run config (its `model` section; top-level `mano_dir` wins when set)."""
    section = dict(config.get("model") or {})
    if config.get("mano_dir") is not None:
        section["mano_dir"] = config["mano_dir"]  # recon copies TrainConfig.mano_dir into the model at build time
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig()), OmegaConf.create(section)))
    except Exception as e:  # omegaconf names the bad key
        raise ValueError(f"config.yaml: the 'model' section does not match this hold's ModelConfig ({e}); "
                         f"the run was made by another version — re-train it.") from None


def load_trained_model(run: Path | str, device: str = "cpu") -> TrainedRun:
    """Rebuild the model of a trained run (or of a reconstruction directory's final/fit stage) with its weights."""
    path = find_trained_run(run)
    info = read_run_json(path)
    build = Path(info["build"])
    if not (build / "sequence.json").is_file():
        raise FileNotFoundError(f"{path / RUN_JSON}: field 'build' points to '{build}', which is not a sequence "
                                f"build (no sequence.json). Fix: restore the build there or edit run.json.")
    try:
        config = OmegaConf.to_container(OmegaConf.load(str(path / CONFIG_YAML)))
    except Exception as e:
        raise ValueError(f"{path / CONFIG_YAML}: cannot be read as YAML ({e}); re-run `hold train`.") from None
    seq = load_sequence(build)
    poses_from = info.get("poses_from")
    if poses_from is not None:
        from hold.data.poses import with_poses_from

        seq = with_poses_from(seq, Path(poses_from))
    model = HoldModel(seq, model_config(config))
    ckpt = torch.load(path / MODEL_PT, map_location="cpu", weights_only=False)
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if state is None:
        raise ValueError(f"{path / MODEL_PT}: expected a dict with 'state_dict' (as `hold train` saves), found "
                         f"{type(ckpt).__name__} with keys {list(ckpt)[:5] if isinstance(ckpt, dict) else '-'}.")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path / MODEL_PT}: the weights do not fit the model rebuilt from {path / CONFIG_YAML} "
                         f"and {build} ({str(e).splitlines()[0]} ...); the build or config changed since training "
                         f"— re-train.") from None
    return TrainedRun(model=model.to(device).eval(), build=build, config=config, path=path,
                      poses_from=None if poses_from is None else Path(poses_from))
