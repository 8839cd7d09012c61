"""``python -m bench``: run every ``bench/bench_*.py`` in turn (each prints its own ratios)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    only = sys.argv[1:]
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        if only and path.stem not in only and path.stem.removeprefix("bench_") not in only:
            continue
        print(f"\n##### {path.stem}", flush=True)
        runpy.run_path(str(path), run_name="__main__")
