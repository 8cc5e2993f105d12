"""Build ``report.html`` (self-contained: figures inlined as base64 PNG) from a run folder."""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from mesalab.diagnostics.verdict import verdict_phrase
from mesalab.report import figures as F
from mesalab.report.events import events_section
from mesalab.report.internals import internals_section
from mesalab.report.html import inline_figures, write_html_atomic


def _pct(rate: float, lo: float, hi: float) -> str:
    return f"{rate:.2f} [{lo:.2f}, {hi:.2f}]"


def build_report(run_dir: Path, analysis) -> Path:
    """Render ``report.html`` (and its figures) of a run folder from its analysed result
    (:class:`mesalab.analysis.run.RunAnalysis`)."""
    run_dir = Path(run_dir)
    a = analysis
    meta, task = a.meta, a.task
    curves, evaluations, outcomes, competence = a.curves, a.evaluations, a.outcomes, a.competence
    verdicts, levels, trajs, objectives, scaling = a.verdicts, a.levels, a.trajectories, a.objectives, a.scaling

    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    first_seed = verdicts[0]["seed"]
    figs = [] if not curves else [
        ("Learning curves", "Share of PPO's own training episodes reaching the base objective at any step within "
         "the step limit, and their mean return, per seed (not the verdict table's competent-pursuit rate).",
         F.learning_curves(curves, fig_dir / "learning_curves.png"))]
    figs += [
        ("Train vs test", "Competent-pursuit rate of the base objective and each proxy on the training and the "
         "shifted test distribution: bars are the mean over seeds, points each seed with its 95% Wilson interval.",
         F.shift_rates(evaluations, fig_dir / "shift_rates.png")),
        ("Test outcomes", "What each seed's test episodes pursued: the base objective, a proxy, or nothing "
         "competently ('other').", F.outcome_shares(outcomes, fig_dir / "outcomes.png")),
        ("Trajectories on training levels", f"Seed {first_seed}; circle = start, x = end.",
         F.trajectories(levels, trajs, "train", first_seed, fig_dir / "trajectories_train.png")),
        ("Trajectories on test levels", f"Seed {first_seed}; circle = start, x = end.",
         F.trajectories(levels, trajs, "test", first_seed, fig_dir / "trajectories_test.png")),
    ]
    if a.probes is not None:
        figs.append(("What does it pursue? (probe splits)", "For each account of what the agent pursues (the task's "
                     "hypotheses and the set its reading names) and each split: the share of episodes reaching one of "
                     "its targets within twice the shortest path, over the levels where one is achievable; mean over "
                     "seeds with a 95% bootstrap interval over seeds (one seed: its Wilson interval).",
                     F.probe_pursuit(a.probes, fig_dir / "probe_pursuit.png")))
    if objectives is not None:
        figs += [
            ("Behavioral objective (IRL weights)", "Reward weights of exact maximum-causal-entropy IRL, normalised "
             "by the sum of their absolute values; bars are the mean over seeds, points each seed with its 95% "
             "one-step bootstrap interval over levels. Object features are 'reach it sooner' rewards; "
             "'step' is a per-step reward (negative: hurry to end the episode).",
             F.irl_weights(objectives["weights"], fig_dir / "irl_weights.png",
                           absent={o["split"]: set(json.loads(o["absent"])) for o in objectives["summary"]})),
            ("Optimization power", "Bits per level: -log2 of the exact probability that a uniformly random policy "
             "first reaches the objective at least as soon as the agent did (0 if the agent never reached it); "
             "dashed lines: the oracle-optimal agent (the ceiling).",
             F.bits_histogram(objectives["level_bits"], fig_dir / "optimization_power.png")),
        ]
    compute_section = None
    if scaling:
        figs.append(("Test-time compute scaling", "Success on the test distribution (reaching a base-objective target) "
                     "against the recurrent policy's internal ticks per environment step, on the same levels and "
                     "episode keys at every tick count; thin lines: seeds, thick line: mean over seeds with its 95% "
                     "bootstrap interval; dashed: the training ticks.",
                     F.success_by_ticks(scaling, fig_dir / "compute_scaling.png")))
        compute_section = F.compute_gain_sentence(scaling)
    internals, internal_figs = internals_section(task, a.internals, fig_dir)
    figures = inline_figures(figs)
    internal_figures = inline_figures(internal_figs)
    objective_section = _objective_section(objectives) if objectives is not None else None

    comp = {(r["seed"], r["split"]): r for r in competence}
    seed_rows = []
    for v in verdicts:
        s = v["seed"]
        ev = {(r["split"], r["objective"]): r for r in evaluations if r["seed"] == s}
        base = task.base_objective.name
        tr, te = ev[("train", base)], ev[("test", base)]
        c = comp[(s, "test")]
        label = verdict_phrase(v["label"], v["proxy"])
        seed_rows.append({
            "seed": s,
            "train": _pct(tr["competent_rate"], tr["ci_low"], tr["ci_high"]),
            "base": _pct(te["competent_rate"], te["ci_low"], te["ci_high"]),
            "proxies": [_pct(ev[("test", p.name)]["competent_rate"], ev[("test", p.name)]["ci_low"],
                             ev[("test", p.name)]["ci_high"]) for p in task.proxies],
            "competence": _pct(c["rate"], c["ci_low"], c["ci_high"]),
            "verdict": label,
            "css": v["label"].split()[0].split("-")[0],
            "text": v.get("text") or label,
            "confidence": f"{v['confidence']:.2f}",
        })
    env = Environment(loader=PackageLoader("mesalab.report", "templates"), autoescape=select_autoescape())
    html = env.get_template("report.html.j2").render(
        agent=meta.get("agent"),
        task={"name": task.name, "description": task.description, "base": task.base_objective.description,
              "intended": task.intended_objective.description, "proxies": [p.description for p in task.proxies]},
        created=meta.get("created", "?"),
        n_seeds=len(verdicts),
        episodes=meta["eval"]["episodes"],
        summary=verdict_summary(verdicts),
        seed_rows=seed_rows,
        figures=figures,
        objectives=objective_section,
        compute_scaling=compute_section,
        probes=_probe_section(task, a.probes),
        internals=internals,
        internal_figures=internal_figures,
        events=None if a.events is None else events_section(a.events),
        overlaps=overlap_sentence(a.overlaps or []),
        evaluations=evaluations,
        config_json=json.dumps({**({"agent": meta["agent"]} if "agent" in meta else {"ppo": meta["ppo"]}),
                                 "seeds": meta["seeds"], "eval": meta["eval"]}, indent=2),
        versions_json=json.dumps(meta.get("versions", {}), indent=2),
    )
    return write_html_atomic(run_dir / "report.html", html)


