"""Run training + shift evaluation for several seeds.

The contract is ``vmap`` over seeds (right on a GPU). On a multi-core CPU, XLA with several threads
deadlocked on vmapped PPO (jax 0.10.2, reproduced here: ``benchmarks/vmap_hang_probe.py``), while a process
pinned to one core runs fine; so on CPU the seeds are split over worker processes, one pinned per core,
each vmapping its share. ``workers=0`` runs everything in this process (use it on a GPU).
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import os
import queue as queue_mod
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mesalab.errors import MesalabError

SPAWN = mp.get_context("spawn")  # workers start a fresh interpreter (JAX is not fork-safe)


@dataclass(frozen=True)
class EvalSettings:
    episodes: int = 1000  # test (and train) episodes per seed, one per level
    level_seed: int = 12345  # seed of the evaluation level pools (shared by all seeds: paired comparisons)
    greedy: bool = False  # evaluate the argmax action instead of sampling from the policy
    irl_levels: int = 200  # levels (episodes) used to fit the behavioral objective; 0 skips the objectives
    bootstrap: int = 1000  # bootstrap replicates of the IRL weights


@dataclass
class SeedResult:
    seed: int
    model_leaves: list  # numpy arrays of the model's array leaves (eqx.filter(model, eqx.is_array))
    metrics: dict  # name -> np.ndarray[num_updates]
    episodes: dict  # split -> Episodes (numpy)
    profiles: dict  # split -> ObjectiveProfile (empty when irl_levels == 0)
    success_by_ticks: dict = field(default_factory=dict)  # recurrent: ticks -> (successes, episodes) on test


def train_and_evaluate_group(config_dict: dict, seeds: list[int], eval_settings: EvalSettings,
                             progress: Callable[[int], None] | None = None) -> list[SeedResult]:
    """Train ``seeds`` as one vmapped, jitted run and evaluate each on the train and test pools."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from mesalab.optimizers import PPOConfig, check_finite, make_train
    from mesalab.tasks import get_task

    config = PPOConfig(**config_dict)
    task = get_task(config.task)
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    models, metrics = jax.jit(jax.vmap(make_train(config, progress)))(keys)
    metrics = jax.tree_util.tree_map(np.asarray, metrics)
    check_finite(metrics, config.lr)

    pools = evaluation_pools(task, eval_settings)
    episodes = evaluate_models(task, models, keys, pools, eval_settings.greedy)
    by_ticks = {}
    if config.recurrent:
        by_ticks = episodes_by_ticks(task, models, keys, pools["test"], eval_settings.greedy,
                                     test_ticks_for(config.ticks), config.ticks, episodes["test"])

    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(models, eqx.is_array))]
    out = []
    for i, seed in enumerate(seeds):
        seed_episodes = split_seed(episodes, i)
        model = split_seed(models, i)
        out.append(
            SeedResult(
                seed=int(seed),
                model_leaves=[leaf[i] for leaf in leaves],
                metrics={k: v[i] for k, v in metrics.items()},
                episodes=seed_episodes,
                profiles=profile_seed(task, model, seed_episodes, pools, eval_settings),
                success_by_ticks={k: success_count(task, split_seed(e, i)) for k, e in by_ticks.items()},
            )
        )
    return out


def evaluation_pools(task, eval_settings: EvalSettings) -> dict:
    """split -> the fixed evaluation levels (``EnvParams``), shared by every seed (paired comparisons)."""
    from mesalab.diagnostics import evaluation_levels

    return {s: evaluation_levels(task, s, eval_settings.episodes, eval_settings.level_seed) for s in ("train", "test")}


def evaluate_models(task, models, keys, pools: dict, greedy: bool, ticks: int | None = None) -> dict:
    """One episode per pool level for each of a stack of models (leading axis, one per training key) on each
    split: ``split -> Episodes`` (numpy, leading model axis). The episode keys derive from the training keys,
    so replaying a run's checkpoints reproduces its episodes. ``ticks``: internal iterations per step of a
    recurrent model (its training ticks when ``None``)."""
    import jax

    eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 7))(keys)
    episodes = {}
    for split, params in pools.items():
        episodes[split] = jax.tree_util.tree_map(np.asarray, _evaluator(task, greedy, ticks)(models, eval_keys, params))
    return episodes


