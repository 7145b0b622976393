"""Which sections run when: the out-of-date tasks of a plan, each as soon as the sections it depends on are done,
independent ones side by side on the run's Dask cluster (sections waiting for their grid hold no CPU slot), ready
ones first by how much of the plan waits on them; the run's report."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from helpers.base.paths import Workspace, relative
from helpers.compute import cluster, runtime
from helpers.compute.security import SecurityError, load_security
from helpers.data.datasets import DATASETS
from helpers.runner.errors import Interrupted, StudyError
from helpers.runner.execution import execute, kernel_environment
from helpers.runner.interrupts import stop_requested
from helpers.runner.plan import Task, is_up_to_date, notebook_parameters, notebooks_dir

__all__ = [
    "RunReport", "execute_tasks", "pass_scheduler", "section_dependencies", "submits_to_cluster", "section_priorities",
    "run_sections", "SectionRun",
]


@dataclass
class RunReport:
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def execute_tasks(tasks: list[Task], ws: Workspace, prof: dict, prof_path: Path, *, force: bool = False,
                  scheduler: str | None = None, workers: int | None = None, security: str | None = None,
                  out=sys.stdout) -> RunReport:
    """Execute the out-of-date tasks, independent ones concurrently (:func:`run_sections`) on the run's Dask
    cluster, reporting progress; stop at the first failure or interrupt (the tasks already done keep their
    stamps). At most as many sections computing in their own process run at once as this machine has cores
    (one with no cluster); the sections whose grids run on the cluster do not count (see :func:`run_sections`).
    ``security``: the path of a security file (:mod:`helpers.compute.security`) for a ``tls://`` scheduler; its
    path, never its contents, reaches the notebooks' kernels."""

    report = RunReport()
    start = time.perf_counter()
    print(f"study: profile {prof['profile']} ({relative(prof_path)}), workspace {relative(ws.root)}, "
          f"{len(tasks)} section runs", file=out, flush=True)
    try:
        credentials = None if security is None else load_security(security)
        with (_environment(kernel_environment(security_file=security)),
              cluster.open_cluster(scheduler, workers=workers, security=credentials, out=out) as info):
            start = time.perf_counter()
            pass_scheduler(tasks, info.address)
            parallel = 1 if info.address is None else runtime.available_cores()
            run_sections(tasks, ws, report, force=force, parallel=parallel, out=out)
    except (cluster.GridError, SecurityError) as err:
        raise StudyError(str(err)) from None
    report.seconds = time.perf_counter() - start
    return report


def pass_scheduler(tasks: list[Task], address: str | None) -> None:
    """Give the Dask scheduler's address (None: in-process) to every task whose notebook declares ``scheduler``.
    Called after :func:`assign_keys`: where the tasks run never changes results, so it is not part of a key."""
    for task in tasks:
        if "scheduler" in notebook_parameters(notebooks_dir() / task.section.notebook):
            task.params["scheduler"] = address


def section_dependencies(tasks: list[Task]) -> dict[int, set[int]]:
    """For each task (by index), the tasks of the plan it must wait for: its ``depends`` sections of the same
    dataset, or of every dataset it reads (study sections)."""
    index = {(t.dataset, t.section.name): i for i, t in enumerate(tasks)}
    deps: dict[int, set[int]] = {}
    for i, task in enumerate(tasks):
        targets = [task.dataset] if task.section.scope == "dataset" else list(task.params.get("datasets", DATASETS))
        deps[i] = {index[(ds, dep)] for dep in task.section.depends for ds in targets if (ds, dep) in index}
    return deps


def submits_to_cluster(task: Task) -> bool:
    """Whether a section's heavy work runs as grid tasks on the run's Dask cluster (its notebook received a
    scheduler address): the notebook's own process then mostly waits for its tasks."""
    return task.params.get("scheduler") is not None


def section_priorities(tasks: list[Task]) -> dict[int, int]:
    """For each task (by index), how many tasks of the plan depend on it, directly or not: its grid's priority on
    the cluster and its rank among ready sections. Work that later sections wait for (a dataset's training, before
    its evaluation chain) goes first; work nothing waits for (the small-data study) fills the gaps."""
    deps = section_dependencies(tasks)
    dependents: dict[int, set[int]] = {i: set() for i in deps}
    for i, before in deps.items():
        for d in before:
            dependents[d].add(i)

    def downstream(i: int) -> set[int]:
        found, stack = set(), [i]
        while stack:
            for j in dependents[stack.pop()] - found:
                found.add(j)
                stack.append(j)
        return found

    return {i: len(downstream(i)) for i in deps}


