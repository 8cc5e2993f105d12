"""Experiments: named presets that sweep a condition of mesa-optimization over seeds, with statistics.

``run_sweep(preset, seeds, out)`` runs (or resumes) a preset; ``analyse_sweep(out)`` gives the dial curves
with bootstrap CIs and one verdict per hypothesis; ``PRESETS`` lists them (``toy-model`` is analytic:
:mod:`mesalab.experiments.toy_model`). Imports here stay light: worker processes import this package before
pinning themselves to a core, and JAX must not start before that.
"""

from mesalab.experiments.presets import PRESETS, Dial, EvalPlan, Hypothesis, Preset, get_preset, preset_names


def run_sweep(*args, **kwargs):
    from mesalab.experiments.sweep import run_sweep as _run_sweep

    return _run_sweep(*args, **kwargs)


def analyse_sweep(*args, **kwargs):
    from mesalab.experiments.sweep import analyse_sweep as _analyse_sweep

    return _analyse_sweep(*args, **kwargs)


__all__ = ["PRESETS", "Dial", "EvalPlan", "Hypothesis", "Preset", "analyse_sweep", "get_preset", "preset_names",
           "run_sweep"]
