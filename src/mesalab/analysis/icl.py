"""The analysed result of an icl-gd run folder: its config, tables and the sentence per seed that names the
algorithm (and so the mesa-objective) the model implements."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ICLAnalysis:
    path: Path
    meta: dict
    curves: list[dict]
    matches: list[dict]
    ood: list[dict]
    learning_rates: list[dict]
    sentences: list[str]  # "Seed S: Best match: ..." per finished seed
    internals: object = None  # analysis.icl_internals.ICLInternals once `mesalab probe` has run on the folder

    def final_layer_matches(self) -> list[dict]:
        last = max((m["layer"] for m in self.matches), default=0)
        return sorted((m for m in self.matches if m["layer"] == last), key=lambda m: (m["seed"], m["reference"]))


def analyse_icl_run(folder) -> ICLAnalysis:
    from mesalab.diagnostics.icl_analysis import best_match, mesa_objective_sentence
    from mesalab.errors import CorruptRunError

    meta = folder.read_meta()
    t = folder.tables("icl_training", "icl_matches", "icl_ood", "icl_learning_rates",
                      order={"icl_training": "seed, step", "icl_matches": "seed, layer, reference",
                             "icl_ood": "seed, shift, scale"})
    layers = meta["icl"]["layers"]
    done = sorted({m["seed"] for m in t["icl_matches"]})
    if not done:
        raise CorruptRunError(f"{folder.path} holds no finished seed yet; run `mesalab run icl-gd` with the same "
                              "options to resume it")
    sentences = []
    for seed in [s for s in meta["seeds"] if s in done]:
        rows = [dict(m, name=m["reference"]) for m in t["icl_matches"] if m["seed"] == seed]
        lr1 = next(r["lr"] for r in t["icl_learning_rates"] if r["seed"] == seed and r["gd_steps"] == 1)
        sentences.append(f"Seed {seed}: " + mesa_objective_sentence(best_match(rows, layers), lr1))
    from mesalab.analysis.icl_internals import read_icl_internals

    return ICLAnalysis(folder.path, meta, t["icl_training"], t["icl_matches"], t["icl_ood"], t["icl_learning_rates"],
                       sentences, read_icl_internals(folder.path))
