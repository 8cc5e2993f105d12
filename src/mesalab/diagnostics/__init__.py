"""Diagnostics: pure functions of (model or policy, task) returning result pytrees."""

from mesalab.diagnostics.planted import bfs_agent, lookup_table_agent, planted_agents, random_agent
from mesalab.diagnostics.policies import Policy, model_policy
from mesalab.diagnostics.evaluation import Episodes, SplitSummary, evaluate, evaluation_levels, summarise
from mesalab.diagnostics.verdict import Verdict, classify

__all__ = ["Episodes", "Policy", "SplitSummary", "Verdict", "bfs_agent", "classify", "evaluate",
           "evaluation_levels", "lookup_table_agent", "model_policy", "planted_agents", "random_agent",
           "summarise"]
