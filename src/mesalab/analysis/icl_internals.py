"""What ``mesalab probe`` found inside an icl-gd run's transformers, read back and summarised across seeds
(:mod:`mesalab.diagnostics.icl_internals` for the measures).

Every figure is a mean over seeds with a 95% percentile bootstrap interval over the seeds' values (one seed: its
own bootstrap interval over held-out sequences). The reading per layer and token kind names the learning algorithm
whose prediction the layer wrote into those tokens: the label whose gain over the input alone clearly beats an
untrained transformer's (gain CI low above its gain, floored at 0, + 0.05) and whose relative gain beats every other
algorithm's (margin CI above 0). It says "holds" when that label's R² CI low is at least 0.9 and "comes closest to,
but only partly holds" below; "cannot attribute to one algorithm" when something was written but no margin clears
0; "not clearly more than an untrained transformer" when only an untrained one's gain explains it away; and
"carries no algorithm's prediction" otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from mesalab.analysis.internals import Estimate, group_rows, over_seeds
from mesalab.diagnostics.icl_internals import LEAST_SQUARES, TARGET, gd_name
from mesalab.results.folder import RunFolder
from mesalab.results.tables import ICL_PROBE_SCHEMA

GAIN = 0.05  # a layer wrote a label when its gain over the input is above an untrained transformer's by this much
FULL = 0.9  # ... and holds it (rather than "closest to it, only partly") when the R² CI is above this


def icl_probes_folder(path: Path | str) -> RunFolder:
    return RunFolder(path, ICL_PROBE_SCHEMA, "probes.json", "probes.duckdb", "icl_probe_seeds", "seed")


@dataclass
class TokenProbeRow:
    layer: str
    source: str
    tokens: str
    label: str
    r2: Estimate
    control: float
    selectivity: Estimate
    gain: Estimate
    margin: Estimate
    n_test: int


@dataclass
class ICLInternals:
    seeds: list
    layers: list  # "layer_l/residual", in order
    probes: list  # TokenProbeRow
    readings: dict = field(default_factory=dict)  # (layer, tokens) -> label held (None: none)
    sentences: list = field(default_factory=list)

    def row(self, layer: str, source: str, tokens: str, label: str) -> "TokenProbeRow | None":
        return next((p for p in self.probes if (p.layer, p.source, p.tokens, p.label) == (layer, source, tokens, label)),
                    None)

    def labels(self) -> list[str]:
        seen = []
        for p in self.probes:
            if p.label not in seen:
                seen.append(p.label)
        return sorted(seen, key=_label_order)


def _label_order(label: str):
    if label.startswith("gd-"):
        return (0, int(label.split("-")[1]))
    return (1 if label == LEAST_SQUARES else 2, 0)


def layer_number(layer: str) -> int:
    """``layer_l/residual`` -> l + 1 (the count of layers applied), ``input`` -> 0."""
    return 0 if layer == "input" else int(layer.split("/")[0].split("_")[1]) + 1


def read_icl_internals(path: Path | str) -> ICLInternals | None:
    """The probe results of an icl-gd run folder (``None`` when it has not been probed)."""
    folder = icl_probes_folder(path)
    if not folder.has_results() or not folder.has_meta():
        return None
    t = folder.tables("icl_probe_seeds", "icl_token_probes",
                      order={"icl_token_probes": "layer, source, tokens, label, seed"})
    if not t["icl_probe_seeds"]:
        return None
    seeds = sorted(r["seed"] for r in t["icl_probe_seeds"])
    probes = []
    for (layer, source, tokens, label), rows in group_rows(t["icl_token_probes"],
                                                           ("layer", "source", "tokens", "label")).items():
        probes.append(TokenProbeRow(layer, source, tokens, label, over_seeds(rows, "r2", "ci_low", "ci_high"),
                                    float(sum(r["control"] for r in rows) / len(rows)),
                                    over_seeds(rows, "selectivity", "sel_low", "sel_high"),
                                    over_seeds(rows, "gain", "gain_low", "gain_high"),
                                    over_seeds(rows, "margin", "margin_low", "margin_high"),
                                    int(sum(r["n_test"] for r in rows))))
    layers = sorted({p.layer for p in probes if p.layer != "input"}, key=layer_number)
    m = ICLInternals(seeds, layers, probes)
    for layer in layers:
        for tokens in ("query", "context"):
            m.readings[(layer, tokens)] = held_label(m, layer, tokens)
    m.sentences = reading_sentences(m)
    return m


def untrained_gain(m: ICLInternals, layer: str, tokens: str, label: str) -> float:
    """The untrained transformer's gain for the label (0 when absent or below 0: a floor, never a lower bar)."""
    u = m.row(layer, "random-init", tokens, label)
    return max(u.gain.mean, 0.0) if u is not None and math.isfinite(u.gain.mean) else 0.0


def wrote(m: ICLInternals, layer: str, tokens: str, label: str) -> bool:
    """The layer wrote the label: its gain over the input is clearly above an untrained transformer's."""
    p = m.row(layer, "trained", tokens, label)
    return p is not None and math.isfinite(p.gain.low) and p.gain.low > untrained_gain(m, layer, tokens, label) + GAIN


