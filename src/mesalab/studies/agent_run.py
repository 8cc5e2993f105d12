"""The ``agent`` kind: ``mesalab diagnose --policy MODULE:FUNCTION --task TASK --out DIR`` diagnoses an agent trained
outside mesalab (see :mod:`mesalab.diagnostics.external`) exactly as ``mesalab run`` diagnoses its own seeds: one
episode per level on every evaluation split (train, test, the task's probe splits), the alignment verdict on each
shifted split, the behavioral objective (exact MCE-IRL), bits, goal-directedness and EPIC, in a run folder whose
``report`` and re-``diagnose`` work like a run's.

Run folder: ``config.json`` (kind ``agent``; ``agent``: the policy spec and observation mode; the task's plugin),
``results.duckdb`` (the run tables; no training curves, no checkpoints), ``figures/``, ``report.html``. Its cells are
*evaluation seeds*: seed ``s`` draws the agent's actions with the keys a mesalab run's seed ``s`` uses, so a planted
agent gives the same episodes here as inside mesalab. The agent is called in this process (``--workers 0``): its
callable may hold state a worker process cannot rebuild, and one host call per environment step covers every level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from mesalab.errors import ConfigError
from mesalab.eval_plan import EvalPlan
from mesalab.results.folder import RunFolder
from mesalab.studies import register
from mesalab.studies.contract import Options, task_plugins
from mesalab.studies.engine import Batch
from mesalab.studies.gridworld_run import GridworldRun, eval_plan, run_eval_dict

EVAL_KEY_SALT = 7  # a run's episode keys: fold_in(key(seed), 7) (mesalab.studies.ppo_batch.evaluate_models)


class AgentRun(GridworldRun):
    kind = "agent"
    resume_keys = ("agent", "eval")
    options = frozenset({"seeds", "first_seed", "episodes", "policy", "obs_mode"})
    missing = "the diagnosis did not finish; rerun `mesalab diagnose --policy ...` with the same options"
    corrupt = "rerun `mesalab diagnose --policy ...` with a new --out"
    progress_label = "evaluating + fitting"

    def names(self):
        return []  # started by `mesalab diagnose --policy`, not by `mesalab run NAME`

    def default_out(self, name: str) -> Path:
        import datetime as dt

        return Path("runs") / f"{name}-agent-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"

    def configure(self, name: str, options: Options) -> dict:
        from mesalab.diagnostics.external import load_callable
        from mesalab.tasks import get_task

        task = get_task(name)
        if not options.policy:
            raise ConfigError("diagnosing an outside agent needs --policy MODULE:FUNCTION")
        load_callable(options.policy)  # importable and callable, before anything is written
        mode = options.obs_mode or task.obs_mode
        task.check_obs_mode(mode)
        seeds = 1 if options.seeds is None else options.seeds
        plan = EvalPlan(episodes=1000 if options.episodes is None else options.episodes)
        return {"name": name, "task": name, "agent": {"policy": options.policy, "obs_mode": mode},
                "seeds": list(range(options.first_seed, options.first_seed + seeds)), "eval": run_eval_dict(plan),
                "workers": 0, "plugins": task_plugins([name])}

    def header(self, s: dict) -> str:
        return (f"[bold]mesalab diagnose --policy {s['agent']['policy']}[/] on {s['task']}: {len(s['seeds'])} evaluation "
                f"seed(s), {s['eval']['episodes']} episodes per split")

    def plan(self, settings: dict, done: set) -> list[Batch]:
        spec = {k: settings.get(k) for k in ("task", "agent", "eval", "created", "versions")}
        return [Batch(f"seed {s}", (s,), spec) for s in settings["seeds"] if s not in done]

    def measure(self, batch: Batch, progress=None) -> dict:
        return measure_agent(batch.spec, int(batch.cells[0]))

    def commit(self, folder: RunFolder, batch: Batch, result: dict) -> None:
        from mesalab.studies.gridworld_run import run_level_rows

        rows = dict(result["rows"])
        if not folder.has_results() or not folder.sql("SELECT count(*) FROM levels")[0][0]:
            rows["levels"] = run_level_rows({**batch.spec, "ppo": {"task": batch.spec["task"]}})
        folder.commit(rows)

    def check_diagnose(self, folder: RunFolder, meta: dict, levels: int | None, seeds: list[int] | None) -> None:
        try:
            meta["agent"]["policy"], meta["task"], meta["seeds"], meta["eval"]["episodes"]
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{folder.meta_path} is malformed ({type(e).__name__}: {e}); rerun `mesalab diagnose "
                              "--policy ...` with a new --out") from None
        if levels is not None and levels > int(meta["eval"]["episodes"]):
            raise ConfigError(f"--levels {levels} exceeds the folder's {meta['eval']['episodes']} evaluation episodes per "
                              "split; pass at most that")
        unknown = sorted(set(seeds or []) - set(meta["seeds"]))
        if unknown:
            raise ConfigError(f"--seed {unknown} not in this folder; its seeds are {meta['seeds']}")

    def diagnose(self, folder: RunFolder, irl_levels: int | None = None, bootstrap: int = 1000,
                 seeds: list[int] | None = None, on_stage: Callable[[str], None] | None = None):
        """Re-fit every table of the folder's seeds (the agent is loaded again from the recorded spec)."""
        from mesalab.results.store import replace_tables

        meta = folder.read_meta()
        ev = dict(meta["eval"])
        if irl_levels is not None:
            ev["irl_levels"] = irl_levels
        ev["bootstrap"] = bootstrap
        spec = {k: meta.get(k) for k in ("task", "agent", "created", "versions")} | {"eval": ev}
        rows: dict[str, list] = {}
        todo = seeds or list(meta["seeds"])
        for s in todo:
            (on_stage or (lambda m: None))(f"seed {s}: evaluating and fitting the behavioral objective")
            for table, values in measure_agent(spec, int(s))["rows"].items():
                rows.setdefault(table, []).extend(values)
        present = folder.table_names()
        for table in rows:  # keep the other seeds' rows
            if table in present:
                rows[table] = [tuple(r) for r in folder.rows_without(table, "seed", todo)] + rows[table]
        replace_tables(folder.path, rows)
        analysis = self.analyse(folder)
        self.report(folder, analysis)
        return analysis


