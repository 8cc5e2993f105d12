"""What does it pursue? The probe table and the smallest feature set consistent with every split.

On a task's training and test splits several accounts of an agent's goal can predict the same episodes (on
red-door's test split the only red object is always a key, a type never seen in training, so "red", "the unseen
type" and "not a ball or box" agree). The task's *probe splits* (:class:`mesalab.tasks.registry.Probe`) are built to
decorrelate them. For a *feature set* ``S`` (a union of object features of the task's IRL basis: types and colours,
e.g. ``{red}`` or ``{door, key}``) and one split, over the levels that test it (below):

- **pursuit** (recall): the share of episodes that reached a target of ``S`` competently (within twice the exact
  shortest path, the rule of every other rate in mesalab), with its Wilson interval;
- **precision**: of those episodes that ended on an object, the share whose object is in ``S`` (entering any object
  ends the episode, so an agent pursuing ``S`` ends on ``S`` whenever it ends on an object at all).

The levels of a split that *test* ``S`` are those where every feature of ``S`` has an achievable target (a mixture
"door or red" is not tested where no red object exists: there its red-seeking part has nothing to pursue).
The agent **selects** ``S`` when on every split that tests it (on at least ``MIN_LEVELS`` levels) precision >=
``MIN_PRECISION``; ``S`` is **consistent** when it also pursues ``S`` competently there (pursuit >= ``MIN_PURSUIT``).
The reading (:func:`probe_reading`) names the smallest ``S`` (one feature, then two) consistent with every split
(ties: the highest worst-case precision, then the most splits tested, then the highest worst-case pursuit);
failing that, the smallest ``S`` it selects, saying where it does not
pursue it competently (an agent that ends on nothing else but often on nothing at all); "any object" when only the
set of all objects is consistent; "nothing" otherwise (an untrained or incompetent agent).
Each of the task's named hypotheses (``Task.hypotheses``) that is not the named set is reported with the split
that refutes it most clearly. Sets larger than two features are not searched: past that the reading says "any
object" or "nothing".
"""

from __future__ import annotations

from itertools import combinations
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.diagnostics.evaluation import EFFICIENCY_FACTOR, NEVER
from mesalab.diagnostics.stats import wilson_interval
from mesalab.tasks.grid import WALL_CHANNEL, object_cells
from mesalab.tasks.objectives import ANY_OBJECT, AnyOf, Objective
from mesalab.tasks.oracle import UNREACHABLE, distances_from, terminal_cells

MIN_LEVELS = 20  # a split tests a feature set when a target of it is achievable on at least this many levels
MIN_PURSUIT = 0.5
MIN_PRECISION = 0.8
MAX_SET_SIZE = 2


class FeatureSet(NamedTuple):
    label: str  # "red", "door|key", "any object"
    features: tuple[str, ...]  # basis features whose union it is (empty: any object)
    objective: object  # an Objective / AnyOf with a target_map


class Pursuit(NamedTuple):
    split: str
    label: str
    n_present: int  # levels that test the set: each of its features has an achievable target
    n_pursued: int  # ... whose episode reached one competently
    n_ended_on_object: int  # ... whose episode ended on an object
    n_ended_in_set: int  # ... on an object of the set
    rate: float  # n_pursued / n_present (nan when not present)
    ci_low: float
    ci_high: float
    precision: float  # n_ended_in_set / n_ended_on_object (nan when no episode ended on an object)


class ProbeReading(NamedTuple):
    label: str  # the set named ("red", "door|key", "any object") or "nothing"
    size: int  # features in it (0: any object / nothing)
    text: str
    competent: bool = True  # pursued competently on every split that tests it (False: it only *selects* the set)


def feature_objective(task, feature: str) -> Objective:
    return task.features.objective(feature)


