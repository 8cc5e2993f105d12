"""Record every numeric value that fixed small experiments write to their databases, to check that a
restructuring changes no number.

    python benchmarks/same_numbers.py record OUT.json [--work DIR]   # run the experiments, write their numbers
    python benchmarks/same_numbers.py compare A.json B.json          # exit 1 and list the differences

The experiments (each through the CLI, one pinned worker, so batches are the same on any machine):
``mesalab run red-door`` (2 seeds, 16384 steps, 100 episodes), ``mesalab sweep pseudo-alignment-alpha``
(1 seed, 8192 steps, 50 episodes), ``mesalab run icl-gd`` (2 seeds, 200 steps), ``mesalab sweep extrapolation``
(1 seed, 60 steps, sizes 9 and 13, 30 ticks, 10 mazes) and ``mesalab sweep toy-model``. Numbers are every
INTEGER/BIGINT/DOUBLE/BOOLEAN cell (and numeric lists) of every table, keyed by table and by the row's
non-numeric columns; timestamps, versions, configs (JSON) and wall times are left out.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

EXPERIMENTS = {
    "run-red-door": ["run", "red-door", "--seeds", "2", "--steps", "16384", "--episodes", "100", "--workers", "1"],
    "sweep-alpha": ["sweep", "pseudo-alignment-alpha", "--seeds", "1", "--steps", "8192", "--episodes", "50",
                    "--workers", "1"],
    "run-icl-gd": ["run", "icl-gd", "--seeds", "2", "--steps", "200"],
    "sweep-extrapolation": ["sweep", "extrapolation", "--seeds", "1", "--steps", "60", "--sizes", "9,13",
                            "--max-ticks", "30", "--mazes", "10"],
    "sweep-toy-model": ["sweep", "toy-model"],
}
SKIP_COLUMNS = {"wall_s", "created", "finished", "versions", "config"}
NUMERIC = ("INTEGER", "BIGINT", "DOUBLE", "BOOLEAN", "FLOAT", "HUGEINT", "SMALLINT")


def numbers(db: Path) -> dict:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    out = {}
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        for t in sorted(tables):
            cols = con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
                               "ORDER BY ordinal_position", [t]).fetchall()
            cols = [(c, ty) for c, ty in cols if c not in SKIP_COLUMNS]
            keys = [c for c, ty in cols if not ty.startswith(NUMERIC) and ty != "JSON"]
            nums = [c for c, ty in cols if ty.startswith(NUMERIC)]
            rows = con.execute(f"SELECT {', '.join(keys + nums) or '*'} FROM {t}").fetchall()
            entries = []
            for r in rows:
                entries.append([list(r[:len(keys)]), [_clean(v) for v in r[len(keys):]]])
            entries.sort(key=lambda e: json.dumps(e, default=str))
            out[t] = {"keys": keys, "numbers": nums, "rows": entries}
    finally:
        con.close()
    return out


def _clean(v):
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def record(out: Path, work: Path) -> None:
    env = {**os.environ, "MESALAB_WORKERS": os.environ.get("MESALAB_WORKERS", "1")}
    result = {}
    for name, args in EXPERIMENTS.items():
        folder = work / name
        cmd = [sys.executable, "-m", "mesalab", *args, "--out", str(folder)]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        dbs = sorted(folder.glob("*.duckdb"))
        result[name] = {db.name: numbers(db) for db in dbs}
    out.write_text(json.dumps(result, indent=1, sort_keys=True, default=str))
    print(f"wrote {out}")


def compare(a: Path, b: Path) -> int:
    A, B = json.loads(a.read_text()), json.loads(b.read_text())
    diffs = []
    for exp in sorted(set(A) | set(B)):
        for db in sorted(set(A.get(exp, {})) | set(B.get(exp, {}))):
            ta, tb = A.get(exp, {}).get(db, {}), B.get(exp, {}).get(db, {})
            for t in sorted(set(ta) | set(tb)):
                if t not in ta or t not in tb:
                    present = ta.get(t) or tb.get(t)
                    if not present["rows"]:  # an empty table one schema declares and the other does not
                        print(f"note {exp}/{db}/{t}: an empty table only {'before' if t in ta else 'after'}")
                        continue
                if ta.get(t) != tb.get(t):
                    ra = (ta.get(t) or {}).get("rows")
                    rb = (tb.get(t) or {}).get("rows")
                    what = "missing in one" if ra is None or rb is None else f"{len(ra)} vs {len(rb)} rows differ"
                    diffs.append(f"{exp}/{db}/{t}: {what}")
    for d in diffs:
        print("DIFF", d)
    n = sum(len(t) for e in A.values() for t in e.values())
    print(f"{len(diffs)} differing tables of {n}")
    return 1 if diffs else 0


if __name__ == "__main__":
    if sys.argv[1] == "record":
        work = Path(sys.argv[sys.argv.index("--work") + 1]) if "--work" in sys.argv else Path(tempfile.mkdtemp())
        record(Path(sys.argv[2]), work)
    else:
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