def held_label(m: ICLInternals, layer: str, tokens: str) -> str | None:
    """The algorithm label the layer wrote into these tokens (module docstring), or None."""
    for label in m.labels():
        if label == TARGET:
            continue
        p = m.row(layer, "trained", tokens, label)
        if p is None or not math.isfinite(p.margin.low) or p.margin.low <= 0:
            continue
        if wrote(m, layer, tokens, label):
            return label
    return None


def _name(label: str) -> str:
    if label.startswith("gd-"):
        k = int(label.split("-")[1])
        return f"{k} step{'s' if k > 1 else ''} of gradient descent"
    return {"least-squares": "least squares", "target": "the true function w.x"}.get(label, label)


def _where(tokens: str) -> str:
    return "the query token" if tokens == "query" else "the context tokens"


def _what(tokens: str, label: str) -> str:
    plural = label.startswith("gd-") and int(label.split("-")[1]) > 1
    return (f"the prediction of {_name(label)}" if tokens == "query" else
            f"what {_name(label)} predict{'' if plural else 's'} at each token's own x_i")


def reading_sentences(m: ICLInternals) -> list[str]:
    """One sentence per probed layer and token kind (module docstring)."""
    out = []
    algos = [lab for lab in m.labels() if lab != TARGET]
    for layer in m.layers:
        for tokens in ("query", "context"):
            one = tokens == "query"
            head = f"After layer {layer_number(layer)}, {_where(tokens)}"
            rows = [(lab, m.row(layer, "trained", tokens, lab)) for lab in algos]
            rows = [(lab, r) for lab, r in rows if r is not None and math.isfinite(r.r2.mean)]
            if not rows:
                continue
            held = m.readings.get((layer, tokens))
            if held is not None:
                p, u, i = (m.row(layer, "trained", tokens, held), m.row(layer, "random-init", tokens, held),
                           m.row("input", "input", tokens, held))
                strong = math.isfinite(p.r2.low) and p.r2.low >= FULL
                if strong:
                    verb = "holds" if one else "hold"
                else:
                    verb = f"come{'s' if one else ''} closest to, but only partly hold{'s' if one else ''},"
                others = ", ".join(f"{lab} {r.gain.mean:.2f}" for lab, r in rows if lab != held)
                text = (f"{head} {verb} {_what(tokens, held)}: R² {p.r2.text()} from a linear probe of the residual "
                        f"stream beside the input, gain over the input alone {p.gain.text()} (input alone "
                        f"{_num(i)}, an untrained transformer {_num(u)}; control task {p.control:.2f}), ahead of "
                        f"the next algorithm by {p.margin.text()} in relative gain (the others' gains: {others})")
                n = layer_number(layer)
                previous = next((x for x in m.layers if layer_number(x) == n - 1), None)
                before = m.readings.get((previous, tokens)) if previous is not None else None
                if not one and held == gd_name(n) and strong:
                    text += (f": after {n} layer{'s' if n > 1 else ''} the context holds the fit of {n} GD "
                             f"step{'s' if n > 1 else ''}, as in von Oswald et al.'s (2023) construction where every "
                             "layer takes one GD step on the context")
                elif before == held:
                    text += f" (as after layer {n - 1}: this layer did not rewrite it into another algorithm's)"
                out.append(text + ".")
                continue
            written = [(lab, r) for lab, r in rows if wrote(m, layer, tokens, lab)]
            if written:  # something was written, but no algorithm's margin clears 0
                best_lab, best = max(written, key=lambda t: (math.isfinite(t[1].margin.mean),
                                                             t[1].margin.mean if math.isfinite(t[1].margin.mean)
                                                             else t[1].gain.mean))
                others = ", ".join(lab for lab, _ in written if lab != best_lab) or "the other references"
                out.append(f"{head} {'holds' if one else 'hold'} a prediction the probes cannot attribute to one "
                           f"algorithm: {best_lab} (gain over the input {best.gain.text()}) is not clearly ahead of "
                           f"{others} (margin {best.margin.text()}).")
                continue
            best_lab, best = max(rows, key=lambda t: t[1].gain.mean if math.isfinite(t[1].gain.mean) else -math.inf)
            if math.isfinite(best.gain.low) and best.gain.low > GAIN:
                out.append(f"{head} gain{'s' if one else ''} {best_lab}'s prediction over the input "
                           f"({best.gain.text()}), but not clearly more than an untrained transformer of the same "
                           f"architecture does ({untrained_gain(m, layer, tokens, best_lab):.2f}), so the probes name "
                           "no algorithm.")
            else:
                i = m.row("input", "input", tokens, best_lab)
                out.append(f"{head} {'carries' if one else 'carry'} no algorithm's prediction beyond what "
                           f"{'it' if one else 'they'} held before the first layer (best: {best_lab}, R² "
                           f"{best.r2.text()}, gain over the input {best.gain.text()}; input alone {_num(i)}).")
    return out


def _num(row) -> str:
    return f"{row.r2.mean:.2f}" if row is not None and math.isfinite(row.r2.mean) else "n/a"