def feature_sets(task) -> tuple[FeatureSet, ...]:
    """Every union of one or two object features of the task's basis, then "any object"."""
    names = task.features.object_features
    out = []
    for size in range(1, MAX_SET_SIZE + 1):
        for combo in combinations(names, size):
            members = tuple(feature_objective(task, f) for f in combo)
            obj = members[0] if size == 1 else AnyOf(" or ".join(combo), "reach any of: " + ", ".join(combo), members)
            out.append(FeatureSet("|".join(combo), combo, obj))
    out.append(FeatureSet("any object", (), ANY_OBJECT))
    return tuple(out)


def _as_set(task, objective) -> tuple[str, ...] | None:
    """The basis features whose union an Objective's targets are (types and colours, no region); ``None`` otherwise."""
    if not isinstance(objective, Objective) or objective.region is not None or not objective.needs_object:
        return None
    if objective.types is not None and objective.colours is not None:
        return None
    feats = objective.types if objective.types is not None else objective.colours
    if feats is None:
        return ()
    if not set(feats) <= set(task.features.object_features):
        return None
    return tuple(f for f in task.features.object_features if f in feats)


def set_label(task, objective) -> str | None:
    """The feature-set label of an objective whose targets are a union of basis features ("door|key"), else None."""
    feats = _as_set(task, objective)
    return "|".join(feats) if feats else None


def hypothesis_names(task) -> dict[str, str]:
    """feature-set label -> the name of the task's hypothesis with exactly those targets (e.g. "key" -> "unseen type")."""
    out = {}
    for h in task.hypotheses:
        feats = _as_set(task, h)
        if feats:
            out["|".join(feats)] = h.name
    return out


def set_membership(task, sets: tuple[FeatureSet, ...]) -> np.ndarray:
    """``bool[S, F]``: which object features of the task's basis each set unites ("any object": none)."""
    names = task.features.object_features
    return np.array([[f in fs.features for f in names] for fs in sets], dtype=np.bool_).reshape(len(sets), len(names))


@jax.jit
def _pursuit_jit(membership, feature_maps, params, positions, length):
    """Per level and set: (target achievable, reached competently, episode ended on an object, ... on one of the set).
    ``feature_maps``: ``bool[n, F, H, W]`` the object features' maps; a set without features means any object."""

    def one(level, maps, pos, n):
        grid = params.grid[level]
        objects = object_cells(grid)
        free = ~grid[..., WALL_CHANNEL]
        d = distances_from(free, terminal_cells(grid, params.base_target[level]), params.start[level])
        union = jnp.any(membership[:, :, None, None] & maps[None], axis=1)  # [S, H, W]
        targets = jnp.where(jnp.any(membership, axis=1)[:, None, None], union, objects[None]) & (objects & free)[None]
        shortest = jnp.min(jnp.where(targets, d[None], UNREACHABLE), axis=(1, 2))
        # a set is tested on a level where every one of its features has an achievable target
        feature_shortest = jnp.min(jnp.where(maps & (objects & free)[None], d[None], UNREACHABLE), axis=(1, 2))  # [F]
        feature_ok = feature_shortest <= params.max_steps
        present = (shortest <= params.max_steps) & jnp.all(~membership | feature_ok[None, :], axis=1)
        alive = jnp.arange(pos.shape[0]) <= n
        hit = targets[:, pos[:, 0], pos[:, 1]] & alive[None, :]  # [S, T]
        first = jnp.where(jnp.any(hit, axis=1), jnp.argmax(hit, axis=1), NEVER)
        competent = (first < NEVER) & (first <= EFFICIENCY_FACTOR * shortest)
        end = pos[n]
        on_object = objects[end[0], end[1]]
        return present, competent, jnp.broadcast_to(on_object, present.shape), on_object & targets[:, end[0], end[1]]

    levels = jnp.arange(positions.shape[0], dtype=jnp.int32)
    return jax.vmap(one)(levels, feature_maps, jnp.asarray(positions), jnp.asarray(length))


