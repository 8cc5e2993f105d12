"""Benchmark a sweep preset as a user runs it: wall-clock time of ``mesalab sweep PRESET``, optionally
interrupted (Ctrl-C, i.e. SIGINT) after some seconds and resumed by re-running the same command; then checks
the database (every cell once, complete metrics) and records the verdicts.

Usage (writes JSON, prints a summary):

    python benchmarks/sweep.py pseudo-alignment-alpha --seeds 5 --interrupt-after 420 \\
        --out benchmarks/results/sweep-alpha.json
    python benchmarks/sweep.py diversity --seeds 5 --out benchmarks/results/sweep-diversity.json

Extra arguments after ``--`` go to ``mesalab sweep`` (e.g. ``-- --steps 100000``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--interrupt-after", type=float, default=None, help="send SIGINT after this many seconds, then resume")
    ap.add_argument("--sweep-dir", default=None, help="sweep folder (default: a fresh temporary one)")
    ap.add_argument("--out", default=None, help="JSON file (default benchmarks/results/sweep-PRESET.json)")
    ap.add_argument("--existing-wall-s", type=float, nargs="+", default=None,
                    help="do not run: summarise --sweep-dir, recording these measured wall times of its parts")
    args, extra = ap.parse_known_args()
    extra = [a for a in extra if a != "--"]
    sweep_dir = Path(args.sweep_dir or Path(tempfile.mkdtemp()) / args.preset)
    cmd = [sys.executable, "-m", "mesalab", "sweep", args.preset, "--seeds", str(args.seeds), "--out", str(sweep_dir),
           *extra]
    result = {"preset": args.preset, "seeds": args.seeds, "cores": len(os.sched_getaffinity(0)), "command": cmd[2:],
              "sweep_dir": str(sweep_dir), "parts": []}
    if args.existing_wall_s is not None:
        result["parts"] = [{"wall_s": w, "measured": "by hand"} for w in args.existing_wall_s]
        return finish(args, result, sweep_dir)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if args.interrupt_after is not None:
        try:
            proc.wait(timeout=args.interrupt_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
    out, err = proc.communicate()
    result["parts"].append({"wall_s": time.perf_counter() - t0, "returncode": proc.returncode,
                            "stderr_tail": err[-500:]})
    if proc.returncode == 130:  # interrupted: resume with the same command
        import duckdb

        con = duckdb.connect(str(sweep_dir / "sweep.duckdb"), read_only=True)
        result["cells_after_interrupt"] = con.execute("SELECT count(*) FROM cells").fetchone()[0]
        con.close()
        t1 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True)
        result["parts"].append({"wall_s": time.perf_counter() - t1, "returncode": res.returncode,
                                "stderr_tail": res.stderr[-500:], "resumed": "already finished" in res.stdout})
    elif proc.returncode != 0:
        raise SystemExit(f"mesalab sweep failed: {err[-2000:]}")
    finish(args, result, sweep_dir)


def finish(args, result: dict, sweep_dir: Path) -> None:
    result["total_wall_s"] = sum(p["wall_s"] for p in result["parts"])
    import duckdb

    con = duckdb.connect(str(sweep_dir / "sweep.duckdb"), read_only=True)
    result["cells"] = con.execute("SELECT count(*) FROM cells").fetchone()[0]
    result["distinct_cells"] = con.execute("SELECT count(DISTINCT cell_id) FROM cells").fetchone()[0]
    result["metrics_per_cell"] = sorted({n for (n,) in con.execute(
        "SELECT count(*) FROM cell_metrics GROUP BY cell_id").fetchall()})
    con.close()
    from mesalab.experiments import analyse_sweep

    a = analyse_sweep(sweep_dir)
    result["expected_cells"] = a.n_expected
    result["verdicts"] = [{"panel": v.panel, "metric": v.metric, "verdict": v.verdict, "rho": v.trend.rho,
                           "p_value": v.trend.p_value, "sentence": v.sentence} for v in a.verdicts]
    result["series"] = [{"panel": s.panel, "metric": s.metric, "points": [p._asdict() for p in s.points]}
                        for s in a.series]
    out_path = Path(args.out or f"benchmarks/results/sweep-{args.preset}.json")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2, default=str))
    print(f"{args.preset}: {result['cells']}/{result['expected_cells']} cells ({result['distinct_cells']} distinct) "
          f"in {result['total_wall_s'] / 60:.1f} min over {len(result['parts'])} part(s)")
    for v in result["verdicts"]:
        print(" ", v["sentence"])
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
