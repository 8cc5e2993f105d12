"""Event rates across the seeds of a run (keys-chests: chests opened, keys collected, spare keys collected), read
from the ``event_rates`` table (:func:`mesalab.diagnostics.keys_chests.evaluation.event_rates` per seed and split)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class EventCell:
    split: str
    event: str
    mean: float  # mean over seeds of each seed's rate (nan: nothing possible on this split)
    ci_low: float  # 95% percentile bootstrap over seeds; one seed: its own interval (levels resampled)
    ci_high: float
    n_seeds: int
    count: int  # events, summed over seeds
    possible: int


@dataclass
class EventSummary:
    splits: list[str]
    events: list[str]
    cells: dict  # (split, event) -> EventCell

    def sentence(self, split: str = "test") -> str:
        """``"On test levels the 4 seeds opened 0.97 [0.95, 0.99] of the chests they could, collected 0.40 [0.35,
        0.46] of the keys and 0.12 [0.05, 0.20] of the spare keys (keys no chest can use) (mean over seeds, 95% CI
        over seeds)."``"""
        seeds = max((c.n_seeds for c in self.cells.values()), default=0)
        one = seeds == 1

        def cell(e):
            c = self.cells.get((split, e))
            return None if c is None or math.isnan(c.mean) else f"{c.mean:.2f} [{c.ci_low:.2f}, {c.ci_high:.2f}]"

        parts = []
        if cell("chests opened"):
            parts.append(f"opened {cell('chests opened')} of the chests {'it' if one else 'they'} could")
        keys = [f"{cell(e)} of the {w}" for e, w in (("keys collected", "keys"),
                                                    ("spare keys collected", "spare keys (keys no chest can use)"))
                if cell(e)]
        if keys:
            parts.append("collected " + " and ".join(keys))
        who = "the seed" if one else f"the {seeds} seeds"
        ci = "95% CI over levels" if one else "mean over seeds, 95% CI over seeds"
        return f"On {split} levels {who} " + ", ".join(parts) + f" ({ci})."


def event_summary(rows: list[dict]) -> EventSummary | None:
    """The cross-seed summary of the ``event_rates`` rows (``None`` when there are none: a task without events)."""
    if not rows:
        return None
    from mesalab.diagnostics.stats import bootstrap_mean_ci

    splits = list(dict.fromkeys(r["split"] for r in sorted(rows, key=lambda r: r["split"] != "train")))
    events = list(dict.fromkeys(r["event"] for r in rows))
    cells = {}
    for split in splits:
        for event in events:
            rs = [r for r in rows if (r["split"], r["event"]) == (split, event)]
            defined = [r for r in rs if r["possible"] > 0]
            count, possible = sum(r["count"] for r in rs), sum(r["possible"] for r in rs)
            if not defined:
                mean = lo = hi = float("nan")
            elif len(defined) == 1:
                mean, lo, hi = defined[0]["rate"], defined[0]["ci_low"], defined[0]["ci_high"]
            else:
                mean, lo, hi = bootstrap_mean_ci([r["rate"] for r in defined])
            cells[(split, event)] = EventCell(split, event, float(mean), float(lo), float(hi), len(defined), count,
                                              possible)
    return EventSummary(splits, events, cells)
