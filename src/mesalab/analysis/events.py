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
        """``"at test the seeds opened 0.97 [0.95, 0.99] of the chests they could, ..."`` (mean over seeds, 95% CI
        over seeds)."""
        words = {"chests opened": "of the chests they could open", "keys collected": "of the keys",
                 "spare keys collected": "of the spare keys (keys no chest can use)"}
        verbs = {"chests opened": "opened", "keys collected": "collected", "spare keys collected": "collected"}
        parts = []
        for e in self.events:
            c = self.cells.get((split, e))
            if c is not None and not math.isnan(c.mean):
                parts.append(f"{verbs.get(e, e)} {c.mean:.2f} [{c.ci_low:.2f}, {c.ci_high:.2f}] {words.get(e, '')}".strip())
        seeds = max((c.n_seeds for c in self.cells.values()), default=0)
        who = "the seed" if seeds == 1 else f"the {seeds} seeds"
        return f"On {split} levels {who} " + ", ".join(parts) + " (mean over seeds, 95% CI)."


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
