"""Benchmark `mesalab diagnose` (behavioral objective by exact IRL, bits, goal-directedness) on a trained
red-door run: the wall-clock time of the whole command, as a user sees it.

Usage (writes JSON, prints a summary):

    python benchmarks/diagnose.py --out benchmarks/results/diagnose.json [--run RUN_DIR]

Without ``--run`` it first trains a one-seed red-door run with the default PPO settings (about 1.5 minutes),
then times ``mesalab diagnose RUN --levels 200`` for that seed, and for all seeds of RUN if given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(*args) -> float:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mesalab", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"mesalab {' '.join(args)} failed: {out.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/diagnose.json")
    ap.add_argument("--run", default=None, help="an existing red-door run folder (default: train one seed)")
    ap.add_argument("--levels", type=int, default=200)
    args = ap.parse_args()
    result = {"cores": len(os.sched_getaffinity(0)), "levels": args.levels}
    if args.run is None:
        run = Path(tempfile.mkdtemp()) / "red-door"
        result["train_s"] = timed("run", "red-door", "--seeds", "1", "--episodes", str(max(args.levels, 200)),
                                  "--out", str(run))
    else:
        run = Path(args.run)
    seeds = json.loads((run / "config.json").read_text())["seeds"]
    result["one_seed_s"] = timed("diagnose", str(run), "--levels", str(args.levels), "--seed", str(seeds[0]))
    if len(seeds) > 1:
        result["all_seeds"] = len(seeds)
        result["all_seeds_s"] = timed("diagnose", str(run), "--levels", str(args.levels))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"mesalab diagnose, {args.levels} levels per split (train and test), {result['cores']} cores: "
          f"one seed {result['one_seed_s']:.1f} s"
          + (f", all {result['all_seeds']} seeds {result['all_seeds_s']:.1f} s" if "all_seeds_s" in result else ""))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
