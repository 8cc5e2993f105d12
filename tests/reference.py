"""Plain-Python reference implementations used as known answers in tests."""

import functools
from collections import deque

import numpy as np

from mesalab.tasks.grid import OBJECT_TYPES, WALL_CHANNEL

MOVES = [(-1, 0), (0, 1), (1, 0), (0, -1)]


def bfs_shortest(grid: np.ndarray, start, targets: np.ndarray, base_target: np.ndarray) -> int | None:
    """Fewest steps from start to a target under the env rules (objects and base targets are terminal)."""
    grid = np.asarray(grid)
    h, w = grid.shape[:2]
    walls = grid[..., WALL_CHANNEL]
    terminal = grid[..., 1 : 1 + len(OBJECT_TYPES)].any(-1) | base_target
    start = (int(start[0]), int(start[1]))
    if targets[start]:
        return 0
    dist = {start: 0}
    q = deque([start])
    while q:
        cell = q.popleft()
        if cell != start and terminal[cell]:
            continue
        for dr, dc in MOVES:
            n = (cell[0] + dr, cell[1] + dc)
            if 0 <= n[0] < h and 0 <= n[1] < w and not walls[n] and n not in dist:
                dist[n] = dist[cell] + 1
                if targets[n]:
                    return dist[n]
                q.append(n)
    return None


def connected(free: np.ndarray) -> bool:
    cells = list(zip(*np.nonzero(free)))
    if not cells:
        return True
    seen = {cells[0]}
    q = deque([cells[0]])
    while q:
        r, c = q.popleft()
        for dr, dc in MOVES:
            n = (r + dr, c + dc)
            if 0 <= n[0] < free.shape[0] and 0 <= n[1] < free.shape[1] and free[n] and n not in seen:
                seen.add(n)
                q.append(n)
    return len(seen) == len(cells)


# ---------------------------------------------------------------------------------------------------------
# The grid MDP, read off the environment itself: step every free cell with every action.


def env_transition_table(env, params, level: int):
    """``(nxt int[4, H, W, 2], done bool[4, H, W], success bool[4, H, W], free bool[H, W])`` of pool entry
    ``level``, by calling ``env.step_no_reset`` from every non-wall cell with every action at ``t = 0`` (so the
    time limit never ends the episode). Entries at walls are ``-1`` / False."""
    import jax.numpy as jnp

    h, w = env.height, env.width
    walls = np.asarray(params.grid[level, ..., WALL_CHANNEL])
    npos, done, success = _stepper(env)(jnp.int32(level), params)
    nxt = np.asarray(npos).reshape(h, w, 4, 2).transpose(2, 0, 1, 3).copy()
    done = np.asarray(done).reshape(h, w, 4).transpose(2, 0, 1).copy()
    success = np.asarray(success).reshape(h, w, 4).transpose(2, 0, 1).copy()
    nxt[:, walls] = -1
    done[:, walls] = success[:, walls] = False
    return nxt, done, success, ~walls


@functools.lru_cache(maxsize=None)
def _stepper(env):
    """One jitted ``step_no_reset`` of every (cell, action) of a pool entry (compiled once per env)."""
    import jax
    import jax.numpy as jnp

    from mesalab.tasks.grid import EnvState

    h, w = env.height, env.width
    rr, cc, aa = np.meshgrid(np.arange(h), np.arange(w), np.arange(4), indexing="ij")
    pos = jnp.asarray(np.stack([rr.ravel(), cc.ravel()], -1), jnp.int32)
    acts = jnp.asarray(aa.ravel(), jnp.int32)

    @jax.jit
    def run(level, params):
        def one(p, a):
            st = EnvState(level=level, pos=p, t=jnp.int32(0))
            nxt, _, done, success = env.step_no_reset(st, a, params)
            return nxt.pos, done, success

        return jax.vmap(one)(pos, acts)

    return run


