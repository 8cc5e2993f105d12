"""Where sweep batches run: ``local`` (pinned worker processes on this machine) or ``ray`` (Ray tasks).

Both hand every batch to :func:`mesalab.experiments.cells.run_batch` with the same inputs, so they produce
the same numbers. On a CPU, each batch runs in a process pinned to one core: with jax 0.10.2, vmapped PPO in
one process using two cores deadlocks (see :mod:`mesalab.runner`). Results come back to the caller's
``on_result(batch, results)``, which commits them before the next result is taken.
"""

from __future__ import annotations

from typing import Callable

from mesalab.errors import MesalabError
from mesalab.experiments.plan import Batch
from mesalab.experiments.presets import EvalPlan
from mesalab.runner import SPAWN, available_cores, next_message, pin_to_core, pinned_workers, report_job

OnResult = Callable[[Batch, list], None]
OnProgress = Callable[[str, int], None]  # (batch_id, updates finished in that batch)


def _pool_worker(core: int | None, tasks, results, plan: EvalPlan) -> None:
    if core is not None:
        pin_to_core(core)
    from mesalab.experiments.cells import run_batch

    for batch in iter(tasks.get, None):
        report_job(results, batch.batch_id, lambda progress, batch=batch: run_batch(batch, plan, progress))


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
    workers = min(workers, len(batches))
    tasks, results = SPAWN.Queue(), SPAWN.Queue()
    for item in [*batches, *[None] * workers]:  # then one stop sign per worker
        tasks.put(item)
    by_id = {b.batch_id: b for b in batches}
    with pinned_workers(_pool_worker, [(tasks, results, plan)] * workers, cores) as procs:
        finished = 0
        while finished < len(batches):
            kind, batch_id, payload = next_message(results, procs, "re-run the same command to resume, with --workers 1")
            if kind == "progress":
                if on_progress:
                    on_progress(batch_id, payload)
            elif kind == "result":
                on_result(by_id[batch_id], payload)
                finished += 1
            else:
                raise MesalabError(f"batch {batch_id}: {payload}")


class _RayWorker:
    """A Ray actor that runs batches, each in a child process pinned to this worker's core on a CPU node
    (as the local backend does, so both give the same numbers)."""

    def __init__(self, core: int | None):
        self.core = core

    def run(self, batch: Batch, plan: EvalPlan) -> tuple[str, list]:
        """``(batch_id, results)``: the id says which batch came back (the pool returns them in any order)."""
        import jax

        if jax.default_backend() != "cpu":
            from mesalab.experiments.cells import run_batch

            return batch.batch_id, run_batch(batch, plan)
        out: list = []
        run_local([batch], plan, 1, lambda b, r: out.extend(r), cores=[self.core] if self.core is not None else None)
        return batch.batch_id, out


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
        by_id = {b.batch_id: b for b in batches}
        while pool.has_next():
            try:
                batch_id, batch_results = pool.get_next_unordered()
            except Exception as e:  # a task's MesalabError arrives wrapped by Ray
                cause = getattr(e, "cause", None) or e
                raise MesalabError(f"a batch failed on Ray: {cause}") from None
            on_result(by_id[batch_id], batch_results)
    finally:
        if started:
            ray.shutdown()
