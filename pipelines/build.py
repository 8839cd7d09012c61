"""``sama build CONFIG [a.b=value ...] [--ray-address ADDR]``: the build of either recipe.

``input.kind=clips`` (default) runs the clip recipe (``pipelines/clips/recipe.py``: raw videos ->
``clips/v1``), ``input.kind=pairs`` the pair recipe (``pipelines/pairs/recipe.py``: an edit-pair
manifest -> ``pairs/v1``); both run on the one engine driver (``pipelines/engine/driver.py``)
and may share a dataset root.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipelines.config import BuildConfig, load_build_config
from pipelines.engine.driver import BuildFailed, redacted_config, run_build


def build(cfg: BuildConfig) -> dict:
    """Run the build described by ``cfg``; returns the summary (also in ``summary.json``)."""
    if cfg.input.kind == "pairs":
        from pipelines.pairs.recipe import PAIRS

        return run_build(cfg, PAIRS)
    from pipelines.clips.recipe import CLIPS

    return run_build(cfg, CLIPS)


def build_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="sama build",
        description="Build clip shards from raw videos, or edit-pair shards from a pair "
        "manifest (input.kind=pairs), on Ray Data. Overrides: a.b=value.",
    )
    p.add_argument("config", help="build config YAML (e.g. configs/build_clips.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. input.uri=videos/")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (or 'auto')")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (every default included, secrets redacted) "
                   "as YAML and exit")  # fmt: skip
    args = p.parse_intermixed_args(list(sys.argv[1:] if argv is None else argv))
    cfg = load_build_config(args.config, list(args.overrides))
    if args.ray_address:  # not through YAML parsing: "host:port" must stay a string
        cfg.engine.ray_address = args.ray_address
    if args.print_config:
        import yaml

        print(yaml.safe_dump(redacted_config(cfg), sort_keys=False), end="")
        return 0
    try:
        build(cfg)
    except BuildFailed as e:
        print(f"sama build: FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(build_main())
