"""``python -m bench``: run every ``bench/bench_*.py`` in turn (each prints its own ratios), then
``bench/gpu_check.py`` (absolute figures on a CUDA GPU; one skip line without one)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    only = sys.argv[1:]
    here = Path(__file__).parent
    for path in [*sorted(here.glob("bench_*.py")), here / "gpu_check.py"]:
        if only and path.stem not in only and path.stem.removeprefix("bench_") not in only:
            continue
        print(f"\n##### {path.stem}", flush=True)
        runpy.run_path(str(path), run_name="__main__")
