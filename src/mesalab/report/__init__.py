"""Self-contained HTML reports of runs."""

from mesalab.report.build import build_report

__all__ = ["build_report"]
