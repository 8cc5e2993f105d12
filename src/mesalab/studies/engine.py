"""The engine: executes the batches of cells of any study kind, commits each finished batch, resumes.

One message loop for every kind and backend. A *batch* (:class:`Batch`) is what one worker measures as one
program (for PPO, the vmapped seeds or dial values that share every shape setting). ``execute`` hands each
batch to ``study.measure(batch, progress)`` and, back in this process, to ``study.commit(folder, batch,
result)`` (checkpoints, then one database transaction), before it takes the next result: an interrupted study
keeps every finished batch and a re-run plans only the cells its folder does not hold (the resume rule:
:meth:`mesalab.results.folder.RunFolder.finished`).

Where batches run:

- ``workers=0``: in this process, one after another (use it on a GPU, where seeds are vmapped on the chip);
- ``workers>=1`` (``backend="local"``): spawned processes, each pinned to one core. On a multi-core CPU, XLA
  with several threads deadlocked on vmapped PPO (jax 0.10.2, reproduced: ``benchmarks/vmap_hang_probe.py``)
  while a process pinned to one core runs fine;
- ``backend="ray"``: one Ray actor per worker pulls batches; on a CPU node each batch runs in a child process
  pinned to the actor's core (as locally, so both backends give the same numbers).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue as queue_mod
from dataclasses import dataclass
from typing import Any, Callable

from mesalab.errors import ConfigError, MesalabError

LIVENESS_S = 5.0  # how often the parent looks for a worker that died
SPAWN = mp.get_context("spawn")  # workers start a fresh interpreter (JAX is not fork-safe)
BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Batch:
    """Cells measured together. ``cells``: the cells (each with a ``cell_id``); ``spec``: whatever the study
    needs to measure them (picklable: it travels to the worker); ``units``: how many progress units the
    measurement reports in all (e.g. PPO updates), for the progress bar."""

    batch_id: str
    cells: tuple
    spec: Any = None
    units: int = 1


# -- worker processes -------------------------------------------------------------------------------------------

def pin_to_core(core: int) -> None:
    """Pin every thread of this process to ``core`` (threads started later inherit it). Every thread, not just
    the calling one: importing JAX (e.g. while unpickling a worker's arguments) may already have started
    XLA's thread pool, and threads left on all cores bring back the deadlock described above."""
    for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ["0"]:
        try:
            os.sched_setaffinity(int(tid), {core})
        except (ProcessLookupError, PermissionError):  # pragma: no cover - a thread that just ended
            pass


def available_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return list(range(os.cpu_count() or 1))


def default_workers(n_batches: int) -> int:
    """One pinned worker per core on CPU (at most one per batch); 0 (in-process) on an accelerator.
    ``MESALAB_WORKERS`` overrides it."""
    if os.environ.get("MESALAB_WORKERS"):
        return int(os.environ["MESALAB_WORKERS"])
    import jax

    if jax.default_backend() != "cpu":
        return 0
    return max(1, min(len(available_cores()), n_batches))


def seed_groups(todo: list, workers: int | None) -> list[list[int]]:
    """The seeds still to do, split over ``workers`` (``None``: :func:`default_workers`; 0: one group, in
    process) into contiguous groups, one batch per worker."""
    if not todo:
        return []
    workers = default_workers(len(todo)) if workers is None else workers
    if workers == 0:
        return [[int(s) for s in todo]]
    import numpy as np

    return [[int(s) for s in g] for g in np.array_split(np.asarray(todo), min(workers, len(todo)))]


def _report_job(q, key, job: Callable) -> None:
    """In a worker: run ``job(progress)``, sending ``("progress", key, n)`` whenever ``progress(n)`` is called with
    a new n, then ``("result", key, value)`` or ``("error", key, one-line message)``."""
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


def _pool_worker(core: int | None, study, tasks, results) -> None:
    if core is not None:
        pin_to_core(core)
    for batch in iter(tasks.get, None):
        _report_job(results, batch.batch_id, lambda progress, batch=batch: study.measure(batch, progress))


@contextlib.contextmanager
def _pinned_workers(target: Callable, per_worker_args: list[tuple], cores: list[int] | None = None):
    """One spawned process per entry of ``per_worker_args``, as ``target(core, *args)`` with worker i on core i
    (round robin; ``None`` on a single-core machine); any still running are terminated on exit."""
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


def _next_message(q, procs, died: str, watch: dict | None = None) -> tuple:
    """The next ``(kind, batch_id, payload)``; a :class:`MesalabError` naming ``died`` (what to do) if a worker
    exits abnormally (e.g. killed for memory). The workers are looked at every ``LIVENESS_S`` seconds even while
    messages keep arriving, so a live worker's stream of progress reports cannot hide a dead one; ``watch`` keeps
    the time of the last look across calls."""
    import time

    watch = {} if watch is None else watch
    while True:
        now = time.monotonic()
        if now - watch.get("checked", now) >= LIVENESS_S:
            watch["checked"] = now
            dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
            if dead and q.empty():  # messages already sent (results of others) are taken first
                raise MesalabError(f"a worker exited with code {dead[0].exitcode} (out of memory?); {died}")
        watch.setdefault("checked", now)
        try:
            return q.get(timeout=LIVENESS_S)
        except queue_mod.Empty:
            dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
            if dead:
                raise MesalabError(f"a worker exited with code {dead[0].exitcode} (out of memory?); {died}") from None
            if all(not p.is_alive() for p in procs):
                try:  # the last messages may still be arriving
                    return q.get(timeout=LIVENESS_S)
                except queue_mod.Empty:
                    raise MesalabError(f"the workers stopped before sending every result (a result that cannot be "
                                       f"pickled?); {died}") from None


def run_local(study, batches: list[Batch], workers: int, on_result: Callable, on_progress: Callable | None = None,
              cores: list[int] | None = None) -> None:
    """Measure ``batches`` on ``workers`` pinned processes (0: in this process, one after another); each result
    goes to ``on_result(batch, result)`` as it arrives, progress to ``on_progress(batch_id, units_done)``."""
    if not batches:
        return
    if workers == 0:
        for b in batches:
            try:
                result = study.measure(b, (lambda n, b=b: on_progress(b.batch_id, n)) if on_progress else None)
            except MesalabError as e:
                raise MesalabError(f"{b.batch_id}: {e}") from None
            except Exception as e:  # as a worker process reports it
                raise MesalabError(f"{b.batch_id}: worker failed: {type(e).__name__}: {e}") from None
            on_result(b, result)
        return
    workers = min(workers, len(batches))
    tasks, results = SPAWN.Queue(), SPAWN.Queue()
    for item in [*batches, *[None] * workers]:  # then one stop sign per worker
        tasks.put(item)
    # on an interruption the batches no worker took are still in the queue's buffer: without this, exiting would
    # wait for its feeder thread to hand them to workers that are gone (a hang after Ctrl-C)
    tasks.cancel_join_thread()
    by_id = {b.batch_id: b for b in batches}
    with _pinned_workers(_pool_worker, [(study, tasks, results)] * workers, cores) as procs:
        finished, watch = 0, {}
        while finished < len(batches):
            kind, batch_id, payload = _next_message(results, procs, "re-run the same command to resume, with "
                                                                    "--workers 1", watch)
            if kind == "progress":
                if on_progress:
                    on_progress(batch_id, payload)
            elif kind == "result":
                on_result(by_id[batch_id], payload)
                finished += 1
            else:
                raise MesalabError(f"{batch_id}: {payload}")


class _RayWorker:
    """A Ray actor that measures batches, each in a child process pinned to this worker's core on a CPU node."""

    def __init__(self, core: int | None):
        self.core = core

    def run(self, study, batch: Batch) -> tuple[str, Any]:
        """``(batch_id, result)``: the id says which batch came back (the pool returns them in any order)."""
        import jax

        if jax.default_backend() != "cpu":
            return batch.batch_id, study.measure(batch, None)
        out: list = []
        run_local(study, [batch], 1, lambda b, r: out.append(r), cores=[self.core] if self.core is not None else None)
        return batch.batch_id, out[0]


def run_ray(study, batches: list[Batch], on_result: Callable, address: str | None = None,
            workers: int | None = None) -> None:
    """Measure ``batches`` on Ray: one actor per worker (one CPU each) pulls batches until none is left.
    ``address=None`` starts a local Ray instance for this command (one worker per core, each pinned to its core);
    pass a cluster's address (``auto`` or ``ray://host:10001``) to use a running cluster."""
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
        from mesalab.plugins import ENV_VAR

        env = {k: os.environ[k] for k in (ENV_VAR,) if os.environ.get(k)}  # the actors load this process's plugins
        actor = ray.remote(num_cpus=1, max_restarts=0, **({"runtime_env": {"env_vars": env}} if env else {}))(_RayWorker)
        pool = ActorPool([actor.remote(cores[i % len(cores)] if address is None else None) for i in range(n)])
        for b in batches:
            pool.submit(lambda a, b: a.run.remote(study, b), b)
        by_id = {b.batch_id: b for b in batches}
        while pool.has_next():
            try:
                batch_id, result = pool.get_next_unordered()
            except Exception as e:  # a task's MesalabError arrives wrapped by Ray
                cause = getattr(e, "cause", None) or e
                raise MesalabError(f"a batch failed on Ray: {cause}") from None
            on_result(by_id[batch_id], result)
    finally:
        if started:
            ray.shutdown()


# -- the one entry point --------------------------------------------------------------------------------------

def check_backend(backend: str, workers: int | None, address: str | None) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; use --backend local or --backend ray")
    if address is not None and backend != "ray":
        raise ConfigError("--address is for --backend ray; add --backend ray or drop --address")
    if backend == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ConfigError("--backend ray needs Ray (pip install 'ray'); or use --backend local")
        if workers == 0:
            raise ConfigError("--workers 0 (in-process) is for --backend local; pass --workers 1 or more with ray")


def execute(study, folder, batches: list[Batch], workers: int | None = None, backend: str = "local",
            address: str | None = None, on_progress: Callable[[float], None] | None = None) -> None:
    """Measure every batch and commit each result into ``folder`` as it arrives. ``on_progress(cells)`` is told
    how many cells are done (fractions while a batch is being measured, whole once it is committed)."""
    progress: dict[str, float] = {}
    by_id = {b.batch_id: b for b in batches}

    def report(batch_id: str, units: int) -> None:
        b = by_id[batch_id]
        progress[batch_id] = len(b.cells) * min(1.0, units / max(b.units, 1)) * 0.95
        if on_progress:
            on_progress(sum(progress.values()))

    def on_result(batch: Batch, result) -> None:
        study.commit(folder, batch, result)
        progress[batch.batch_id] = float(len(batch.cells))
        if on_progress:
            on_progress(sum(progress.values()))

    if backend == "ray":
        run_ray(study, batches, on_result, address=address, workers=workers)
    else:
        n_workers = default_workers(len(batches)) if workers is None else workers
        run_local(study, batches, n_workers, on_result, report)
