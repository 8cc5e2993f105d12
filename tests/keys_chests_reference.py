"""Independent plain-Python references for keys and chests, written from the documented rules
(mesalab.tasks.keys_chests.env), sharing no code with the JAX engine: one step of the dynamics, exhaustive search over
action sequences (optimal returns, fewest steps, the random policy's event probabilities), the explicit reachable
state space, and float64 soft value iteration over it."""

from __future__ import annotations

import numpy as np

MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left
KEY, CHEST = "key", "chest"


def level_dict(params, i: int) -> dict:
    """Pool entry ``i`` of a KeysChestsParams as plain Python."""
    grid = np.asarray(params.grid[i])
    objs = {}
    for s, (pos, key, present) in enumerate(zip(np.asarray(params.obj_pos[i]), np.asarray(params.obj_key[i]),
                                                np.asarray(params.obj_present[i]))):
        if present:
            objs[s] = (int(pos[0]), int(pos[1]), bool(key))
    return {"walls": grid[..., 0].astype(bool), "objs": objs, "start": tuple(int(x) for x in np.asarray(params.start[i])),
            "inv": int(np.asarray(params.start_inventory[i])), "T": int(np.asarray(params.max_steps))}


def openable(level) -> int:
    keys = level["inv"] + sum(1 for (_, _, k) in level["objs"].values() if k)
    chests = sum(1 for (_, _, k) in level["objs"].values() if not k)
    return min(keys, chests)


def held(level, taken) -> int:
    objs = level["objs"]
    return level["inv"] + sum(1 for i in taken if objs[i][2]) - sum(1 for i in taken if not objs[i][2])


def step(level, pos, taken: frozenset, action: int):
    """``(pos, taken, event or None, done by the chests)``: one move (a wall: stay), then the object entered."""
    r, c = pos[0] + MOVES[action][0], pos[1] + MOVES[action][1]
    if level["walls"][r][c]:
        r, c = pos
    event, new = None, set(taken)
    for i, (orow, ocol, is_key) in level["objs"].items():
        if (orow, ocol) == (r, c) and i not in taken:
            if is_key:
                new.add(i)
                event = KEY
            elif held(level, taken) >= 1:
                new.add(i)
                event = CHEST
    new = frozenset(new)
    opened = sum(1 for i in new if not level["objs"][i][2])
    return (r, c), new, event, opened >= openable(level)


def n_possible(level, event: str) -> int:
    return sum(1 for (_, _, k) in level["objs"].values() if k) if event == KEY else openable(level)


def brute_force(level, horizon: int, n_slots: int) -> dict:
    """Exhaustive search over every action sequence of ``horizon`` steps (episodes end when every openable chest is
    open): per event kind the best return (``1 - 0.9 t / T`` per event at step ``t``), the fewest steps to every such
    event (None: impossible) and ``p[t][n]`` (``n = 0 .. n_slots``) = the uniformly random policy's probability of at
    least ``n`` events by step ``t``."""
    T = level["T"]
    events = (KEY, CHEST)
    n_max = {e: n_possible(level, e) for e in events}
    prob = {e: np.zeros((horizon + 1, n_slots + 2)) for e in events}
    best = {e: 0.0 for e in events}
    fewest = {e: None for e in events}

    def visit(pos, taken, t, count, ret, mass, done):
        for e in events:
            prob[e][t, count[e]] += mass
            if count[e] >= n_max[e] and (fewest[e] is None or t < fewest[e]):
                fewest[e] = t
            best[e] = max(best[e], ret[e])
        if t == horizon:
            return
        if done:  # frozen: the counts stay for every later step
            for e in events:
                prob[e][t + 1:, count[e]] += mass
            return
        for a in range(4):
            p2, tk2, ev, d2 = step(level, pos, taken, a)
            gain = 1 - 0.9 * (t + 1) / T
            visit(p2, tk2, t + 1, {e: count[e] + (ev == e) for e in events},
                  {e: ret[e] + gain * (ev == e) for e in events}, mass / 4, d2)

    visit(level["start"], frozenset(), 0, {e: 0 for e in events}, {e: 0.0 for e in events}, 1.0, False)
    out = {}
    for e in events:
        at_least = np.cumsum(prob[e][:, ::-1], axis=1)[:, ::-1]  # P(count >= n)
        out[e] = {"best": best[e], "fewest": fewest[e], "p": at_least[:, : n_slots + 1]}
    return out


def explicit_states(level, horizon: int):
    """Every state ``(pos, taken)`` reachable within ``horizon`` steps, breadth first, with its transition table:
    ``states`` (list), ``index`` (dict), ``succ[s][a]``, ``event[s][a]``, ``terminal[s]``."""
    start = (level["start"], frozenset())
    states, index = [start], {start: 0}
    succ, event, terminal = [], [], [False]
    frontier = [start]
    for _ in range(horizon):
        nxt = []
        for st in frontier:
            if terminal[index[st]]:
                continue
            for a in range(4):
                p2, tk2, _, d2 = step(level, st[0], st[1], a)
                key = (p2, tk2)
                if key not in index:
                    index[key] = len(states)
                    states.append(key)
                    terminal.append(d2)
                    nxt.append(key)
        frontier = nxt
    for st in states:
        row_s, row_e = [], []
        for a in range(4):
            p2, tk2, ev, _ = step(level, st[0], st[1], a)
            row_s.append(index.get((p2, tk2), -1))
            row_e.append(ev)
        succ.append(row_s)
        event.append(row_e)
    return states, index, succ, event, terminal


def soft_log_likelihood(level, weights: dict, horizon: int, states_seq, actions, length: int) -> float:
    """float64 soft value iteration over the explicit states: transition ``(s, a)`` at step ``t`` earns
    ``w_key [key picked] * (T - t) + w_chest [chest opened] * (T - t) - log 4``; the episode log-likelihood of
    ``states_seq`` (``(pos, taken)`` before each action) and ``actions`` for ``length`` steps."""
    states, index, succ, event, terminal = explicit_states(level, horizon)
    n = len(states)
    v_next = np.zeros(n)
    log_pi = [None] * horizon
    for t in range(horizon - 1, -1, -1):
        q = np.full((n, 4), -np.inf)
        for s in range(n):
            for a in range(4):
                ev = event[s][a]
                r = -np.log(4.0) + (weights.get(ev, 0.0) * (horizon - t) if ev else 0.0)
                s2 = succ[s][a]
                cont = 0.0 if (s2 < 0 or terminal[s2]) else v_next[s2]
                q[s, a] = r + cont
        v = np.logaddexp.reduce(q, axis=1)
        log_pi[t] = q - v[:, None]
        v_next = v
    return float(sum(log_pi[t][index[states_seq[t]], actions[t]] for t in range(length)))

