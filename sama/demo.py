"""``sama demo``: the whole job on built-in sample data, on CPU, in a few minutes.

generate sample videos and edit pairs -> tiny random-weight models -> build clip shards ->
build edit-pair shards into the same dataset -> mark near-duplicate clips -> validate ->
report -> train stage 0 (image pairs + clips) -> train stage 1 (image + video pairs, from the
stage-0 checkpoint). Every step goes through the same entry point as its ``sama``
subcommand; each prints where its output went.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

from sama.cli import COMMANDS, NotAvailable, resolve

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _step(title: str, command: str, argv: list[str]) -> bool:
    print(f"\n=== {title}: sama {command} {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    try:
        func = resolve(COMMANDS[command][0])
    except NotAvailable as e:
        print(f"--- skipped: {e}")
        return False
    rc = int(func(argv) or 0)
    if rc != 0:
        raise SystemExit(f"demo step {title!r} failed with exit code {rc}")
    print(f"--- {title} done in {time.perf_counter() - t0:.1f}s")
    return True


def demo_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="sama demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/demo", help="output directory (default: out/demo)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    media, models, data = out / "media", out / "models", out / "dataset"
    t0 = time.perf_counter()
    _step("sample media", "media", ["make-samples", str(media)])
    _step("sample edit pairs", "media", ["make-pairs", str(media / "pairs")])
    _step("tiny models", "models", ["make-tiny", str(models)])
    common = [f"models_dir={models}"]
    built = _step("build", "build", [str(CONFIG_DIR / "build_demo.yaml"),
                                     f"input.uri={media / 'manifest.jsonl'}",
                                     f"output.uri={data}", *common])
    built = built and _step("build pairs", "build", [str(CONFIG_DIR / "build_demo_pairs.yaml"),
                                                     f"input.uri={media / 'pairs' / 'pairs.jsonl'}",
                                                     f"output.uri={data}", *common])
    if built:
        _step("dedup", "dedup", [str(data)])
        _step("validate", "validate", [str(data)])
        _step("report", "report", [str(data), "-o", str(out / "report.html"),
                                   "--vae", str(models / "wan")])
        _step("train stage 0", "train", [str(CONFIG_DIR / "demo_stage0.yaml"),
                                         f"data.root={data}", f"output_dir={out / 'stage0'}",
                                         *common])
        _step("train stage 1", "train", [str(CONFIG_DIR / "demo_stage1.yaml"),
                                         f"data.root={data}", f"output_dir={out / 'stage1'}",
                                         f"init_from={out / 'stage0'}", *common])
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f}s. Outputs:")
    for name, path in [("sample media", media), ("tiny models", models), ("dataset", data),
                       ("report", out / "report.html"), ("stage 0 run", out / "stage0"),
                       ("stage 1 run", out / "stage1")]:
        mark = "" if path.exists() else "  (not produced)"
        print(f"  {name:13s} {path}{mark}")
    return 0