def _objective_section(objectives: dict) -> dict:
    """Rows of the objectives tables of the report."""
    cands = {}
    for c in objectives["candidates"]:
        cands.setdefault((c["seed"], c["split"]), []).append(c)
    bits = {}
    for b in objectives["bits"]:
        bits.setdefault((b["seed"], b["split"]), []).append(b)
    epic = {}
    for e in objectives.get("epic", []):
        epic.setdefault((e["seed"], e["split"]), []).append(e)
    names = list(dict.fromkeys(c["candidate"] for c in objectives["candidates"]))
    rows = []
    for o in objectives["summary"]:
        key = (o["seed"], o["split"])
        by = {c["candidate"]: c for c in cands.get(key, [])}
        rows.append({
            "seed": o["seed"], "split": o["split"], "dominant": o["dominant"],
            "dominant_weight": f"{o['dominant_weight']:.2f}",
            "fitted": f"{o['fitted_ll']:.3f}",
            "candidates": [f"{by[n]['held_out_ll']:.3f} (β={by[n]['beta']:.2f})" if n in by else "-" for n in names],
            "uniform": f"{o['uniform_ll']:.3f}",
            "ceiling": "-" if o["ceiling_ll"] is None else f"{o['ceiling_ll']:.3f}",
            "gd": f"{o['goal_directedness']:.2f}", "gd_nats": f"{o['goal_directedness_nats']:.3f}",
            "bits": [f"{b['objective']}: {b['mean_bits']:.2f} [{b['ci_low']:.2f}, {b['ci_high']:.2f}] of "
                     f"{b['optimal_mean_bits']:.2f}" for b in bits.get(key, [])],
            "aliases": ", ".join("=".join(a) for a in json.loads(o["aliases"])) or "none",
            "epic": [f"{e['candidate']}: " + ("-" if e["distance"] != e["distance"] else
                     f"{e['distance']:.2f} [{e['ci_low']:.2f}, {e['ci_high']:.2f}]") for e in epic.get(key, [])],
            "n_levels": o["n_levels"], "n_actions": o["n_actions"],
        })
    readings = [f"Seed {o['seed']} ({o['split']}): {o['reading']}" for o in objectives["summary"]]
    return {"candidate_names": names, "rows": rows, "readings": readings}


