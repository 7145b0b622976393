"""The study's grid on Dask: one cluster per run, and the grid's units (one training run, one fold, one HPO
trial) submitted to it as tasks.

Conventions
-----------
- Scheduler: one vocabulary (:func:`as_scheduler`) wherever a scheduler is taken: ``None`` or ``"none"`` runs a
  grid in-process, one task after another (debugging, and the notebooks' default when executed by hand);
  ``"local"`` a local cluster on this machine (for a whole run in :func:`open_cluster`, for one grid in
  :func:`run_grid`); an address (``tls://host:8786`` with credentials, or ``tcp://host:8786``) sends it to that
  Dask scheduler (:mod:`helpers.compute.security`: credentials, and the warning for plain tcp:// to another
  host). A local cluster listens on 127.0.0.1 only, its dashboard included. The runner
  (``python -m helpers.study run``) owns the cluster (:func:`open_cluster`) and passes its address to every
  notebook that declares a ``scheduler`` parameter.
- Threads: a local cluster has ``workers`` worker processes of one Dask thread each, and each task runs torch
  with ``cores // workers`` threads (:func:`task_threads`), so workers x threads = cores. Worker processes get
  ``OMP_WAIT_POLICY=PASSIVE`` and ``OMP_NUM_THREADS`` (spinning OpenMP threads made torch 10-70x slower on 2
  shared cores); a worker started elsewhere (``dask worker``, Slurm) reads ``HONEST_TORCH_THREADS`` when set.
- Determinism: a task depends only on its arguments (its seed among them), never on which worker runs it or
  when; results equal the in-process run's when the torch thread count is the same.
- Outputs: a task writes its files atomically into the shared workspace and skips work already done there, so a
  rerun after an interruption does only what is missing. A worker lost mid-task is replaced by Dask, which
  reruns the task elsewhere (``distributed.scheduler.allowed-failures``); an exception inside a task is not
  retried: it stops the grid with :class:`GridError` naming the task.
- Placement: a task goes to a worker only when that worker has a free thread; until then it waits in the
  scheduler's queue, from which any worker that frees up takes it. (Dask's default sends a task with no
  dependencies at once to the least-occupied worker by its *estimated* durations, which for a task never seen before
  is a guess of half a second: tasks then queued behind a long training run on one worker while the other idled.)
  Grid tasks are therefore submitted as data-producing, i.e. root tasks, which the scheduler queues, and a local
  cluster runs with ``distributed.scheduler.worker-saturation`` 1.0 (one task per thread; Dask's 1.1 would give a
  one-thread worker a second task). A scheduler started elsewhere should set the same
  (``DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION=1.0``); without it tasks still run, two per worker at most.
- Memory: Dask's nannies start workers with ``MALLOC_TRIM_THRESHOLD_=65536`` by default (to hand freed memory back
  to the system at once), and they set it in the starting process too, so the runner's later section processes
  inherited it. With it, glibc returns and re-requests the pages of torch's per-step buffers at every step instead
  of reusing them: measured on the 2-core machine (``wmh``, attention U-Net, 40 steps and 2 validations, one
  thread) system time 11.4 s instead of 1.5 s for the same 13.7 s of user time, and 42 s wall instead of 24 s. A
  local cluster's workers start with the study's allocator settings instead
  (:data:`helpers.compute.runtime.ALLOCATOR_ENV`, through :func:`nanny_config`): freed memory is kept for reuse.
- Resources: tasks that need a GPU are submitted with ``resources={"GPU": 1}``; CPU tasks declare nothing and
  run on any worker.
- Priority: a grid's tasks carry a priority (higher first among queued tasks); the runner gives each section's
  grids the number of sections waiting downstream of it (``$HONEST_GRID_PRIORITY``), so that a dataset's training
  runs before the small-data study's folds, which nothing waits for. A grid that finishes a section (the test
  predictions after the training) runs one above it (:data:`FINISHING_BOOST`): a dataset whose models are trained
  gets its predictions, and so its evaluation chapters, while other datasets' training waits, instead of after it.
- Progress: each finished task is logged as a Dask event on topic :data:`TOPIC`; the runner prints one line per
  task (count, label, seconds; when it was submitted, started and ended, in seconds since the cluster opened, and
  on which worker: the run's timeline). In-process grids print their lines themselves when ``progress`` is on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from helpers.compute.security import check_address, security_from_environment
from helpers.compute.runtime import (
    THREADS_ENV, allocator_environment, available_cores, cuda_available, task_threads, torch_settings,
)

__all__ = [
    "TOPIC", "PRIORITY_ENV", "FINISHING_BOOST", "IN_PROCESS", "LOCAL", "LOOPBACK", "as_scheduler", "SCHEDULER_CONFIG",
    "nanny_config", "WORKER_CLOSE_TIMEOUT", "GridError",
    "GridTask", "local_layout", "worker_environment", "ClusterInfo", "open_cluster", "ProgressPrinter", "run_grid",
    "grid_priority",
]

#: Dask event topic of finished grid tasks and started grids.
TOPIC = "honest-grid"
#: Environment variable holding the default priority of the grids a process submits (the runner sets it for each
#: section: work that later sections wait for first); higher runs first.
PRIORITY_ENV = "HONEST_GRID_PRIORITY"
#: Added to the priority of a grid that finishes its section (see "Priority" above).
FINISHING_BOOST = 1
#: ``scheduler`` values that mean "in-process, sequential" (:func:`as_scheduler` makes them None).
IN_PROCESS = (None, "none", "")
#: The ``scheduler`` value that means "a local cluster on this machine", wherever a scheduler is taken.
LOCAL = "local"
#: The one interface a local cluster listens on (scheduler, workers, nannies, dashboard).
LOOPBACK = "127.0.0.1"


def as_scheduler(scheduler) -> str | None:
    """The one vocabulary of ``scheduler``, checked once: None for in-process (``None``, ``"none"``, ``""``),
    :data:`LOCAL` (``"local"``: a local cluster on this machine), else the address of a running Dask scheduler
    (``tcp://host:8786``, ``host:8786``), returned as given. Used by :func:`open_cluster`, :func:`run_grid` and
    the command line alike."""
    if scheduler in IN_PROCESS:
        return None
    if not isinstance(scheduler, str):
        raise TypeError(f"scheduler must be 'local', 'none' or a Dask scheduler address, got "
                        f"{type(scheduler).__name__}: {scheduler!r}")
    if scheduler != LOCAL and (scheduler != scheduler.strip() or " " in scheduler):
        raise ValueError(f"scheduler must be 'local', 'none' or a Dask scheduler address such as "
                         f"'tcp://host:8786', got {scheduler!r}")
    return scheduler
#: Dask configuration of the scheduler of a local cluster (see "Placement" above).
SCHEDULER_CONFIG = {"distributed.scheduler.worker-saturation": 1.0}


def nanny_config() -> dict:
    """Dask configuration of the nannies of a local cluster's workers (see "Memory" above): the allocator settings
    (:func:`helpers.compute.runtime.allocator_environment`) in place of Dask's ``MALLOC_TRIM_THRESHOLD_=65536``, set
    before each worker process starts (glibc reads them then; Dask also sets them in this process)."""
    return {f"distributed.nanny.pre-spawn-environ.{name}": value for name, value in allocator_environment().items()}


class GridError(RuntimeError):
    """A task of a grid failed; the message names the task and the error. Earlier tasks' outputs are intact."""


@dataclass(frozen=True)
class GridTask:
    """One unit of a grid: ``function(*args, **kwargs)`` with a human label such as ``"wmh · unet · seed 0"``.

    ``gpu``: submit with the resource ``GPU=1``. ``after``: labels of tasks of the same grid that must finish first
    (e.g. HPO trial k after trial k-1 of the same model)."""

    label: str
    function: Callable
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    gpu: bool = False
    after: tuple[str, ...] = ()


# ---- threads ------------------------------------------------------------------------------------------------------


def local_layout(workers: int | None = None, *, cores: int | None = None) -> tuple[int, int]:
    """``(workers, torch threads per worker)`` of a local cluster: ``workers`` (default: one per core) and
    ``cores // workers`` threads, at least 1, so that workers x threads <= cores."""
    cores = available_cores() if cores is None else int(cores)
    if workers is None:
        workers = cores
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    return workers, max(1, cores // workers)


def worker_environment(threads: int) -> dict[str, str]:
    """Environment of a worker process whose tasks run torch with ``threads`` threads."""
    n = str(int(threads))
    return {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
            THREADS_ENV: n, "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}


# ---- the cluster of a run -------------------------------------------------------------------------------------------


@dataclass
class ClusterInfo:
    """What the runner tells the user and the notebooks: the scheduler address (None: in-process), the dashboard
    link and the number of workers."""

    address: str | None
    dashboard: str | None = None
    workers: int = 0
    threads_per_worker: int = 0


@contextlib.contextmanager
def _workers_ignore_sigint():
    """Worker processes started in this block ignore SIGINT (an ignored signal stays ignored in a spawned child):
    a terminal's Ctrl-C reaches the whole foreground process group, local workers included, and it is the runner
    that decides how a run stops (it stops its notebooks, then closes the cluster), not each worker with a
    traceback of its own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def open_cluster(scheduler: str | None = LOCAL, *, workers: int | None = None, connect_timeout: str = "30s",
                 security=None, out=sys.stdout):
    """The cluster of one run, closed on exit.

    ``scheduler`` (:func:`as_scheduler`): ``"local"`` starts a ``distributed.LocalCluster`` sized to this machine
    (:func:`local_layout`); ``"none"``/None runs in-process; any other value is the address of a running Dask
    scheduler to connect to, with ``security`` (a ``distributed.Security``; None: :func:`security_from_environment`)
    for a ``tls://`` one (:func:`helpers.compute.security.check_address`). A local cluster binds every socket,
    dashboard included, to 127.0.0.1. Yields a :class:`ClusterInfo`; while open, the runner's client prints one
    line per finished grid task."""
    scheduler = as_scheduler(scheduler)
    if scheduler is None:
        if workers is not None:
            raise GridError("workers sizes a local cluster only; in-process runs have no workers")
        print("dask: none (in-process, one task at a time)", file=out, flush=True)
        yield ClusterInfo(address=None)
        return
    if scheduler != LOCAL and workers is not None:
        raise GridError("workers sizes a local cluster only; with a scheduler address the cluster is sized "
                        "where it was started")
    if scheduler != LOCAL:
        security = security_from_environment() if security is None else security
        check_address(scheduler, security, out=out)
    elif security is not None:
        raise GridError("security applies to a scheduler address; a local cluster listens on 127.0.0.1 only")
    with contextlib.ExitStack() as stack:
        client, cluster, threads = _start_client(scheduler, workers, connect_timeout, stack, security)
        info = ClusterInfo(address=client.scheduler.address, dashboard=client.dashboard_link,
                           workers=len(client.scheduler_info(n_workers=-1)["workers"]), threads_per_worker=threads)
        what = "local cluster" if cluster is not None else "scheduler"
        per = f" x {threads} torch threads" if threads else ""
        print(f"dask: {what} {info.address}, {info.workers} workers{per}; dashboard {info.dashboard}",
              file=out, flush=True)
        client.subscribe_topic(TOPIC, ProgressPrinter(out=out))
        stack.callback(_unsubscribe, client)
        yield info


def _start_client(scheduler: str, workers: int | None, connect_timeout: str, stack: contextlib.ExitStack,
                  security=None):
    """``(client, local cluster or None, torch threads per worker or 0)``, each closed when ``stack`` closes."""
    import dask  # lazy: dask and distributed load only when a run uses a cluster
    from distributed import Client, LocalCluster

    if scheduler != LOCAL:
        try:
            client = Client(scheduler, timeout=connect_timeout, security=security)
        except OSError as err:
            raise GridError(f"cannot connect to the Dask scheduler at {scheduler!r}: {err}") from None
        stack.callback(client.close)
        return client, None, 0
    n, threads = local_layout(workers)
    gpu = cuda_available()
    # the scheduler of a LocalCluster runs in this process and reads its configuration when it starts
    with _workers_ignore_sigint(), dask.config.set({**SCHEDULER_CONFIG, **nanny_config()}):
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, host=LOOPBACK, dashboard_address=f"{LOOPBACK}:0",
            resources={"GPU": 1} if gpu else None, env=worker_environment(threads),
        )
    stack.callback(cluster.close)
    # closed in reverse order: the client, then the workers (given the time they need), then the cluster
    stack.callback(_close_local_workers, cluster)
    client = Client(cluster)
    stack.callback(client.close)
    return client, cluster, threads


#: Seconds a local worker process gets to exit when the cluster closes. A worker that has imported torch takes
#: about 5 s to exit on two cores, longer than the 4 s that ``distributed``'s own close waits before it kills the
#: process with "Worker process still alive after 4.0 seconds, killing"; a worker still alive after this is
#: killed, with that warning.
WORKER_CLOSE_TIMEOUT = 30.0


async def _close_nannies(nannies, timeout: float) -> None:
    import asyncio  # only where a local cluster closes

    await asyncio.gather(*(nanny.close(timeout=timeout) for nanny in nannies))


def _close_local_workers(cluster, timeout: float = WORKER_CLOSE_TIMEOUT) -> None:
    """Close a local cluster's worker processes, each given ``timeout`` seconds to exit, before the cluster
    closes (it would give them 4 s and then kill them)."""
    nannies = [w for w in cluster.workers.values() if hasattr(w, "close")]
    if nannies:
        with contextlib.suppress(Exception):  # a worker already gone: the cluster's own close handles the rest
            cluster.sync(_close_nannies, nannies, timeout)


def _unsubscribe(client) -> None:
    with contextlib.suppress(Exception):
        client.unsubscribe_topic(TOPIC)


class ProgressPrinter:
    """Prints the grid events of :data:`TOPIC`: a line per finished task with the run's count, the task's seconds,
    its start and end (seconds since the printer was made, i.e. since the cluster opened) and its worker."""

    def __init__(self, *, out=sys.stdout):
        self.out, self.start, self.total, self.done = out, time.time(), 0, 0

    def __call__(self, event) -> None:
        _, msg = event
        if msg.get("event") == "grid":
            self.total += int(msg["n"])
            print(f"    grid {msg['name']}: {msg['n']} tasks", file=self.out, flush=True)
        elif msg.get("event") == "task":
            self.done += 1
            when = ""
            if "start" in msg and "end" in msg:
                queued = f"queued from {msg['submitted'] - self.start:.1f} s, " if "submitted" in msg else ""
                when = (f" ({queued}ran {msg['start'] - self.start:.1f} s to {msg['end'] - self.start:.1f} s on "
                        f"worker {msg.get('worker', '?')})")
            print(f"    [{self.done}/{self.total}] {msg['label']:<40} {msg['status']} in {msg['seconds']:6.1f} s"
                  f"{when}", file=self.out, flush=True)


# ---- running a grid -----------------------------------------------------------------------------------------------


def _run_task(function: Callable, label: str, args: tuple, kwargs: dict, submitted: float, *_after) -> Any:
    """What a worker executes: the task under the worker's torch thread count, logged as a grid event with the
    time it was submitted (``submitted``, wall clock), started and ended: the run's timeline.
    (``_after``: results of prerequisite tasks, passed only so that Dask orders them.)"""
    start = time.time()
    with torch_settings(num_threads=task_threads(), deterministic=None):
        result = function(*args, **kwargs)
    end = time.time()
    status = "up to date" if isinstance(result, dict) and result.get("up_to_date") else "done"
    with contextlib.suppress(ValueError, ImportError):
        from distributed import get_worker  # lazy: absent from in-process runs' concerns; raises outside a worker

        worker = get_worker()
        worker.log_event(TOPIC, {"event": "task", "label": label, "status": status, "seconds": round(end - start, 2),
                                 "submitted": submitted, "start": start, "end": end, "worker": worker.name})
    return result


def run_grid(tasks: Sequence[GridTask], *, scheduler: str | None = None, name: str = "grid",
             progress: bool = True, priority: int | None = None, security=None, out=sys.stdout) -> list:
    """Run every task and return their results in the order of ``tasks``.

    ``scheduler`` (:func:`as_scheduler`, the same vocabulary as :func:`open_cluster`): None/"none" in-process and
    sequential; ``"local"`` a local cluster started for this grid and closed after it; else the address of a Dask
    scheduler, with ``security`` for a ``tls://`` one (None: :func:`security_from_environment`, the credentials the
    runner named for its notebooks). ``priority``: of the grid's tasks among all queued on the cluster, higher first
    (default: ``$HONEST_GRID_PRIORITY``, else 0).
    The first failing task stops the grid: the others are cancelled and :class:`GridError` names the failing task
    and its error."""
    tasks = list(tasks)
    labels = [t.label for t in tasks]
    if len(set(labels)) != len(labels):
        raise ValueError(f"grid {name!r}: task labels must be unique, got {labels}")
    for t in tasks:
        unknown = set(t.after) - set(labels)
        if unknown:
            raise ValueError(f"grid {name!r}: task {t.label!r} waits for unknown task(s) {sorted(unknown)}")
    scheduler = as_scheduler(scheduler)
    if scheduler is None:
        return _run_in_process(tasks, name=name, progress=progress, out=out)
    if scheduler == LOCAL:
        with open_cluster(LOCAL, out=out) as info:
            return _run_on_dask(tasks, info.address, name=name,
                                priority=grid_priority() if priority is None else priority)
    security = security_from_environment() if security is None else security
    check_address(scheduler, security, out=out)
    return _run_on_dask(tasks, scheduler, name=name, priority=grid_priority() if priority is None else priority,
                        security=security)


def _run_in_process(tasks, *, name, progress, out) -> list:
    results, start = [], time.perf_counter()
    for i, task in enumerate(tasks, start=1):
        t0 = time.perf_counter()
        try:
            result = _run_task(task.function, task.label, task.args, task.kwargs, time.time())
        except Exception as err:
            raise GridError(f"{name}: task {task.label} failed: {type(err).__name__}: {err}") from err
        results.append(result)
        if progress and os.environ.get("TQDM_DISABLE", "0") in ("0", "", "false", "False"):
            status = "up to date" if isinstance(result, dict) and result.get("up_to_date") else "done"
            print(f"[{i}/{len(tasks)}] {task.label:<40} {status} in {time.perf_counter() - t0:6.1f} s "
                  f"(elapsed {time.perf_counter() - start:6.1f} s)", file=out, flush=True)
    return results


def grid_priority(*, finishing: bool = False) -> int:
    """The default priority of this process's grids: ``$HONEST_GRID_PRIORITY`` when set, else 0; plus
    :data:`FINISHING_BOOST` for a grid that finishes its section (``finishing``)."""
    value = os.environ.get(PRIORITY_ENV, "0")
    try:
        base = int(value)
    except ValueError:
        raise ValueError(f"${PRIORITY_ENV} must be an integer, got {value!r}") from None
    return base + (FINISHING_BOOST if finishing else 0)


def _run_on_dask(tasks, scheduler: str, *, name, priority: int = 0, security=None) -> list:
    from distributed import Client  # lazy: dask loads only for grids sent to a cluster

    with Client(scheduler, timeout="30s", security=security) as client:
        if any(t.gpu for t in tasks):
            _check_gpu_workers(client, name)
        client.log_event(TOPIC, {"event": "grid", "name": name, "n": len(tasks)})
        futures = _submit(client, tasks, name, priority)
        _wait_for(client, futures, [t.label for t in tasks], name)
        return [f.result() for f in futures]


def _submit(client, tasks, name: str, priority: int) -> list:
    """One future per task, in order. A CPU task is submitted as a data-producing task, which the scheduler
    queues until a worker has a free thread (see "Placement"); a GPU task carries its resource (resource-restricted
    tasks are placed directly: queueing does not apply to them)."""
    from dask.task_spec import Task  # lazy, as in _run_on_dask

    run_id = uuid.uuid4().hex[:8]
    by_label: dict = {}
    futures = []
    for t in tasks:
        key = f"{_slug(name)}-{_slug(t.label)}-{run_id}"
        after = [by_label[a] for a in t.after]
        now = time.time()
        if t.gpu:
            future = client.submit(_run_task, t.function, t.label, t.args, t.kwargs, now, *after, key=key,
                                   pure=False, resources={"GPU": 1}, priority=priority)
        else:
            spec = Task(key, _run_task, t.function, t.label, t.args, t.kwargs, now, *after, _data_producer=True)
            future = client.get({key: spec}, key, sync=False, priority=priority)
        by_label[t.label] = future
        futures.append(future)
    return futures


def _wait_for(client, futures: list, labels: list[str], name: str) -> None:
    """Wait for every future; the first failed or cancelled one cancels the rest and raises :class:`GridError`."""
    from distributed import as_completed  # lazy, as in _run_on_dask

    label_of = {f.key: label for f, label in zip(futures, labels)}
    for future in as_completed(futures):
        if future.status == "error":
            err = future.exception()
            client.cancel(futures)
            raise GridError(f"{name}: task {label_of[future.key]} failed: {type(err).__name__}: {err}") from err
        if future.status == "cancelled":
            client.cancel(futures)
            raise GridError(f"{name}: task {label_of[future.key]} was cancelled (the cluster went away?)")


def _check_gpu_workers(client, name: str) -> None:
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    if not any(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers):
        raise GridError(f"{name}: tasks need a GPU (device 'cuda') but no worker of the cluster declares the "
                        f"resource GPU (start workers with --resources GPU=1, or run with device 'cpu')")


def _slug(label: str) -> str:
    """``"wmh · unet · seed 0"`` -> ``"wmh-unet-seed-0"`` (readable Dask keys on the dashboard)."""
    return "-".join("".join(c if c.isalnum() else " " for c in label).split())
