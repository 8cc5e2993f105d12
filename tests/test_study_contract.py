"""A new study kind plugs in with no edit outside its own file: the example below (the one docs/architecture.md
shows) is listed by ``mesalab tasks``, run by ``mesalab run``, resumed after a failure keeps its finished cells,
and reported by ``mesalab report`` — all through the same engine, results layer and report path as every kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mesalab import cli
from mesalab.results.tables import Schema, Table
from mesalab.studies import Listing, Study, register
from mesalab.studies.engine import Batch

# ---- the example kind: 30 lines ---------------------------------------------------------------------------------
DRAWS = Table("draws", (("seed", "INTEGER"), ("mean", "DOUBLE")), ("seed",))
FAIL_ON = set()  # seeds whose measurement fails (to interrupt a run in the test)


class CoinFlips(Study):
    """Each seed flips a fair coin 1000 times; the analysis states the mean rate of heads with a 95% CI."""
    kind, command, options = "coin-flips", "run", frozenset({"seeds", "workers"})
    schema, cell_table, cell_key = Schema("coin-flips", (DRAWS,)), "draws", "seed"

    def names(self):
        return [Listing("coin-flips", "Fair coin flips per seed (an example study kind).")]

    def configure(self, name, options):
        return {"name": name, "seeds": list(range(options.seeds or 3))}

    def plan(self, settings, done):
        return [Batch(f"seed {s}", (s,), s) for s in settings["seeds"] if s not in done]

    def measure(self, batch, progress=None):
        if batch.spec in FAIL_ON:
            raise RuntimeError(f"seed {batch.spec} failed")
        return [DRAWS.row(batch.spec, float(np.random.default_rng(batch.spec).integers(0, 2, 1000).mean()))]

    def commit(self, folder, batch, rows):
        folder.commit({"draws": [tuple(r) for r in rows]})

    def analyse(self, folder):
        means = [r["mean"] for r in folder.tables("draws")["draws"]]
        half = 1.96 * np.std(means, ddof=1) / np.sqrt(len(means)) if len(means) > 1 else float("nan")
        return {"path": folder.path, "n": len(means), "mean": float(np.mean(means)), "half": float(half)}

    def report(self, folder, a):
        (folder.path / "report.html").write_text(f"<p>heads {a['mean']:.3f} ± {a['half']:.3f} over {a['n']} seeds</p>")
        return folder.path / "report.html"

    def summary(self, a):
        return [f"heads rate {a['mean']:.3f} ± {a['half']:.3f} (95% CI over {a['n']} seeds)"]


register(CoinFlips())
# ---- end of the example ------------------------------------------------------------------------------------------


def test_the_example_kind_is_listed(capsys):
    assert cli.main(["tasks"]) == 0
    assert "coin-flips" in capsys.readouterr().out


def test_the_example_kind_runs_resumes_and_reports(tmp_path, capsys):
    out = tmp_path / "flips"
    FAIL_ON.add(2)
    try:
        assert cli.main(["run", "coin-flips", "--seeds", "4", "--workers", "0", "--out", str(out)]) == 2
    finally:
        FAIL_ON.clear()
    assert "seed 2 failed" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["kind"] == "coin-flips"
    kept = CoinFlips().folder(out).finished()
    assert kept == {0, 1}  # the batches before the failure were committed; the failed one left nothing
    before = {r["seed"]: r["mean"] for r in CoinFlips().folder(out).tables("draws")["draws"]}

    assert cli.main(["run", "coin-flips", "--seeds", "4", "--workers", "0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "resuming: 2 cell(s) already finished, 2 to run" in text and "over 4 seeds" in text
    rows = {r["seed"]: r["mean"] for r in CoinFlips().folder(out).tables("draws")["draws"]}
    assert sorted(rows) == [0, 1, 2, 3] and all(rows[s] == before[s] for s in before)
    expected = np.mean([np.random.default_rng(s).integers(0, 2, 1000).mean() for s in range(4)])
    assert f"heads rate {expected:.3f}" in text

    assert cli.main(["run", "coin-flips", "--seeds", "4", "--out", str(out)]) == 2  # nothing left: a finished study
    assert "already holds" in capsys.readouterr().err
    (out / "report.html").unlink()
    assert cli.main(["report", str(out)]) == 0
    assert f"heads {expected:.3f}" in (out / "report.html").read_text()


def test_the_example_kind_runs_in_a_pinned_worker_process(tmp_path, capsys):
    """The kind travels to a spawned worker by reference (its module is importable there) and gives the same
    numbers as in-process."""
    a, b = tmp_path / "in-process", tmp_path / "worker"
    assert cli.main(["run", "coin-flips", "--seeds", "2", "--workers", "0", "--out", str(a)]) == 0
    assert cli.main(["run", "coin-flips", "--seeds", "2", "--workers", "1", "--out", str(b)]) == 0
    capsys.readouterr()
    read = lambda d: sorted(tuple(r.values()) for r in CoinFlips().folder(d).tables("draws")["draws"])  # noqa: E731
    assert read(a) == read(b) and len(read(a)) == 2


def test_an_option_the_kind_does_not_use_is_refused(tmp_path, capsys):
    assert cli.main(["run", "coin-flips", "--episodes", "5", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--episodes is not used by `mesalab run coin-flips`" in err
    assert not Path(tmp_path / "x").exists()