@functools.lru_cache(maxsize=None)
def _evaluator(task, greedy: bool, ticks: int | None = None):
    """One jitted evaluator per (task, greedy, ticks), so repeated evaluations reuse its compilation."""
    import equinox as eqx

    from mesalab.diagnostics import evaluate, model_policy

    @eqx.filter_jit
    def run(models, keys, params):
        return eqx.filter_vmap(lambda m, k, p: evaluate(task, model_policy(m, task.obs_mode, greedy, ticks=ticks), p, k),
                               in_axes=(eqx.if_array(0), 0, None))(models, keys, params)

    return run


RECURRENT_TEST_TICKS = (1, 2, 4, 8, 16)  # a recurrent model is also tested at these ticks per step


def test_ticks_for(trained_ticks: int, extra=RECURRENT_TEST_TICKS) -> list[int]:
    """The tick counts a recurrent model is tested at: ``extra``, its training ticks and twice them."""
    return sorted(set(extra) | {trained_ticks, 2 * trained_ticks})


def episodes_by_ticks(task, models, keys, pool, greedy: bool, ticks: list[int], trained_ticks: int,
                      trained_episodes=None) -> dict:
    """``ticks -> Episodes`` of a stack of recurrent models on one pool at each number of ticks per step (the
    same levels and episode keys at every count, so the comparison is paired); the episodes already played at
    the training ticks are reused when given."""
    out = {}
    for k in ticks:
        if k == trained_ticks and trained_episodes is not None:
            out[k] = trained_episodes
        else:
            out[k] = evaluate_models(task, models, keys, {"test": pool}, greedy, ticks=k)["test"]
    return out


def success_count(task, episodes) -> tuple[int, int]:
    """(episodes that reached a base-objective target, episodes) of one model."""
    from mesalab.diagnostics import summarise

    s = summarise(task, episodes, "test")
    return int(round(s.objectives[0].reach_rate * s.n_episodes)), int(s.n_episodes)


def split_seed(tree, i: int):
    """Entry ``i`` of a stacked pytree (numpy episodes or an Equinox model with a leading seed axis)."""
    import equinox as eqx
    import jax

    return jax.tree_util.tree_map(lambda x: x[i] if eqx.is_array(x) or isinstance(x, np.ndarray) else x, tree)


def profile_seed(task, model, episodes: dict, pools: dict, eval_settings: EvalSettings) -> dict:
    """The objective profile (behavioral objective, bits, goal-directedness) of one trained model per split;
    ``pools``: split -> the evaluation levels (``EnvParams``) the episodes were played on."""
    if eval_settings.irl_levels <= 0:
        return {}
    from mesalab.diagnostics.behavioral import model_log_probs
    from mesalab.diagnostics.objective_profile import objective_profile

    out = {}
    for split, ep in episodes.items():
        params = pools[split]
        own = lambda demos, params=params: model_log_probs(task, model, task.obs_mode, eval_settings.greedy,  # noqa: E731
                                                           params, demos)
        out[split] = objective_profile(task, params, ep, split, irl_levels=eval_settings.irl_levels,
                                       n_boot=eval_settings.bootstrap, own_log_probs=own)
    return out


def pin_to_core(core: int) -> None:
    """Pin every thread of this process to ``core`` (threads started later inherit it). Every thread, not just
    the calling one: importing JAX (e.g. while unpickling a worker's arguments) may already have started
    XLA's thread pool, and threads left on all cores bring back the deadlock described above."""
    for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ["0"]:
        try:
            os.sched_setaffinity(int(tid), {core})
        except (ProcessLookupError, PermissionError):  # pragma: no cover - a thread that just ended
            pass


