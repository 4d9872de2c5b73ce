"""`hold preprocess STEP SEQ_DIR ...`: run one preprocessing step (each step parses its own options)."""
from __future__ import annotations

import importlib
import importlib.util
import sys

# Step name -> module in this package, in pipeline order. A step is offered only once its module exists.
STEPS = ("frames", "hand_detect", "hands", "masks", "sfm", "align", "build", "all")


def available_steps() -> list[str]:
    return [s for s in STEPS if importlib.util.find_spec(f"preprocess.{s}") is not None]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    steps = available_steps()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: hold preprocess STEP ARGS...\n\nsteps available: " + ", ".join(steps) +
              "\nrun `hold preprocess STEP --help` for a step's options")
        return 0 if argv else 2
    step, rest = argv[0], argv[1:]
    if step not in steps:
        raise ValueError(f"unknown preprocessing step {step!r}; available: {', '.join(steps)}")
    return int(importlib.import_module(f"preprocess.{step}").main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
