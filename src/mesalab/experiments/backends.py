"""Where sweep batches run: ``local`` (pinned worker processes on this machine) or ``ray`` (Ray tasks).

Both hand every batch to :func:`mesalab.experiments.cells.run_batch` with the same inputs, so they produce
the same numbers. On a CPU, each batch runs in a process pinned to one core: with jax 0.10.2, vmapped PPO in
one process using two cores deadlocks (see :mod:`mesalab.runner`). Results come back to the caller's
``on_result(batch, results)``, which commits them before the next result is taken.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
from typing import Callable

from mesalab.errors import MesalabError
from mesalab.experiments.plan import Batch
from mesalab.experiments.presets import EvalPlan
from mesalab.runner import available_cores, pin_to_core

OnResult = Callable[[Batch, list], None]
OnProgress = Callable[[str, int], None]  # (batch_id, updates finished in that batch)


def _pool_worker(core: int | None, tasks, results, plan: EvalPlan) -> None:
    if core is not None:
        pin_to_core(core)
    from mesalab.experiments.cells import run_batch

    while True:
        batch = tasks.get()
        if batch is None:
            return
        try:
            last = [0]

            def progress(n, batch_id=batch.batch_id):
                if n != last[0]:
                    last[0] = n
                    results.put(("progress", batch_id, n))

            results.put(("result", batch.batch_id, run_batch(batch, plan, progress)))
        except MesalabError as e:
            results.put(("error", batch.batch_id, str(e)))
        except BaseException as e:  # pragma: no cover - reported to the parent
            results.put(("error", batch.batch_id, f"worker failed: {type(e).__name__}: {e}"))


def run_local(batches: list[Batch], plan: EvalPlan, workers: int, on_result: OnResult,
              on_progress: OnProgress | None = None, cores: list[int] | None = None) -> None:
    """Run ``batches`` on ``workers`` pinned processes (0: in this process, one after another)."""
    if not batches:
        return
    if workers == 0:
        from mesalab.experiments.cells import run_batch

        for b in batches:
            on_result(b, run_batch(b, plan, (lambda n, b=b: on_progress(b.batch_id, n)) if on_progress else None))
        return
    cores = cores if cores is not None else available_cores()
    workers = min(workers, len(batches))
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for b in batches:
        tasks.put(b)
    procs = []
    for i in range(workers):
        tasks.put(None)
        core = cores[i % len(cores)] if len(cores) > 1 else None
        p = ctx.Process(target=_pool_worker, args=(core, tasks, results, plan), daemon=True)
        p.start()
        procs.append(p)
    by_id = {b.batch_id: b for b in batches}
    finished = 0
    try:
        while finished < len(batches):
            try:
                kind, batch_id, payload = results.get(timeout=5)
            except queue_mod.Empty:
                dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
                if dead:
                    raise MesalabError(f"a sweep worker exited with code {dead[0].exitcode} (out of memory?); "
                                       "re-run the same command to resume, with --workers 1") from None
                continue
            if kind == "progress":
                if on_progress:
                    on_progress(batch_id, payload)
            elif kind == "result":
                on_result(by_id[batch_id], payload)
                finished += 1
            else:
                raise MesalabError(f"batch {batch_id}: {payload}")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(timeout=5)


class _RayWorker:
    """A Ray actor that runs batches, each in a child process pinned to this worker's core on a CPU node
    (as the local backend does, so both give the same numbers)."""

    def __init__(self, core: int | None):
        self.core = core

    def run(self, batch: Batch, plan: EvalPlan) -> list:
        import jax

        if jax.default_backend() != "cpu":
            from mesalab.experiments.cells import run_batch

            return run_batch(batch, plan)
        out: list = []
        run_local([batch], plan, 1, lambda b, r: out.extend(r), cores=[self.core] if self.core is not None else None)
        return out


def run_ray(batches: list[Batch], plan: EvalPlan, on_result: OnResult, address: str | None = None,
            workers: int | None = None) -> None:
    """Run ``batches`` on Ray: one actor per worker (one CPU each) pulls batches until none is left.
    ``address=None`` starts a local Ray instance for this command (one worker per core, each pinned to its
    core); pass a cluster's address (``auto`` or ``ray://host:10001``) to use a running cluster."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise MesalabError("the ray backend needs Ray: pip install -e '.[ray]' (or use --backend local)") from None
    if not batches:
        return
    cores = available_cores()
    started = not ray.is_initialized()
    if started:
        if address is None:
            ray.init(num_cpus=len(cores), include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        n = workers or (len(cores) if address is None else int(ray.cluster_resources().get("CPU", 1)))
        n = max(1, min(n, len(batches)))
        actor = ray.remote(num_cpus=1, max_restarts=0)(_RayWorker)
        pool = ActorPool([actor.remote(cores[i % len(cores)] if address is None else None) for i in range(n)])
        for b in batches:
            pool.submit(lambda a, b: a.run.remote(b, plan), b)
        by_order = list(batches)
        while pool.has_next():
            try:
                batch_results = pool.get_next_unordered()
            except Exception as e:  # a task's MesalabError arrives wrapped by Ray
                cause = getattr(e, "cause", None) or e
                raise MesalabError(f"a batch failed on Ray: {cause}") from None
            ids = {r.cell_id for r in batch_results}
            batch = next(b for b in by_order if {c.cell_id for c in b.cells} == ids)
            by_order.remove(batch)
            on_result(batch, batch_results)
    finally:
        if started:
            ray.shutdown()
