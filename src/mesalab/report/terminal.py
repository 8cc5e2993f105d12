"""The terminal summaries: what ``mesalab run``, ``sweep``, ``diagnose`` and ``report`` print, rendered from the
same analysed result as the HTML report (a list of Rich renderables; strings are Rich markup)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text


def _ci(rate: float, lo: float, hi: float) -> str:
    return f"{rate:.2f} [{lo:.2f}, {hi:.2f}]"


def run_summary(a) -> list:
    """A gridworld run (:class:`mesalab.analysis.run.RunAnalysis`): the shift table with every seed's verdict,
    the verdict summary, a warning for seeds never trained to competence, and the objective table."""
    from mesalab.diagnostics.verdict import NOT_TRAINED, TRAINING_COMPETENCE, verdict_phrase
    from mesalab.report.build import verdict_summary

    task = a.task
    base = task.base_objective.name
    out: list = []
    if a.n_seeds < a.n_expected:
        out.append(f"[bold yellow]Partial:[/] {a.n_seeds} of {a.n_expected} seeds finished; rerun the same command to "
                   "resume the rest.")
    table = Table(title=f"{task.name}: shift evaluation ({a.meta['eval']['episodes']} episodes per split)")
    table.add_column("seed")
    table.add_column("train: base pursued competently")
    table.add_column(f"test {base} (base)")
    for p in task.proxies:
        table.add_column(f"test {p.name} (proxy)")
    table.add_column("verdict")

    def fmt(r):
        return _ci(r["competent_rate"], r["ci_low"], r["ci_high"])

    for v in a.verdicts:
        s = v["seed"]
        label = verdict_phrase(v["label"], v["proxy"]) + f" (conf {v['confidence']:.2f})"
        table.add_row(str(s), fmt(a.evaluation(s, "train", base)), fmt(a.evaluation(s, "test", base)),
                      *[fmt(a.evaluation(s, "test", p.name)) for p in task.proxies], label)
    out.append(table)
    out.append(Text.assemble(("Verdict: ", "bold"), verdict_summary(a.verdicts)))
    if a.events is not None:  # keys-chests
        from mesalab.report.events import events_table

        out += [events_table(a.events), Text(a.events.sentence("test"))]
    untrained = [v for v in a.verdicts if v["label"] == NOT_TRAINED]
    if untrained:
        rates = ", ".join(f"seed {v['seed']}: {a.evaluation(v['seed'], 'train', base)['competent_rate']:.2f}"
                          for v in untrained)
        if a.meta.get("kind") == "agent":  # an outside agent: its evaluation seeds, not training seeds
            out.append(f"[bold yellow]Warning:[/] the agent does not pursue the base objective competently on the training "
                       f"distribution ({rates}, below {TRAINING_COMPETENCE:.2f}), so its test verdict says nothing about "
                       "alignment; diagnose a better-trained agent.")
        else:
            out.append(f"[bold yellow]Warning:[/] {len(untrained)} seed(s) never learned to pursue the base objective in "
                       f"training ({rates}, below {TRAINING_COMPETENCE:.2f}), so their test verdict says nothing about "
                       "alignment; train longer or check the PPO settings (e.g. lr, anneal_lr).")
    if a.probes is not None:
        out.append(Text.assemble(("What the probes show: ", "bold"), a.probes.headline))
    out += objectives_summary(a)
    if a.internals is not None:
        out.append(Text.assemble(("Inside the model: ", "bold"), a.internals.agreement))
    out.append(Text(f"Report: {Path(a.path) / 'report.html'}"))
    return out


def objectives_summary(a) -> list:
    """The behavioral objective, goal-directedness and optimization power of each seed (test split first)."""
    if a.objectives is None:
        return [Text(f"No behavioral objective in this run; compute it with `mesalab diagnose {a.path}`.")]
    def seed_then_split_desc(rows, *more):
        rows = sorted(rows, key=lambda r: tuple(r[k] for k in more))
        rows = sorted(rows, key=lambda r: r["split"], reverse=True)
        return sorted(rows, key=lambda r: r["seed"])

    objs = seed_then_split_desc(a.objectives["summary"])
    by: dict = {}
    for b in seed_then_split_desc(a.objectives["bits"], "objective"):
        by.setdefault((b["seed"], b["split"]), []).append(b)
    table = Table(title="What is it optimizing? (behavioral objective by exact MCE-IRL)")
    for col in ("seed", "split", "dominant feature (w)", "goal-directedness", "bits (base) / ceiling", "bits (proxies)"):
        table.add_column(col)
    for o in objs:
        bb = by.get((o["seed"], o["split"]), [])
        base = [b for b in bb if b["objective"].startswith("base:")]
        proxies = [b for b in bb if b["objective"].startswith("proxy:")]
        table.add_row(str(o["seed"]), o["split"], f"{o['dominant']} ({o['dominant_weight']:.2f})",
                      f"{o['goal_directedness']:.2f}",
                      " ".join(f"{b['mean_bits']:.1f} / {b['optimal_mean_bits']:.1f}" for b in base),
                      " ".join(f"{b['objective'][6:]}: {b['mean_bits']:.1f}" for b in proxies) or "-")
    first_test = next((o for o in objs if o["split"] == "test"), objs[0])
    return [table, Text.assemble((f"Seed {first_test['seed']} ({first_test['split']}): ", "bold"), first_test["reading"])]


def sentences_summary(sentences: list[str], report: Path) -> list:
    """A kind whose summary is the sentences its report states."""
    return [Text(s) for s in sentences] + [Text(f"Report: {report}")]


def sweep_summary(a) -> list:
    """A sweep of cells (:class:`mesalab.analysis.sweep.SweepAnalysis`): the dial table of every hypothesis's
    metric with its CIs, then one coloured verdict line per hypothesis and panel."""
    table = Table(title=f"{a.preset.name}: {a.n_cells} of {a.n_expected} cells finished")
    table.add_column(a.preset.dial.name)
    shown = [s for s in a.series if s.metric in {v.metric for v in a.verdicts}] or a.series[:3]
    for s in shown:
        table.add_column((s.panel + ": " if s.panel != "all" else "") + s.metric)
    for v in a.preset.dial.values:
        row = [a.preset.dial.display(v)]
        for s in shown:
            p = next((p for p in s.points if p.value == v), None)
            row.append("-" if p is None else f"{p.mean:.2f} [{p.ci_low:.2f}, {p.ci_high:.2f}]")
        table.add_row(*row)
    out: list = [table]
    for v in a.verdicts:
        colour = {"supported": "green", "contradicted": "red"}.get(v.verdict, "yellow")
        out.append(Text.assemble((v.verdict.upper() + " ", colour), v.sentence))
    for t in a.extra_tables:
        extra = Table(title=t["title"])
        for col in [a.preset.dial.name, *t["header"]]:
            extra.add_column(col)
        for r in t["rows"]:
            extra.add_row(*map(str, r))
        out.append(extra)
    for s in a.sentences:
        out.append(Text(s))
    out.append(Text(f"Report: {Path(a.path) / 'report.html'}"))
    return out


def icl_summary(a) -> list:
    """An icl-gd run (:class:`mesalab.analysis.icl.ICLAnalysis`): the final layer's match against every reference,
    then the sentence per seed."""
    table = Table(title="icl-gd: which learning algorithm does the transformer implement?")
    for col in ("seed", "reference", "reference loss", "model loss", "prediction MSE", "sensitivity cosine"):
        table.add_column(col)
    for m in a.final_layer_matches():
        table.add_row(str(m["seed"]), m["reference"], f"{m['reference_loss']:.4f}", f"{m['model_loss']:.4f}",
                      f"{m['prediction_mse']:.5f}", f"{m['sensitivity_cosine']:.4f}")
    return [table, *sentences_summary(a.sentences, Path(a.path) / "report.html")]


def internals_summary(a) -> list:
    """What ``mesalab probe`` found (:class:`mesalab.analysis.internals.InternalsSummary`): the agreement
    sentence, then one sentence per kind of evidence."""
    s = a.internals
    if s is None:
        return [Text(f"No probes in this run; measure them with `mesalab probe {a.path}`.")]
    return [Text.assemble(("Inside the model: ", "bold"), s.agreement), *[Text(x) for x in s.sentences],
            Text(f"Report: {Path(a.path) / 'report.html'}")]
