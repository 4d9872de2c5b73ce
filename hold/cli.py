"""The `hold` command. Each subcommand imports its implementation lazily, so `hold --help` and
`import hold` stay light (no Lightning, no pycolmap)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import hold  # noqa: F401  (zlib import-order guard, see hold/__init__.py)


def _cmd_synth(args: argparse.Namespace) -> int:
    from hold.config import resolve_config, to_yaml
    from hold.synth.sequence import SynthConfig, generate

    cfg = SynthConfig(num_frames=args.frames, width=args.size[0], height=args.size[1], seed=args.seed,
                      object=args.object, hand_model=args.hand_model, mano_dir=args.mano_dir)
    cfg = resolve_config(cfg, overrides=args.overrides)
    out = generate(cfg, args.out, progress=not args.quiet)
    (out / "synth_config.yaml").write_text(to_yaml(cfg))
    print(f"hold synth: wrote {cfg.num_frames} frames ({cfg.width}x{cfg.height}, object {cfg.object!r}) to {out}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from hold.data.validate import validate_command

    argv = [str(args.build)] + (["--require-masks"] if args.require_masks else [])
    return validate_command(argv)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from hold.evaluate import evaluate_command

    return evaluate_command(args.argv)


def _cmd_train(args: argparse.Namespace) -> int:
    from recon.train import train_command

    return train_command(args.argv)


def _cmd_export(args: argparse.Namespace) -> int:
    from recon.export import export_command

    return export_command(args.argv)


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    from hold.reconstruct import reconstruct_command

    return reconstruct_command(args.argv)


def _app_entry(module: str, name: str, command: str):
    """An app's entry point, or one clear error when the app is not importable."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"`hold {command}` needs {module}.{name}, which cannot be imported here ({e}); "
                         f"fix: install the full package (`pip install -e .`)") from None


def _cmd_refine(args: argparse.Namespace) -> int:
    return _app_entry("recon.refine", "refine_command", "refine")(args.argv)


def _cmd_render(args: argparse.Namespace) -> int:
    return _app_entry("render.cli", "main", "render")(args.argv)


def _cmd_preprocess(args: argparse.Namespace) -> int:
    from preprocess.cli import main as preprocess_main

    return preprocess_main(args.argv)


def _cmd_demo(args: argparse.Namespace) -> int:
    from hold.demo import run_demo

    return run_demo(Path(args.out), frames=args.frames, size=args.size, seed=args.seed, quick=args.quick,
                    overrides=args.overrides, progress=not args.quiet)


PASS_THROUGH = ("train", "export", "preprocess", "reconstruct", "refine", "render", "evaluate")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hold", description="Hand + unknown object 3D reconstruction from one RGB video.")
    p.add_argument("--version", action="version", version=f"hold {hold.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("demo", help="synthesize a short sequence and run `hold reconstruct` on it (CPU, no downloads)",
                       description="Synthesize a hand grasping a textured box (noisy hand/object estimates, exact "
                                   "ground truth) and reconstruct it with configs/demo.yaml: meshes, an mp4 and "
                                   "metrics.json in OUT (about 10 minutes on 2 CPU cores). key=value arguments "
                                   "override the reconstruct config, e.g. fit.max_steps=200.")
    s.add_argument("--out", default="hold_demo", help="output folder (default: ./hold_demo)")
    s.add_argument("--frames", type=int, default=None, help="default 16 (--quick: 4)")
    s.add_argument("--size", type=int, nargs=2, default=None, metavar=("W", "H"), help="default 96 96 (--quick: 40 32)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quick", action="store_true", help="seconds-long version: 4 tiny frames, a few steps per stage")
    s.add_argument("--quiet", action="store_true", help="no progress display")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.set_defaults(func=_cmd_demo)

    s = sub.add_parser("synth", help="generate a synthetic hand+object sequence build with ground truth",
                       description="Generate a synthetic sequence build (images, masks, noisy hand/object "
                                   "estimates) with exact ground truth under gt/. Extra key=value arguments "
                                   "override any SynthConfig field, e.g. noise.hand_rot_deg=3 yaw_range_deg=300.")
    s.add_argument("--out", required=True, help="output build folder")
    s.add_argument("--object", default="box", help="box | cylinder | sphere | ellipsoid | a textured mesh file")
    s.add_argument("--frames", type=int, default=30, help="number of frames")
    s.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("W", "H"), help="image size")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--hand-model", default="anny", choices=("anny", "mano"))
    s.add_argument("--mano-dir", default=None, help="folder with your MANO_RIGHT.pkl (for --hand-model mano)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.set_defaults(func=_cmd_synth)

    # train/export parse their own arguments (recon/), so `hold` itself never imports Lightning
    s = sub.add_parser("train", help="fit the hand and object fields to a sequence build (stage fit)", add_help=False)
    s.add_argument("argv", nargs=argparse.REMAINDER)
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser("export", help="meshes, posed meshes, prediction and metrics of a trained run", add_help=False)
    s.add_argument("argv", nargs=argparse.REMAINDER)
    s.set_defaults(func=_cmd_export)

    s = sub.add_parser("reconstruct", help="video / image folder / build -> fit -> refine -> final -> meshes, "
                       "renders, metrics (resumable)", add_help=False)
    s.add_argument("argv", nargs=argparse.REMAINDER)
    s.set_defaults(func=_cmd_reconstruct)

    s = sub.add_parser("refine", help="contact-aware pose refinement of a fitted run (stage refine)", add_help=False)
    s.add_argument("argv", nargs=argparse.REMAINDER)
    s.set_defaults(func=_cmd_refine)

    s = sub.add_parser("render", help="re-renders, overlays, turntables, mp4 and an animated GLB of a run",
                       add_help=False)
    s.add_argument("argv", nargs=argparse.REMAINDER)
    s.set_defaults(func=_cmd_render)

    s = sub.add_parser("preprocess", help="video -> sequence build, one step at a time (frames, masks, ...)",
                       add_help=False)
    s.add_argument("argv", nargs=argparse.REMAINDER)
    s.set_defaults(func=_cmd_preprocess)

    s = sub.add_parser("validate", help="check a sequence build against the contract and print a report")
    s.add_argument("build", type=Path)
    s.add_argument("--require-masks", action="store_true")
    s.set_defaults(func=_cmd_validate)

    # evaluate parses its own arguments (hold/evaluate.py: PRED [GT] --gt-format --mano-dir --ycb-models --out)
    s = sub.add_parser("evaluate", help="metrics (vs ground truth when there is one) + contact stats; writes "
                                        "metrics.json", add_help=False)
    s.add_argument("argv", nargs=argparse.REMAINDER)
    s.set_defaults(func=_cmd_evaluate)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # train/export/preprocess pass their arguments through to the app's own parser; argparse's
    # REMAINDER drops a leading option (e.g. `hold train --help`), so collect those explicitly.
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if getattr(args, "command", None) not in PASS_THROUGH:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.argv = unknown + args.argv
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:  # bad input: one clear message, no traceback
        print(f"hold {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