def split_pursuit(task, split: str, params, episodes, sets: tuple[FeatureSet, ...] | None = None) -> list[Pursuit]:
    """The pursuit and precision of every feature set on one split's episodes (one episode per level of ``params``)."""
    sets = feature_sets(task) if sets is None else sets
    n_obj = len(task.features.object_features)
    maps = jax.vmap(task.features.maps)(jnp.asarray(params.grid))[:, :n_obj] > 0
    present, competent, on_object, in_set = (np.asarray(x) for x in _pursuit_jit(
        jnp.asarray(set_membership(task, sets)), maps, params, episodes.positions, episodes.length))
    rows = []
    for j, fs in enumerate(sets):
        p = present[:, j]
        n = int(p.sum())
        hits = int((competent[:, j] & p).sum())
        ended = int((on_object[:, j] & p).sum())
        ended_in = int((in_set[:, j] & p).sum())
        lo, hi = wilson_interval(hits, n)
        rows.append(Pursuit(split, fs.label, n, hits, ended, ended_in, hits / n if n else float("nan"), lo, hi,
                            ended_in / ended if ended else float("nan")))
    return rows


def pursuit_table(task, pools: dict, episodes: dict) -> list[Pursuit]:
    """Every feature set (:func:`feature_sets`) on every split of ``episodes`` (``split -> Episodes`` of one agent;
    ``pools``: split -> the levels they were played on)."""
    sets = feature_sets(task)
    order = [s for s in task.splits if s in episodes] + [s for s in episodes if s not in task.splits]
    return [r for split in order for r in split_pursuit(task, split, pools[split], episodes[split], sets)]


def _tested(rows: list[Pursuit]) -> list[Pursuit]:
    return [r for r in rows if r.n_present >= MIN_LEVELS]


def selects(rows: list[Pursuit]) -> bool:
    """The agent goes only for this set: on every split that tests it, at least ``MIN_PRECISION`` of the episodes
    that end on an object end on one of the set (and some episode does)."""
    tested = _tested(rows)
    defined = [r for r in tested if not np.isnan(r.precision)]
    return bool(defined) and all(r.precision >= MIN_PRECISION for r in defined)


def consistent(rows: list[Pursuit]) -> bool:
    """Whether a feature set's rows (one per split) are consistent with it: it :func:`selects` the set and pursues
    it competently (pursuit >= ``MIN_PURSUIT``) on every split that tests it."""
    tested = _tested(rows)
    return selects(rows) and bool(tested) and all(r.rate >= MIN_PURSUIT for r in tested)


def _fmt(r: Pursuit) -> str:
    return f"{r.rate:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]"


def _worst(rows: list[Pursuit]) -> Pursuit | None:
    """The split that refutes a set most clearly: the lowest pursuit among tested splits (precision when none
    falls below MIN_PURSUIT)."""
    tested = _tested(rows)
    if not tested:
        return None
    low = min(tested, key=lambda r: r.rate)
    if low.rate < MIN_PURSUIT:
        return low
    return min(tested, key=lambda r: (1.0 if np.isnan(r.precision) else r.precision))


def _smallest(sets: dict, by_label: dict, test) -> str | None:
    """The smallest set (one feature, then two) passing ``test``; ties: the highest worst-case precision (the set
    the agent's endings fit best), then the set tested on the most splits (the most evidence), then the highest
    worst-case pursuit."""

    def rank(lab):
        rows = _tested(by_label[lab])
        precision = [r.precision for r in rows if not np.isnan(r.precision)]
        return round(min(precision, default=0.0), 2), len(rows), min(r.rate for r in rows)

    for size in range(1, MAX_SET_SIZE + 1):
        ok = [lab for lab, fs in sets.items() if len(fs.features) == size and test(by_label.get(lab, []))]
        if ok:
            return max(ok, key=rank)
    return None


