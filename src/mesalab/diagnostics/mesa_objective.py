"""What the model represents as its goal, and does behaviour follow it: one seed's probes, steering and retargeting.

:func:`probe_model` records the model's activations on the test levels (with exact labels,
:mod:`mesalab.diagnostics.activations`), fits every probe of every chosen layer against a control task and a
random-initialised model of the same architecture on the same states (:mod:`mesalab.diagnostics.probes`), subtracts
each object candidate's steering vector at every non-input layer and writes the base objective's spatial probe
direction at chosen cells of every spatial layer (:mod:`mesalab.diagnostics.steering`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from mesalab.diagnostics.activations import (ActivationData, activation_shapes, activations_on, candidate_objectives,
                                             frame_for, record_data, spatial_layers)
from mesalab.diagnostics.probes import ProbeScore, probe_layer, spatial_label_maps
from mesalab.diagnostics.steering import (RETARGET_STRENGTHS, RetargetResult, SteeringEffect, projection_gap,
                                          retargeting, steering_effects)

HEADS = ("logits", "value")  # named outputs, not representations: never probed by default
PROBE_SPLIT = "test"  # where the probes are fitted and scored: the split whose candidates come apart


class ModelInternals(NamedTuple):
    scores: list[ProbeScore]
    steering: list[SteeringEffect]
    retargeting: list[RetargetResult]
    data: ActivationData
    activations: dict  # layer -> float32[n, S, ...] of the trained model


def default_layers(shapes: dict) -> list[str]:
    """Every named activation but the heads and the scalars (a tabular model's slot index)."""
    return [k for k, shape in shapes.items() if k not in HEADS and len(shape) > 0]


def check_layers(shapes: dict, layers) -> list[str]:
    """``layers`` (default: :func:`default_layers`), each one the model names (a ``ValueError`` naming the valid
    ones otherwise)."""
    if not layers:
        return default_layers(shapes)
    unknown = [x for x in layers if x not in shapes]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; this model's activations are: {', '.join(shapes)}")
    return list(layers)


def probe_model(task, model, random_model, pools: dict, key, layers=None, steps: int = 8, greedy: bool = False,
                ticks=None, strengths=RETARGET_STRENGTHS, steer: bool = True, retarget: bool = True,
                seed: int = 0) -> ModelInternals:
    """Probes, steering and retargeting of one model (``pools``: split -> levels; probes use ``pools["test"]``,
    steering every split but train, retargeting the test split)."""
    mode = task.obs_mode
    obs_shape = task.env.obs_shape
    shapes = activation_shapes(model, obs_shape, ticks)
    layers = check_layers(shapes, layers)
    k_rec, k_steer, k_ret = jax.random.split(key, 3)
    data = record_data(task, model, pools[PROBE_SPLIT], k_rec, steps, greedy, ticks)
    acts = activations_on(model, data.obs, layers, ticks)
    rand = activations_on(random_model, data.obs, layers, ticks)
    spatial = set(spatial_layers({k: shapes[k] for k in layers}))
    scores, weights = [], {}
    for layer in layers:
        frame = frame_for(mode, obs_shape, shapes[layer][:2]) if layer in spatial else None
        s, w = probe_layer(data, acts[layer], layer, frame, rand[layer], seed=seed)
        scores += s
        weights.update({(x.layer, x.label): x for x in w})
    objectives = candidate_objectives(task)
    object_candidates = [o for o in task.candidate_objectives if getattr(o, "needs_object", True)]
    steering = []
    # steering on the test and probe splits: on train the candidates coincide, so a vector cannot tell them apart
    steer_pools = {s: p for s, p in pools.items() if s != "train"}
    if steer and object_candidates:
        for layer in layers:
            if layer == "input":
                continue
            steering += steering_effects(task, model, steer_pools, k_steer, layer, object_candidates, objectives,
                                         greedy=greedy, ticks=ticks, seed=seed)
    retargets = []
    base_label = f"target:{task.base_objective.name}"
    if retarget:
        c = data.candidates.index(task.base_objective.name)
        for layer in layers:
            probe = weights.get((layer, base_label))
            if layer not in spatial or probe is None:
                continue
            frame = frame_for(mode, obs_shape, shapes[layer][:2])
            maps = spatial_label_maps(data, c, np.arange(data.alive.shape[0]), frame)
            gap = projection_gap(acts[layer], maps, data.alive, probe.w)
            retargets += retargeting(task, model, {PROBE_SPLIT: pools[PROBE_SPLIT]}, k_ret, layer, base_label, frame,
                                     probe.w, gap, strengths, greedy, ticks)
    return ModelInternals(scores, steering, retargets, data, acts)


def probe_metrics(task, model, random_model, test_pool, key, steps: int = 8, greedy: bool = False, ticks=None,
                  seed: int = 0) -> dict[str, float]:
    """Sweep-cell metrics from the probes alone (no steering, no retargeting) on ``test_pool``: for every probe
    label L (``target:C``, ``distance:C``, ``bfs_action:C``, ``ends_on``), over the model's layers other than the
    input, the largest held-out selectivity ``probe/L/selectivity``, that layer's score ``probe/L/value`` and its
    score minus the random-initialised model's ``probe/L/gain_over_random``. The maximum over layers is the same
    selection in every cell, so a trend along a dial compares like with like (its level is optimistic)."""
    res = probe_model(task, model, random_model, {PROBE_SPLIT: test_pool}, key, None, steps, greedy, ticks,
                      steer=False, retarget=False, seed=seed)
    def rank(s: ProbeScore) -> float:  # selectivity; a fixed target (no control task): the gain over random-init
        r = s.selectivity if np.isfinite(s.selectivity) else s.value - s.random_init
        return float(r) if np.isfinite(r) else -np.inf

    best: dict[str, ProbeScore] = {}
    for s in res.scores:
        if s.layer != "input" and (s.label not in best or rank(s) > rank(best[s.label])):
            best[s.label] = s
    out: dict[str, float] = {}
    for label, s in best.items():
        out[f"probe/{label}/selectivity"] = float(s.selectivity)
        out[f"probe/{label}/value"] = float(s.value)
        out[f"probe/{label}/gain_over_random"] = float(s.value - s.random_init)
    return out
