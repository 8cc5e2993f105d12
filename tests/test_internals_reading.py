"""The reading of ``mesalab probe`` results (``internals_sentences``) is right on hand-built summaries whose
meaning is known: which candidate is decodable, which steering vector is used, which layer retargets, and whether
that internal evidence agrees with the behavioral objective fitted on test levels.

No training and no JAX compute: every ``InternalsSummary`` is built from the dataclasses directly.
"""

import math
import os
import subprocess
import sys
import textwrap

import pytest

from mesalab.analysis.internals import Estimate, InternalsSummary, ProbeRow, RetargetRow, SteerRow, internals_sentences
from mesalab.tasks import get_task

NAN = math.nan


@pytest.fixture(scope="module")
def corner_goal():
    return get_task("corner-goal")  # candidates goal, corner; base goal


@pytest.fixture(scope="module")
def red_door_task():
    return get_task("red-door")  # candidates door, red; base door


# -- factories -------------------------------------------------------------------------------------------------------

def est(mean, low=None, high=None, n=5):
    """An estimate; ``low``/``high`` default to the mean (a degenerate interval)."""
    return Estimate(mean, mean if low is None else low, mean if high is None else high, n)


def probe(candidate, layer="conv_1", value=(0.9, 0.85, 0.95), sel=(0.4, 0.3, 0.5), gain=(0.5, 0.4, 0.6),
          random_init=0.4, control=0.5):
    """A ``target:<candidate>`` probe row; ``sel=None`` means no control task (NaN selectivity)."""
    sel_est = est(NAN, NAN, NAN, 0) if sel is None else est(*sel)
    return ProbeRow(layer, f"target:{candidate}", "target", "top1", est(*value), sel_est, est(random_init),
                    est(NAN, NAN, NAN, 0) if sel is None else est(0.0), est(*gain), control, 0.01, 500)


DECODABLE = dict(sel=(0.4, 0.3, 0.5), gain=(0.5, 0.4, 0.6))
NOT_DECODABLE = dict(sel=(0.04, 0.01, 0.07), gain=(0.5, 0.4, 0.6))


def steer(candidate, change=(-0.4, -0.5, -0.3), layer="conv_1", split="test", before=0.8):
    """The ``candidate`` vector's effect on the pursuit of ``candidate``."""
    m, lo, hi = change
    return SteerRow(layer, candidate, split, candidate, est(before), est(before + m), est(m, lo, hi))


USED = (-0.4, -0.5, -0.3)  # CI entirely below 0
NOT_USED = (-0.05, -0.15, 0.05)  # CI includes 0


def retarget(layer, strength, probe_rate, random_rate, none=0.05, probe="goal", split="test", n=100):
    """The probe, random and no-write rows of one (layer, strength); rates are ``(mean, low, high)``."""
    rows = []
    for direction, (m, lo, hi) in (("probe", probe_rate), ("random", random_rate), ("none", (none, none, none))):
        rows.append(RetargetRow(layer, probe, split, direction, float(strength), est(m, lo, hi),
                                round(m * n), n))
    return rows


def summary(probes=(), steering=(), retargeting=()):
    return InternalsSummary([0, 1, 2, 3, 4], {}, list(probes), list(steering), list(retargeting))


def behav(*dominants, split="test"):
    return [{"split": split, "seed": i, "dominant": d} for i, d in enumerate(dominants)]


def goal_used_summary():
    """Goal decodable and its steering vector used; corner neither decodable nor used."""
    return summary(probes=[probe("goal", **DECODABLE), probe("corner", **NOT_DECODABLE)],
                   steering=[steer("goal", USED), steer("corner", NOT_USED)])


def sentence_with(sentences, phrase):
    hits = [s for s in sentences if phrase in s]
    assert len(hits) == 1, (phrase, sentences)
    return hits[0]


# -- the verdicts ------------------------------------------------------------------------------------------------------

def test_agree_when_goal_is_used_and_goal_dominates(corner_goal):
    sentences, agreement = internals_sentences(goal_used_summary(), corner_goal, behav(*["goal"] * 5))
    assert agreement.startswith("Agree")
    assert "points at goal" in agreement and "goal (5/5 seeds)" in agreement
    assert "corner" not in agreement
    goal_probe = sentence_with(sentences, "Where the goal target is")
    assert "decodable beyond what an untrained network" in goal_probe
    assert "not decodable beyond the controls" in sentence_with(sentences, "Where the corner target is")
    goal_steer = sentence_with(sentences, "Subtracting the goal steering vector")
    assert "the representation is used" in goal_steer and "Mini et al." in goal_steer  # goal is the base objective
    assert "no reliable drop" in sentence_with(sentences, "Subtracting the corner steering vector")


