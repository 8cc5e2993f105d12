"""The ``toy-model`` kind: the analytic model of how optimization power is split between the base optimizer and
the learned algorithm as task diversity grows (:mod:`mesalab.experiments.toy_model`), optionally fitted to a
finished ``diversity`` sweep (``--compare``). One cell, computed in a moment: every run recomputes it and
replaces the folder's database atomically."""

from __future__ import annotations

from pathlib import Path

from mesalab.errors import ConfigError
from mesalab.results.folder import RunFolder
from mesalab.results.tables import TOY_SCHEMA
from mesalab.studies import register
from mesalab.studies.contract import Listing, Options, Study, check_sweep_folder
from mesalab.studies.engine import Batch

NAME = "toy-model"


class ToyModel(Study):
    kind = NAME
    command = "sweep"
    options = frozenset({"compare"})
    schema = TOY_SCHEMA
    meta_name, db_name = "sweep.json", "sweep.duckdb"
    cell_table, cell_key = "toy_model", "curve"

    def names(self) -> list[Listing]:
        return [Listing(NAME, "The analytic toy model of the split of optimization power between the base optimizer "
                        "and the learned algorithm as task diversity N grows (no training; --compare fits it to a "
                        "diversity sweep).", "-", "N (distinct training instances)")]

    def default_out(self, name: str) -> Path:
        return Path("sweeps") / NAME

    def configure(self, name: str, options: Options) -> dict:
        from mesalab.analysis.sweep import load_sweep_config

        compare = options.compare
        if compare is not None:
            if not compare.is_dir():
                raise ConfigError(f"--compare {compare} is not a folder; pass a diversity sweep folder")
            meta = load_sweep_config(compare)
            if meta["preset"] != "diversity":
                raise ConfigError(f"--compare needs a diversity sweep folder; {compare} holds {meta['preset']!r}")
            if not (compare / "sweep.duckdb").exists():
                raise ConfigError(f"{compare} has no finished cells yet; run `mesalab sweep diversity` first")
        return {"name": NAME, "compare": None if compare is None else str(compare), "seeds": []}

    def header(self, s: dict) -> str:
        return f"[bold]mesalab sweep toy-model[/]{'' if s['compare'] is None else ': compared with ' + s['compare']}"

    def check_folder(self, folder: RunFolder, settings: dict) -> None:
        check_sweep_folder(folder, NAME, NAME)  # the same kind is recomputed in place (it is analytic)

    def start(self, folder: RunFolder, settings: dict) -> dict:
        folder.create()
        return {}

    def n_cells(self, settings: dict) -> int:
        return 1

    def plan(self, settings: dict, done: set) -> list[Batch]:
        return [Batch(NAME, (NAME,), {"compare": settings["compare"]})]  # recomputed every time (analytic)

    def measure(self, batch: Batch, progress=None) -> dict:
        from mesalab.analysis.toy import toy_model_rows

        return toy_model_rows(None if batch.spec["compare"] is None else Path(batch.spec["compare"]))

    def commit(self, folder: RunFolder, batch: Batch, result: dict) -> None:
        from mesalab.results.provenance import now, versions
        from mesalab.results.store import write_results

        folder.write_meta({"kind": NAME, "preset": NAME, "seeds": [], "compare": batch.spec["compare"],
                           "ceiling_bits": result["ceiling"], "versions": versions(), "created": now()})
        write_results(folder.path, result["rows"], TOY_SCHEMA, db_name=self.db_name)

    def analyse(self, folder: RunFolder):
        from mesalab.analysis.toy import analyse_toy

        return analyse_toy(folder)

    def report(self, folder: RunFolder, analysis) -> Path:
        from mesalab.report.sweep import build_toy_report

        return build_toy_report(folder.path, analysis)

    def summary(self, analysis) -> list:
        from mesalab.report.terminal import sentences_summary

        return sentences_summary(analysis.sentences, Path(analysis.path) / "report.html")


TOY = register(ToyModel())