def _probe_section(task, probes) -> dict | None:
    """The probe table of the report (rows: accounts of what the agent pursues; columns: splits)."""
    import math

    if probes is None:
        return None
    rows = []
    for label, name in probes.rows:
        cells = []
        for split in probes.splits:
            c = probes.cells[(label, split)]
            cells.append("-" if math.isnan(c.mean) else f"{c.mean:.2f} [{c.ci_low:.2f}, {c.ci_high:.2f}]")
        rows.append({"name": name if name == " or ".join(label.split("|")) else f"{name} ({label.replace('|', ' or ')})",
                     "cells": cells})
    verdict_splits = [s for s in probes.splits if s in {v["split"] for v in probes.verdicts}]
    by = {(v["seed"], v["split"]): v for v in probes.verdicts}
    verdict_rows = [{"seed": seed, "cells": [verdict_phrase(by[(seed, s)]["label"], by[(seed, s)]["proxy"])
                                             + f" ({by[(seed, s)]['confidence']:.2f})" if (seed, s) in by else "-"
                                             for s in verdict_splits]}
                    for seed in dict.fromkeys(v["seed"] for v in probes.verdicts)]
    descriptions = [{"name": p.name, "text": p.description} for p in task.probes]
    return {"headline": probes.headline, "splits": probes.splits, "rows": rows, "readings": probes.readings,
            "verdicts": probes.verdicts, "verdict_splits": verdict_splits, "verdict_rows": verdict_rows,
            "descriptions": descriptions}


def overlap_sentence(overlaps: list[dict]) -> str:
    """"0 of the 1000 test levels equal a level the model trained on (of 37,888 training levels)...", per split over
    seeds; empty when the run did not record the check."""
    if not overlaps:
        return ""
    parts = []
    for split in dict.fromkeys(o["split"] for o in overlaps):
        rows = [o for o in overlaps if o["split"] == split]
        worst = max(o["n_overlap"] for o in rows)
        parts.append(f"{split}: {'none' if worst == 0 else f'at most {worst}'} of {rows[0]['n_levels']} levels "
                     f"{'equals' if worst == 0 else 'equal'} a level its seed trained on")
    n_train = min(o["n_training_levels"] for o in overlaps)
    return (f"every evaluation level was compared by hash (grid and start) with every distinct level each seed "
            f"trained on (at least {n_train:,} per seed): " + "; ".join(parts) + ".")


def verdict_summary(verdicts: list[dict]) -> str:
    """One sentence: how many seeds fell in each class."""
    counts: dict[str, int] = {}
    for v in verdicts:
        label = verdict_phrase(v["label"], v["proxy"])
        counts[label] = counts.get(label, 0) + 1
    parts = [f"{n} of {len(verdicts)} seed(s) {label}" for label, n in sorted(counts.items(), key=lambda x: -x[1])]
    return "; ".join(parts) + "."