def test_tie_read_in_either_order_is_one_reading(corner_goal):
    rows = behav(*["goal~corner:top-right"] * 3, *["corner:top-right~goal"] * 2)
    _, agreement = internals_sentences(goal_used_summary(), corner_goal, rows)
    assert agreement.startswith("Consistent but not decisive")
    assert "(5/5 seeds)" in agreement
    assert "points at goal" in agreement
    assert "ties it with corner" in agreement


def test_disagree_when_door_is_used_but_red_dominates(red_door_task):
    s = summary(probes=[probe("door", **DECODABLE), probe("red", **NOT_DECODABLE)],
                steering=[steer("door", USED), steer("red", NOT_USED)])
    _, agreement = internals_sentences(s, red_door_task, behav(*["red"] * 4))
    assert agreement.startswith("Disagree")
    assert "representation of door" in agreement
    assert "best explained by red (4/4 seeds)" in agreement


def test_nothing_used_names_only_decodable_candidates(corner_goal):
    s = summary(probes=[probe("goal", **DECODABLE),
                        probe("corner", sel=(0.4, 0.3, 0.5), gain=(0.04, 0.02, 0.06))],  # selective, no gain
                steering=[steer("goal", NOT_USED), steer("corner", NOT_USED)],
                retargeting=retarget("conv_1", 10, (0.3, 0.2, 0.4), (0.25, 0.15, 0.35)))  # probe CI overlaps random
    sentences, agreement = internals_sentences(s, corner_goal, behav(*["goal"] * 5))
    assert agreement.startswith("No candidate's representation")
    assert "decodable: goal." in agreement
    assert "goal (5/5 seeds)" in agreement
    assert "no retargeting beyond the random control" in sentence_with(sentences, "Writing the goal probe's direction")


def test_nothing_decodable_says_none(corner_goal):
    s = summary(probes=[probe("goal", **NOT_DECODABLE), probe("corner", **NOT_DECODABLE)],
                steering=[steer("goal", NOT_USED)])
    _, agreement = internals_sentences(s, corner_goal, behav("corner"))
    assert agreement.startswith("No candidate's representation")
    assert "decodable: none." in agreement


def test_decodable_needs_both_lows_strictly_above_threshold():
    assert probe("goal", **DECODABLE).decodable
    assert not probe("goal", sel=(0.3, 0.05, 0.5), gain=(0.5, 0.4, 0.6)).decodable  # exactly at the threshold
    assert not probe("goal", sel=(0.3, 0.2, 0.5), gain=(0.3, 0.04, 0.5)).decodable
    assert not probe("goal", sel=None).decodable


def test_no_behavioral_rows_means_not_fitted(corner_goal):
    _, agreement = internals_sentences(goal_used_summary(), corner_goal, [])
    assert agreement.startswith("The behavioral objective has not been fitted")


TIE_SCRIPT = textwrap.dedent("""
    from types import SimpleNamespace as NS
    from mesalab.analysis.internals import Estimate, InternalsSummary, SteerRow, internals_sentences
    e = lambda m, lo, hi: Estimate(m, lo, hi, 4)
    task = NS(candidate_objectives=[NS(name="goal"), NS(name="corner")], base_objective=NS(name="goal"))
    s = InternalsSummary([0, 1, 2, 3], {}, [], [SteerRow("conv_1", "goal", "test", "goal", e(0.8, 0.8, 0.8),
                                                         e(0.4, 0.4, 0.4), e(-0.4, -0.5, -0.3))], [])
    rows = [{"split": "test", "dominant": d} for d in ("goal", "goal", "corner", "corner")]
    print(internals_sentences(s, task, rows)[1].split(":")[0])
""")