def run_sections(tasks: list[Task], ws: Workspace, report: RunReport, *, force: bool = False, parallel: int = 1,
                 out=sys.stdout) -> None:
    """Execute the out-of-date tasks, each as soon as the tasks it depends on are done. Sections that compute in
    their own process run at most ``parallel`` at a time; sections whose grids go to the cluster
    (:func:`submits_to_cluster`) are not counted: the cluster's workers bound their work, and a section waiting for
    its tasks must not hold a slot that a runnable section needs. Ready sections start in the order of
    :func:`section_priorities`, which is also their grids' priority on the cluster. The first failure stops new
    starts; the running ones finish; then its error is raised."""
    SectionRun(tasks, ws, report, force=force, parallel=parallel, out=out).run()


class SectionRun:
    """The bookkeeping of :func:`run_sections`: which sections wait, run and are done, and the first failure."""

    def __init__(self, tasks: list[Task], ws: Workspace, report: RunReport, *, force: bool, parallel: int, out):
        self.tasks, self.ws, self.report, self.force, self.out = tasks, ws, report, force, out
        self.parallel = max(1, int(parallel))
        self.deps = section_dependencies(tasks)
        self.priority = section_priorities(tasks)
        self.done: set[int] = set()
        self.waiting = list(range(len(tasks)))
        self.running: dict = {}  # future -> task index
        self.failure: StudyError | None = None
        self.interrupted: list[str] = []  # the messages of the sections an interrupt stopped
        self.start = time.perf_counter()

    def run(self) -> None:
        # every section may run at once (grid sections are not bounded); the executor needs a size, not a bound
        workers = len(self.tasks) if self.parallel > 1 else 0
        with ThreadPoolExecutor(max_workers=workers) if workers else contextlib.nullcontext() as pool:
            while self.waiting or self.running:
                self._check_interrupt()
                self._start_ready(pool)
                if not self.running:
                    if self.failure is not None or not self.waiting:
                        break
                    continue  # skipped tasks freed others
                finished, _ = wait(self.running, return_when=FIRST_COMPLETED)
                for future in finished:
                    self._collect(future)
        if isinstance(self.failure, Interrupted) and len(self.interrupted) > 1:
            raise Interrupted("; ".join(self.interrupted))
        if self.failure is not None:
            raise self.failure

    def _prefix(self, i: int) -> str:
        return f"[{i + 1}/{len(self.tasks)}] {self.tasks[i].label:<32}"

    def _check_interrupt(self) -> None:
        if self.failure is None and stop_requested() and self.waiting:
            self.failure = Interrupted(f"interrupted ({stop_requested()}) before section "
                                       f"{self.tasks[self.waiting[0]].label}; the next run resumes there")

    def _computing(self) -> int:
        """Running sections that compute in their own process (the ones ``parallel`` bounds)."""
        return sum(not submits_to_cluster(self.tasks[i]) for i in self.running.values())

    def _start_ready(self, pool) -> None:
        """Start every section whose prerequisites are done and for which there is a slot; an up-to-date one is
        skipped at once, which may make others ready in turn."""
        skipped = True
        while skipped and self.failure is None:
            skipped = False
            ready = sorted((i for i in self.waiting if self.deps[i] <= self.done), key=lambda i: -self.priority[i])
            for i in ready:
                grid = submits_to_cluster(self.tasks[i]) and pool is not None
                if not grid and self._computing() >= self.parallel:
                    continue  # a grid section further down the list may still start
                self.waiting.remove(i)
                if not self.force and is_up_to_date(self.ws, self.tasks[i]):
                    self.report.skipped.append(self.tasks[i].label)
                    self.done.add(i)
                    skipped = True
                    print(f"{self._prefix(i)} up to date", file=self.out, flush=True)
                    continue
                print(f"{self._prefix(i)} running …", file=self.out, flush=True)
                priority = self.priority[i]
                future = (pool.submit(execute, self.tasks[i], self.ws, priority=priority) if pool
                          else _execute_now(self.tasks[i], self.ws))
                self.running[future] = i

    def _collect(self, future) -> None:
        i = self.running.pop(future)
        try:
            seconds = future.result()
        except Interrupted as err:
            self.interrupted.append(str(err))
            if self.failure is None or isinstance(self.failure, Interrupted):
                self.failure = err
            return
        except StudyError as err:
            if self.failure is None or isinstance(self.failure, Interrupted):
                self.failure = err
            return
        self.done.add(i)
        self.report.executed.append(self.tasks[i].label)
        print(f"{self._prefix(i)} done in {seconds:6.1f} s (elapsed {time.perf_counter() - self.start:6.1f} s)",
              file=self.out, flush=True)


def _execute_now(task: Task, ws: Workspace):
    """:func:`execute` in this thread (one section at a time), its outcome as a finished future."""

    future = Future()
    try:
        future.set_result(execute(task, ws))
    except StudyError as err:
        future.set_exception(err)
    return future


@contextlib.contextmanager
def _environment(values: dict):
    """Set environment variables for a block (the kernels of concurrently executed notebooks inherit them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