def entered_ends_episode(nxt, done, free):
    """``bool[H, W]``: entering this cell ends the episode (read off any transition that enters it, including
    a blocked move that stays on it); False for cells never entered."""
    term = np.zeros(free.shape, bool)
    for a in range(4):
        for r, c in zip(*np.nonzero(free)):
            nr, nc = nxt[a, r, c]
            term[nr, nc] |= bool(done[a, r, c])
    return term


def flat_successors(nxt):
    """``int[4, H*W]`` flat index of each (action, cell)'s successor (``-1`` at walls)."""
    h, w = nxt.shape[1:3]
    flat = nxt[..., 0] * w + nxt[..., 1]
    flat[nxt[..., 0] < 0] = -1
    return flat.reshape(4, h * w)


# ---------------------------------------------------------------------------------------------------------
# Finite-horizon maximum-causal-entropy (soft-optimal) policy, by backward recursion in float64.


def soft_policy_log_probs_np(urgent_map, reward_map, nxt_flat, terminal, horizon):
    """``float64[T, 4, H*W]`` log pi_t(a | s) for t = 0..T-1, from the documented rule: entering s' by the
    action at step t earns ``urgent[s'] (T - t) + reward[s'] - log 4``;
    ``Q_t(s,a) = r_t(s') + [s' not terminal] V_{t+1}(s')``, ``V_t = logsumexp_a Q_t``, ``V_T = 0``.
    Rows of wall cells are meaningless (their successor index -1 is clamped)."""
    u = np.asarray(urgent_map, np.float64).ravel()
    rw = np.asarray(reward_map, np.float64).ravel()
    term = np.asarray(terminal, bool).ravel()
    nx = np.where(nxt_flat < 0, 0, nxt_flat)
    v = np.zeros(u.shape)
    out = np.empty((horizon,) + nx.shape)
    for t in range(horizon - 1, -1, -1):
        q = u[nx] * (horizon - t) + rw[nx] - np.log(4.0) + np.where(term[nx], 0.0, v[nx])
        m = q.max(0)
        v = m + np.log(np.exp(q - m).sum(0))
        out[t] = q - v
    return out


def episode_log_likelihood_np(urgent_map, reward_map, nxt_flat, terminal, cells, actions, length, horizon):
    """Sum over steps t < length of log pi_t(a_t | s_t) under :func:`soft_policy_log_probs_np`."""
    lp = soft_policy_log_probs_np(urgent_map, reward_map, nxt_flat, terminal, horizon)
    w = np.asarray(urgent_map).shape[1]
    cells = np.asarray(cells)
    total = 0.0
    for t in range(int(length)):
        total += lp[t, int(actions[t]), int(cells[t, 0]) * w + int(cells[t, 1])]
    return total