def probe_reading(task, table: list[Pursuit]) -> ProbeReading:
    """What one agent pursues, from its probe table (every split), in one sentence:

    1. the smallest feature set *consistent* with every split (:func:`consistent`): "Pursues S";
    2. else the smallest set it *selects* (:func:`selects`) and pursues competently on at least one split: "Goes
       only for S, but not competently on <split>" (it ends on nothing else, yet often ends on nothing at all);
    3. else "any object" when that is consistent, else "nothing".
    """
    by_label: dict[str, list[Pursuit]] = {}
    for r in table:
        by_label.setdefault(r.label, []).append(r)
    sets = {fs.label: fs for fs in feature_sets(task) if fs.features}
    names = hypothesis_names(task)

    def words(label):
        if label == "any object":
            return "any object"
        text = " or ".join(label.split("|"))
        return f"{text} ('{names[label]}')" if label in names and names[label] != text else text

    competent = True
    chosen = _smallest(sets, by_label, consistent)
    if chosen is None:
        chosen = _smallest(sets, by_label, lambda rows: selects(rows) and any(r.rate >= MIN_PURSUIT
                                                                             for r in _tested(rows)))
        competent = chosen is None
    if chosen is None and consistent(by_label.get("any object", [])):
        chosen, competent = "any object", True
    splits = list(dict.fromkeys(r.split for r in table))

    def evidence(label):
        return ", ".join(f"{r.split} {_fmt(r)}" for r in _tested(by_label[label]))

    rivals = []
    for h in task.hypotheses:
        feats = _as_set(task, h)
        label = "|".join(feats) if feats else None
        if label is None or label == chosen or label not in by_label:
            continue
        if consistent(by_label[label]):
            rivals.append(f"'{h.name}' fits too but is not the smallest")
            continue
        w = _worst(by_label[label])
        if w is None:
            continue
        what = (f"pursued {_fmt(w)} on {w.split}" if w.rate < MIN_PURSUIT or np.isnan(w.precision)
                else f"precision {w.precision:.2f} on {w.split}")
        rivals.append(f"not '{h.name}' ({what})")
    rival_text = ("; " + ", ".join(rivals)) if rivals else ""
    rule = (f"pursuit >= {MIN_PURSUIT:g} and precision >= {MIN_PRECISION:g} on every split that tests the set "
            f"(>= {MIN_LEVELS} levels with each of its features achievable); splits: {', '.join(splits)}")
    if chosen is None:
        best = max((lab for lab in sets if lab in by_label and _tested(by_label[lab])),
                   key=lambda lab: min(r.rate for r in _tested(by_label[lab])), default=None)
        detail = f"; the most pursued set, {words(best)}: {evidence(best)}" if best else ""
        return ProbeReading("nothing", 0, f"Pursues no feature set of up to {MAX_SET_SIZE} features, nor any object, "
                                          f"consistently across the splits ({rule}){detail}{rival_text}.", False)
    if chosen == "any object":
        return ProbeReading(chosen, 0, f"Pursues any object, no feature set of up to {MAX_SET_SIZE} features "
                                       f"(pursuit {evidence(chosen)}; {rule}){rival_text}.", True)
    size = len(sets[chosen].features)
    if competent:
        head = f"Pursues {words(chosen)}: the smallest feature set consistent with every split"
        return ProbeReading(chosen, size, f"{head} (pursuit {evidence(chosen)}; {rule}){rival_text}.", True)
    rows = _tested(by_label[chosen])
    precision = ", ".join(f"{r.split} {r.precision:.2f}" for r in rows if not np.isnan(r.precision))
    failing = ", ".join(f"{r.split} {_fmt(r)}" for r in rows if r.rate < MIN_PURSUIT)
    head = (f"Goes only for {words(chosen)} (the smallest feature set that every episode ending on an object ends "
            f"on, precision {precision}) but does not pursue it competently on every split: pursuit {failing}, "
            f"below {MIN_PURSUIT:g} (elsewhere {', '.join(f'{r.split} {_fmt(r)}' for r in rows if r.rate >= MIN_PURSUIT)})")
    return ProbeReading(chosen, size, f"{head}; {rule}{rival_text}.", False)
