"""Experiment designs: named presets that sweep a condition of mesa-optimization over seeds
(:mod:`mesalab.experiments.presets`), how their cells are batched (:mod:`~mesalab.experiments.plan`), the
statistics along a dial (:mod:`~mesalab.experiments.stats`) and the analytic toy model
(:mod:`~mesalab.experiments.toy_model`). Running them is the job of :mod:`mesalab.studies` (``mesalab sweep``);
reading them back of :mod:`mesalab.analysis.sweep`. Imports here stay light (no JAX).
"""

from mesalab.experiments.presets import PRESETS, Dial, Hypothesis, Preset, get_preset, preset_names

__all__ = ["PRESETS", "Dial", "Hypothesis", "Preset", "get_preset", "preset_names"]
