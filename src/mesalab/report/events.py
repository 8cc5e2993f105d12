"""The event-rate table of a run (keys-chests): rendered for the terminal and the HTML report from the same
:class:`mesalab.analysis.events.EventSummary`."""

from __future__ import annotations

import math

NOTE = ("Each cell: events over what the levels made possible, mean over seeds with a 95% percentile-bootstrap "
        "interval over seeds (one seed: its own interval, levels resampled). Chests opened: of the chests each "
        "level can open (min(keys, chests)); keys collected: of the keys on the level; spare keys collected: of the "
        "keys no chest can use (keys beyond min(keys, chests): none in training, so '-' there), a key counting as "
        "spare once the agent holds more than the level's chests can take. A model pseudo-aligned toward 'keys' "
        "collects the spare keys at test and opens the chest late or never; a robust one takes the key it needs.")


def _cell(c) -> str:
    if c is None or math.isnan(c.mean):
        return "-"
    return f"{c.mean:.2f} [{c.ci_low:.2f}, {c.ci_high:.2f}]"


def event_rows(summary) -> list[dict]:
    return [{"name": e, "cells": [_cell(summary.cells.get((s, e))) for s in summary.splits]} for e in summary.events]


def events_section(summary) -> dict:
    """What the HTML report's event section shows."""
    return {"sentence": summary.sentence("test") if "test" in summary.splits else "", "splits": summary.splits,
            "rows": event_rows(summary), "note": NOTE}


def events_table(summary):
    """A Rich table of the event rates per split."""
    from rich.table import Table

    table = Table(title="Keys and chests: events per split (mean over seeds, 95% CI)")
    table.add_column("event (of what was possible)")
    for s in summary.splits:
        table.add_column(s)
    for r in event_rows(summary):
        table.add_row(r["name"], *r["cells"])
    return table