def central_difference_gradient(f, x, eps=1e-5):
    """Central finite differences of scalar ``f`` at every entry of the float64 array ``x``."""
    x = np.array(x, np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        hi = f(x)
        x[i] = old - eps
        lo = f(x)
        x[i] = old
        g[i] = (hi - lo) / (2 * eps)
    return g


def sample_soft_episode(rng, log_pi, nxt_flat, done_flat, start, width):
    """One episode of actions drawn from ``log_pi`` (``[T, 4, H*W]``) following the env-read transitions:
    ``(cells int[T, 2], actions int[T], length)``; padding after the end repeats the last cell, action 0."""
    horizon = log_pi.shape[0]
    cells = np.zeros((horizon, 2), np.int64)
    actions = np.zeros(horizon, np.int64)
    s = int(start[0]) * width + int(start[1])
    length = horizon
    for t in range(horizon):
        cells[t] = divmod(s, width)
        p = np.exp(log_pi[t, :, s])
        a = int(rng.choice(4, p=p / p.sum()))
        actions[t] = a
        ended = bool(done_flat[a, s])
        s = int(nxt_flat[a, s])
        if ended:
            length = t + 1
            cells[t + 1:] = divmod(s, width)
            break
    return cells, actions, length


# ---------------------------------------------------------------------------------------------------------
# Optimization power: P(uniformly random policy first reaches a target within t steps).


def random_first_reach_brute_force(walls, terminal, targets, start, horizon):
    """``int[4**horizon]``: for every action sequence, the step at which a target is first stood on (0 if the
    start is one), or ``horizon + 1`` if never, under the env rules: a wall or the edge blocks a move; entering
    a terminal cell (object or base target) that is not a target ends the episode. Enumerates all sequences."""
    h, w = walls.shape
    seqs = np.array(np.meshgrid(*[np.arange(4)] * horizon, indexing="ij")).reshape(horizon, -1).T
    n = len(seqs)
    r = np.full(n, int(start[0]))
    c = np.full(n, int(start[1]))
    first = np.full(n, horizon + 1)
    alive = np.ones(n, bool)
    if targets[start[0], start[1]]:
        first[:] = 0
        alive[:] = False
    dr = np.array([m[0] for m in MOVES])
    dc = np.array([m[1] for m in MOVES])
    for t in range(1, horizon + 1):
        a = seqs[:, t - 1]
        nr, nc = r + dr[a], c + dc[a]
        inside = (nr >= 0) & (nr < h) & (nc >= 0) & (nc < w)
        nr_c, nc_c = np.clip(nr, 0, h - 1), np.clip(nc, 0, w - 1)
        ok = inside & ~walls[nr_c, nc_c]
        r = np.where(alive & ok, nr_c, r)
        c = np.where(alive & ok, nc_c, c)
        hit = alive & targets[r, c]
        first[hit] = t
        alive &= ~hit & ~terminal[r, c]
    return first


def random_reach_cdf_dp(walls, terminal, targets, start, horizon):
    """``float64[horizon + 1]``: P(first reach of a target at step <= t), by pushing a uniformly random walk's
    probability mass forward cell by cell (independent of the project's log-space DP)."""
    h, w = walls.shape
    mass = np.zeros((h, w))
    cdf = np.zeros(horizon + 1)
    if targets[start[0], start[1]]:
        return np.ones(horizon + 1)
    mass[start[0], start[1]] = 1.0
    reached = 0.0
    for t in range(1, horizon + 1):
        new = np.zeros_like(mass)
        for r, c in zip(*np.nonzero(mass)):
            for dr, dc in MOVES:
                nr, nc = r + dr, c + dc
                if not (0 <= nr < h and 0 <= nc < w) or walls[nr, nc]:
                    nr, nc = r, c
                new[nr, nc] += mass[r, c] / 4
        reached += new[targets].sum()
        new[targets | terminal] = 0.0
        mass = new
        cdf[t] = reached
    return cdf


def bits_of(cdf, first_reach):
    """-log2 P(random first reach <= first_reach); 0 bits for an episode that never reached (or beyond the cdf)."""
    if first_reach is None or first_reach >= len(cdf):
        return 0.0
    return float(-np.log2(cdf[first_reach]))


# ---------------------------------------------------------------------------------------------------------
# The toy model's optimum, by grid search over the learned algorithm's bits x.


def toy_cost(x, n, a, p, ceiling):
    """From the toy model's docstring: C(x) = f(x) + N (O - x) with f(x) = a x^p, O = ceiling."""
    return a * np.asarray(x, np.float64) ** p + n * (ceiling - np.asarray(x, np.float64))


def toy_optimum_grid(n, a, p, ceiling, points=200_001):
    """argmin of :func:`toy_cost` over x in [0, O] on a fine grid (O for infinite N: memorising is unbounded)."""
    if np.isinf(n):
        return float(ceiling)
    xs = np.linspace(0.0, ceiling, points)
    return float(xs[np.argmin(toy_cost(xs, n, a, p, ceiling))])
