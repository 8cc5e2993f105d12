"""Benchmark `mesalab probe` (activation datasets, probes, steering, retargeting) on a default run: the wall-clock
time of the whole command as a user sees it, process start included.

Usage (writes JSON, prints a summary):

    python benchmarks/probe.py --out benchmarks/results/probe.json [--run RUN_DIR]
    python benchmarks/probe.py --icl --out benchmarks/results/probe-icl.json

Without ``--run`` it first trains a short default run (``mesalab run red-door --seeds 4 --steps 16384``: the
default model and evaluation; the probe's cost does not depend on how long the seeds trained, its episodes are
fixed-length scans; with ``--icl``: the default ``mesalab run icl-gd``, 4 seeds, whose token probes are timed). Then it times ``mesalab probe`` twice on copies of that folder: after the run, with the
run's compile cache (what a user who just ran ``mesalab run`` on this machine sees), and with an empty compile
cache (the worst case).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(args: list[str], cache: Path | None) -> float:
    t0 = time.perf_counter()
    env = {**os.environ, **({"MESALAB_COMPILE_CACHE": str(cache)} if cache is not None else {})}
    out = subprocess.run([sys.executable, "-m", "mesalab", *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"mesalab {' '.join(args)} failed: {out.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/probe.json")
    ap.add_argument("--run", default=None, help="a finished run folder (default: train a short default run)")
    ap.add_argument("--icl", action="store_true", help="time the token probes of a default icl-gd run instead")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    run_cache, cold_cache = work / "cache-run", work / "cache-cold"
    result = {"cores": len(os.sched_getaffinity(0)), "command": "mesalab probe RUN (defaults: 500 levels x 8 states)"}
    if args.icl:
        result["command"] = "mesalab probe RUN (icl-gd folder; defaults: 2000 sequences, every layer)"
    if args.run is None and args.icl:
        run = work / "icl-gd"
        result["train_s"] = timed(["run", "icl-gd", "--out", str(run)], run_cache)
        result["run"] = "mesalab run icl-gd (defaults: 4 seeds, 1 layer)"
    elif args.run is None:
        run = work / "red-door"
        result["train_s"] = timed(["run", "red-door", "--seeds", "4", "--steps", "16384", "--out", str(run)], run_cache)
        result["run"] = "mesalab run red-door --seeds 4 --steps 16384 (default model and evaluation)"
    else:
        run = Path(args.run)
        result["run"] = str(run)
        run_cache = None  # the user's own compile cache, which holds what that run compiled
    for name, cache in (("after_run_s", run_cache), ("cold_cache_s", cold_cache)):
        copy = work / f"probe-{name}"
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns("probes", "probes.json", "probes.duckdb"))
        result[name] = timed(["probe", str(copy)], cache)
        print(f"{name}: {result[name]:.1f} s", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
