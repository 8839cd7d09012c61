"""The ``sama`` command line.

The CLI is the one place that knows every package: each subcommand is a ``module:function``
string imported only when that subcommand runs, so ``sama --help`` stays fast and the library
layering (``sama`` never imports ``pipelines`` or ``trainer``) holds for everything else.
A subcommand whose implementation is not there says so plainly and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (entry point "module:function" taking argv, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("pipelines.build:build_main", "build clip or pair shards from raw media (Ray Data)"),
    "validate": ("pipelines.cli_tools:validate_main", "check a built dataset against its specs"),
    "dedup": ("pipelines.cli_tools:dedup_main", "mark near-duplicate clips (a dedup/v1 table)"),
    "report": ("pipelines.cli_tools:report_main", "write a self-contained HTML report of a dataset"),
    "publish": ("pipelines.cli_tools:publish_main", "upload a dataset to the Hugging Face Hub"),
    "train": ("trainer.train:train_main", "train SAMA stage 0 / stage 1 from shards"),
    "export": ("trainer.export:export_main", "export trained weights (DiffSynth / diffusers)"),
    "models": ("sama.cli:models_main", "model utilities (make-tiny: tiny random-weight models)"),
    "media": ("sama.cli:media_main", "sample media (make-samples: generated test videos)"),
    "demo": ("sama.demo:demo_main", "run the whole job on built-in sample data"),
}


class NotAvailable(Exception):
    pass


def resolve(entry: str):
    module_name, func_name = entry.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise NotAvailable(f"`{module_name}` is not implemented yet in this version") from None
        raise
    func = getattr(module, func_name, None)
    if func is None:
        raise NotAvailable(f"`{entry}` is not implemented yet in this version")
    return func


def models_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="sama models", description="Model utilities.")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("make-tiny", help="write tiny random-weight Wan VAE, umT5 (+tokenizer), "
                       "Wan DiT and SigLIP (+processor) with save_pretrained, for tests and demos")
    t.add_argument("dir", help="output directory")
    t.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from sama.encoders.tiny import make_tiny_models

    paths = make_tiny_models(args.dir, seed=args.seed)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def media_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="sama media", description="Sample media.")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("make-samples", help="generate small multi-shot videos with known cuts, "
                       "images, a manifest and deliberately broken files")
    s.add_argument("dir", help="output directory")
    e = sub.add_parser("make-pairs", help="generate a small edit-pair set (videos and images, "
                       "good and deliberately broken pairs), its manifest and truth.json")
    e.add_argument("dir", help="output directory")
    args = p.parse_args(argv)
    if args.cmd == "make-pairs":
        from sama.pairs.demo import make_pair_set

        pairs = make_pair_set(args.dir)
        print(f"wrote {len(pairs['pairs'])} edit pairs to {args.dir} (manifest {pairs['manifest']})")
        return 0
    from sama.media import make_sample_set

    info = make_sample_set(args.dir)
    print(f"wrote sample media to {args.dir} ({len(info.get('videos', []))} videos)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sama",
        description="SAMA data engine and trainer: raw video -> training-ready shards -> model.",
        epilog="Run `sama COMMAND --help` for the options of a command.",
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if argv[0] == "--version":
        from sama import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        parser.print_usage(sys.stderr)
        print(f"sama: unknown command {name!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        func = resolve(COMMANDS[name][0])
    except NotAvailable as e:
        print(f"sama {name}: {e}", file=sys.stderr)
        return 2
    from sama.errors import ConfigError

    try:
        return int(func(rest) or 0)
    except ConfigError as e:
        print(f"sama {name}: configuration error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
