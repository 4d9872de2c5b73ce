"""Tests of the preprocessing steps. `synth_build` makes one small synthetic build per test session, shared by
the step tests (its frames become videos and image folders, its exact label masks the masks to import)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_REAL = REPO.parent / "shared" / "data" / "real"
HAND_VIDEO = SHARED_REAL / "dex-retargeting-hand-video" / "human_hand_video.mp4"

_BUILDS: dict[str, Path] = {}


def synth_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-frame 96x64 synthetic build (images/, masks/ with hand and object), generated once per session."""
    if "build" not in _BUILDS:
        from hold.synth.sequence import SynthConfig, generate

        out = tmp_path_factory.mktemp("synth") / "build"
        generate(SynthConfig(num_frames=10, width=96, height=64, seed=3), out, progress=False)
        _BUILDS["build"] = out
    return _BUILDS["build"]