def report_job(q, key, job: Callable) -> None:
    """In a worker process: run ``job(progress)``, sending ``("progress", key, n)`` whenever ``progress(n)`` is
    called with a new n, then ``("result", key, value)`` or ``("error", key, one-line message)``."""
    last = [0]

    def progress(n):
        if n != last[0]:
            last[0] = n
            q.put(("progress", key, n))

    try:
        q.put(("result", key, job(progress)))
    except MesalabError as e:
        q.put(("error", key, str(e)))
    except BaseException as e:  # pragma: no cover - reported to the parent
        q.put(("error", key, f"worker failed: {type(e).__name__}: {e}"))


@contextlib.contextmanager
def pinned_workers(target: Callable, per_worker_args: list[tuple], cores: list[int] | None = None):
    """Start one spawned process per entry of ``per_worker_args``, as ``target(core, *args)`` with worker i on
    core i (round robin; ``None`` on a single-core machine); terminate any still running on exit."""
    cores = available_cores() if cores is None else cores
    procs = []
    try:
        for i, args in enumerate(per_worker_args):
            core = cores[i % len(cores)] if len(cores) > 1 else None
            p = SPAWN.Process(target=target, args=(core, *args), daemon=True)
            p.start()
            procs.append(p)
        yield procs
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(timeout=5)


def next_message(q, procs, died: str) -> tuple:
    """The next ``(kind, key, payload)`` from the workers; a :class:`MesalabError` naming ``died`` (what to
    do) if a worker exits abnormally while none is waiting."""
    while True:
        try:
            return q.get(timeout=5)
        except queue_mod.Empty:
            dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
            if dead:
                raise MesalabError(f"a worker exited with code {dead[0].exitcode} (out of memory?); {died}") from None


def _worker(core: int | None, index: int, config_dict: dict, seeds: list[int], eval_settings: EvalSettings,
            q) -> None:
    if core is not None:
        pin_to_core(core)
    report_job(q, index, lambda progress: train_and_evaluate_group(config_dict, seeds, eval_settings, progress))


def available_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return list(range(os.cpu_count() or 1))


def default_workers(n_seeds: int) -> int:
    """One pinned worker per core on CPU (at most one per seed); 0 (in-process) on an accelerator."""
    if os.environ.get("MESALAB_WORKERS"):
        return int(os.environ["MESALAB_WORKERS"])
    import jax

    if jax.default_backend() != "cpu":
        return 0
    return max(1, min(len(available_cores()), n_seeds))


def train_and_evaluate(config_dict: dict, seeds: list[int], eval_settings: EvalSettings,
                       workers: int | None = None,
                       on_progress: Callable[[int], None] | None = None) -> list[SeedResult]:
    """Train and evaluate every seed; ``on_progress(total_updates_done)`` is called as training advances.

    Returns results in the order of ``seeds``. Raises :class:`MesalabError` with the worker's message if any
    worker fails.
    """
    if workers is None:
        workers = default_workers(len(seeds))
    if workers == 0:
        return train_and_evaluate_group(config_dict, seeds, eval_settings, on_progress)
    workers = min(workers, len(seeds))
    groups = [[int(s) for s in g] for g in np.array_split(np.asarray(seeds), workers)]
    q = SPAWN.Queue()
    results: list[SeedResult] = []
    done_updates = [0] * len(groups)
    finished = 0
    with pinned_workers(_worker, [(i, config_dict, group, eval_settings, q) for i, group in enumerate(groups)]) as procs:
        while finished < len(groups):
            kind, i, payload = next_message(q, procs, "rerun with fewer --seeds or --workers 1")
            if kind == "progress":
                done_updates[i] = payload
                if on_progress:
                    on_progress(sum(done_updates))
            elif kind == "result":
                results.extend(payload)
                finished += 1
            else:
                raise MesalabError(payload)
    order = {s: i for i, s in enumerate(seeds)}
    return sorted(results, key=lambda r: order[r.seed])