def measure_agent(spec: dict, seed: int) -> dict:
    """Evaluate and profile the outside agent of ``spec`` with evaluation seed ``seed``: every row of that seed."""
    import jax
    import numpy as np

    from mesalab.diagnostics import evaluate
    from mesalab.diagnostics.external import load_callable, task_policy
    from mesalab.diagnostics.objective_profile import objective_profile
    from mesalab.studies import ppo_batch as P
    from mesalab.studies.gridworld_run import seed_result_rows
    from mesalab.tasks import get_task

    agent = spec["agent"]
    task = get_task(spec["task"]).with_obs_mode(agent["obs_mode"])
    plan = eval_plan(spec["eval"])
    policy = task_policy(load_callable(agent["policy"]), task, agent["obs_mode"], name=agent["policy"])
    pools = P.evaluation_pools(task, plan)
    key = jax.random.fold_in(jax.random.key(seed), EVAL_KEY_SALT)
    run = jax.jit(lambda params, k: evaluate(task, policy, params, k))
    episodes = {split: jax.tree_util.tree_map(np.asarray, run(params, key)) for split, params in pools.items()}
    profiles = {}
    if plan.irl_levels > 0:
        profiles = {split: objective_profile(task, pools[split], ep, split, policy, irl_levels=plan.irl_levels,
                                             n_boot=plan.bootstrap) for split, ep in episodes.items()}
    config = {"task": spec["task"], **agent}
    rows = seed_result_rows(task, config, spec, seed, {}, episodes, profiles, {}, pools)
    return {"rows": {t: [tuple(v) for v in values] for t, values in rows.items()}, "models": []}


AGENT = register(AgentRun())