def test_verdict_on_an_even_split_does_not_depend_on_the_hash_seed():
    """2 seeds 'goal', 2 seeds 'corner', goal used: the verdict must be the same in every process."""
    procs = [subprocess.Popen([sys.executable, "-c", TIE_SCRIPT], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONHASHSEED": str(h)}) for h in (0, 2)]
    verdicts = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(verdicts) == 1, verdicts
    assert verdicts.pop().startswith("Undecided"), "an even split names no single behavioral objective"


def test_train_rows_are_ignored(corner_goal):
    rows = behav(*["corner"] * 6, split="train") + behav(*["goal"] * 3)
    _, agreement = internals_sentences(goal_used_summary(), corner_goal, rows)
    assert agreement.startswith("Agree")
    assert "goal (3/3 seeds)" in agreement
    _, agreement = internals_sentences(goal_used_summary(), corner_goal, behav(*["goal"] * 3, split="train"))
    assert agreement.startswith("The behavioral objective has not been fitted")


# -- retargeting -------------------------------------------------------------------------------------------------------

def test_retargeting_sentence_is_about_the_internal_layer(corner_goal):
    rows = (retarget("input", 2, (0.6, 0.5, 0.7), (0.1, 0.05, 0.15))
            + retarget("input", 10, (0.95, 0.9, 0.98), (0.1, 0.05, 0.15))
            + retarget("conv_1", 2, (0.12, 0.06, 0.18), (0.1, 0.05, 0.15))
            + retarget("conv_1", 10, (0.15, 0.08, 0.22), (0.11, 0.05, 0.17)))
    s = summary(retargeting=rows)
    assert s.best_retarget() == ("conv_1", 10.0)
    assert s.best_retarget(internal=False) == ("input", 10.0)
    sentences, agreement = internals_sentences(s, corner_goal, behav(*["goal"] * 5))
    main = sentence_with(sentences, "Writing the goal probe's direction")
    assert "of conv_1 sends" in main and "input" not in main
    assert "no retargeting beyond the random control" in main
    ref = sentence_with(sentences, "For reference")
    assert "input layer" in ref and "10 x gap" in ref and "0.95" in ref
    assert agreement.startswith("No candidate's representation")  # the input's retargeting is not evidence


def test_best_retarget_maximises_probe_minus_random():
    rows = (retarget("conv_1", 2, (0.30, 0.2, 0.4), (0.10, 0.05, 0.15))  # margin 0.20
            + retarget("conv_1", 10, (0.50, 0.4, 0.6), (0.40, 0.3, 0.5))  # higher rate, margin 0.10
            + retarget("conv_2", 10, (0.35, 0.25, 0.45), (0.20, 0.1, 0.3)))  # margin 0.15
    s = summary(retargeting=rows)
    assert s.best_retarget() == ("conv_1", 2.0)
    assert s.best_retarget(internal=False) is None
    assert s.retarget("conv_1", "probe").strength == 10.0  # default: the largest strength written
    assert s.retarget("conv_1", "probe", strength=2).rate.mean == 0.30
    assert s.retarget("conv_1", "probe", split="train") is None


def test_internal_layer_that_beats_random_acts_as_a_goal(corner_goal):
    rows = (retarget("input", 10, (0.95, 0.9, 0.98), (0.1, 0.05, 0.15))
            + retarget("conv_1", 2, (0.15, 0.08, 0.22), (0.1, 0.05, 0.15))
            + retarget("conv_1", 10, (0.7, 0.6, 0.8), (0.12, 0.06, 0.18)))  # probe low 0.6 > random high 0.18
    s = summary(probes=[probe("goal", **DECODABLE)], steering=[steer("goal", NOT_USED)], retargeting=rows)
    assert s.best_retarget() == ("conv_1", 10.0)
    sentences, agreement = internals_sentences(s, corner_goal, behav(*["goal"] * 5))
    main = sentence_with(sentences, "Writing the goal probe's direction")
    assert "(10 x its projection gap)" in main and "of conv_1" in main
    assert "the probe direction acts as a goal" in main
    assert "(70/100)" in main
    # no steering vector is used, so retargeting alone is the internal evidence for the base objective
    assert agreement.startswith("Agree") and "points at goal" in agreement


# -- a target with no control task -------------------------------------------------------------------------------------

def test_target_at_the_same_cells_on_every_level(corner_goal):
    s = summary(probes=[probe("corner", layer="conv_0", sel=None, value=(0.99, 0.98, 1.0), gain=(0.3, 0.2, 0.4)),
                        probe("corner", layer="conv_1", sel=None, value=(0.97, 0.95, 0.99), gain=(0.3, 0.2, 0.4)),
                        probe("corner", layer="input", sel=None, value=(1.0, 1.0, 1.0), gain=(0.5, 0.4, 0.6))])
    assert s.best_probe("target:corner").layer == "conv_0"  # the most accurate non-input layer
    sentences, agreement = internals_sentences(s, corner_goal, behav(*["corner"] * 5))
    corner = sentence_with(sentences, "The corner target is at the same cells on every level")
    assert "best read at conv_0" in corner and "more than an untrained network" in corner
    assert "no more than" not in corner
    assert not any("decodable beyond" in x for x in sentences)
    assert agreement.startswith("No candidate's representation") and "decodable: none." in agreement


def test_same_cells_without_gain_says_no_more_than(corner_goal):
    s = summary(probes=[probe("corner", sel=None, gain=(0.02, -0.01, 0.05))])
    sentences, _ = internals_sentences(s, corner_goal, [])
    corner = sentence_with(sentences, "same cells on every level")
    assert "no more than an untrained network" in corner
    assert not any("decodable beyond" in x for x in sentences)


def test_best_probe_prefers_rows_with_a_control_task():
    s = summary(probes=[probe("goal", layer="conv_0", sel=(0.2, 0.1, 0.3)),
                        probe("goal", layer="conv_1", sel=(0.5, 0.4, 0.6)),
                        probe("goal", layer="conv_2", sel=None, value=(1.0, 1.0, 1.0)),
                        probe("goal", layer="input", sel=(0.9, 0.8, 1.0))])
    assert s.best_probe("target:goal").layer == "conv_1"
    assert s.best_probe("target:corner") is None


def test_own_steering_picks_the_largest_drop_on_test():
    s = summary(steering=[steer("goal", (-0.2, -0.3, -0.1), layer="conv_0"),
                          steer("goal", (-0.5, -0.6, -0.4), layer="conv_1"),
                          steer("goal", (-0.9, -1.0, -0.8), layer="conv_2", split="train")])
    assert s.own_steering("goal").layer == "conv_1"
    assert s.own_steering("goal", split="train").layer == "conv_2"
    assert s.own_steering("corner") is None


# -- several candidates used; aliases; selective but not beyond the random-initialised model -----------------------

def test_the_strongest_steering_effect_is_compared_and_an_alias_names_its_parts(red_door_task):
    """Door weakly used, red strongly used; IRL reads the alias 'key=red' (key and red identical on these levels):
    red is the candidate the reading names, and it is the strongest internal evidence."""
    s = summary(steering=[steer("door", (-0.06, -0.10, -0.03)), steer("red", (-0.38, -0.45, -0.32))])
    _, agreement = internals_sentences(s, red_door_task, behav(*["key=red"] * 5))
    assert agreement.startswith("Agree"), agreement
    assert "points at red (most strongly; also door)" in agreement
    # the other way round: the strongest internal evidence (door) is not what behaviour reads
    s = summary(steering=[steer("door", (-0.38, -0.45, -0.32)), steer("red", (-0.06, -0.10, -0.03))])
    _, agreement = internals_sentences(s, red_door_task, behav(*["key=red"] * 5))
    assert agreement.startswith("Consistent but not decisive"), agreement
    assert "strongest internal evidence points at door" in agreement and "whose red the model also" in agreement


def test_selective_but_no_more_than_random_init_is_said_so(corner_goal):
    s = summary(probes=[probe("goal", sel=(0.7, 0.5, 0.9), gain=(0.0, -0.1, 0.1))])
    sentences, _ = internals_sentences(s, corner_goal, [])
    line = sentence_with(sentences, "Where the goal target is")
    assert "selective (beyond the control task), but no more than an untrained network" in line
    assert "decodable beyond" not in line


def test_best_probe_prefers_a_layer_decodable_beyond_random_init():
    """conv_0 is slightly more selective but no better than random-init; conv_1 beats both controls."""
    s = summary(probes=[probe("door", layer="conv_0", sel=(0.71, 0.52, 0.89), gain=(0.0, -0.1, 0.1)),
                        probe("door", layer="conv_1", sel=(0.67, 0.6, 0.75), gain=(0.29, 0.2, 0.4))])
    assert s.best_probe("target:door").layer == "conv_1"
