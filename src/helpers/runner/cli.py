"""The study runner: the sections of the study, profiles, up-to-date checks, running the out-of-date section
notebooks with papermill (independent sections side by side, their grids on the run's Dask cluster), the book, and
the command line. Run ``python -m helpers.study --help``. The notebooks' own context is :mod:`helpers.runner.context`."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import nbformat
import numpy as np
import psutil
import yaml

from helpers.compute import cluster, runtime
from helpers import data as _data
from helpers.base import io as _io
from helpers.data import predictions as _predictions
from helpers.data import splits as _splits
from helpers.runner.context import GLOBAL
from helpers.data.datasets import DATASETS
from helpers.data.datasets import get as dataset_entry
from helpers.base.paths import Workspace, project_root, relative, resolve

__all__ = [
    "RUNNER_PARAMETERS", "Section", "SECTIONS", "SECTION_BY_NAME", "DATASET_SECTIONS", "STUDY_SECTIONS",
    "StudyError", "load_profile", "Task", "notebooks_dir", "notebook_parameters", "plan", "notebook_source_hash",
    "code_hash", "assign_keys", "stamp_path", "executed_path", "is_up_to_date", "kernel_environment", "Interrupted",
    "CHATTER", "quiet", "execute", "RunReport", "LOCK_FILE", "lock_path", "workspace_lock", "run", "run_profile",
    "execute_tasks", "pass_scheduler", "section_dependencies", "submits_to_cluster", "section_priorities",
    "run_sections", "SectionRun", "BOOK_FILES", "book_root", "stage_book_files", "toc_path", "toc", "write_toc",
    "build_book", "EVALUATE_SECTIONS", "add_evaluate_arguments", "prediction_models", "format_matching",
    "evaluate_command", "stage_predictions", "refresh_notebooks", "add_cluster_arguments", "build_parser", "main",
]

#: Parameters the runner itself passes to every notebook; each section notebook must declare them.
RUNNER_PARAMETERS = ("dataset", "profile", "workspace", "seed")


@dataclass(frozen=True)
class Section:
    """One section of the study: a notebook, its scope and the sections whose outputs it reads.

    ``scope`` is ``"dataset"`` (run once per dataset, ``depends`` are sections of the same dataset) or ``"study"``
    (run once; ``depends`` are per-dataset sections of *every* dataset, ``dataset`` is the name it runs under)."""

    name: str
    notebook: str
    title: str
    scope: str = "dataset"
    depends: tuple[str, ...] = ()
    dataset: str = GLOBAL
    part: str = ""


SECTIONS: tuple[Section, ...] = (
    Section("metric_definitions", "00_metric_definitions.ipynb", "Metric definitions", scope="study", part="method"),
    Section("data", "01_data.ipynb", "Data"),
    Section("training", "02_training.ipynb", "Training", depends=("data",)),
    Section("evaluation", "03_evaluation.ipynb", "Overall metrics", depends=("data", "training")),
    Section("stratification", "04_stratification.ipynb", "Lesion-size stratification", depends=("evaluation",)),
    Section("reversals", "05_reversals.ipynb", "Ranking reversals", depends=("stratification",)),
    Section("bootstrap", "06_bootstrap.ipynb", "Bootstrap robustness", depends=("stratification",)),
    Section("qualitative", "07_qualitative.ipynb", "Qualitative examples", depends=("stratification",)),
    Section(
        "cross_dataset",
        "08_cross_dataset.ipynb",
        "Across datasets: the paper's tables",
        scope="study",
        depends=("data", "evaluation", "stratification", "reversals", "bootstrap"),
        part="across",
    ),
    Section("failure_modes", "09_failure_modes.ipynb", "Failure-mode laboratory", scope="study", part="across"),
    Section(
        "small_data", "10_small_data.ipynb", "Small data: is there a best model at N = 9?", scope="study",
        dataset="small_data", part="small",
    ),
)
SECTION_BY_NAME = {s.name: s for s in SECTIONS}
DATASET_SECTIONS = tuple(s for s in SECTIONS if s.scope == "dataset")
STUDY_SECTIONS = tuple(s for s in SECTIONS if s.scope == "study")


class StudyError(Exception):
    """A problem the user must fix (bad profile, missing notebook, failing cell); the message says what and where."""


# ---- profiles ---------------------------------------------------------------------------------------------------

_PROFILE_KEYS = {"profile", "description", "seed", "datasets", "sections", "study"}


def load_profile(profile: str) -> tuple[dict, Path]:
    """Read ``profiles/<profile>.yaml`` (or a path to a YAML file) and check its structure."""

    path = Path(profile)
    if path.suffix not in (".yaml", ".yml"):
        path = project_root() / "profiles" / f"{profile}.yaml"
    path = resolve(path)
    if not path.exists():
        available = sorted(p.stem for p in (project_root() / "profiles").glob("*.yaml"))
        raise StudyError(f"profile {profile!r}: {path} not found (available: {', '.join(available) or 'none'})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise StudyError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise StudyError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    unknown = set(data) - _PROFILE_KEYS
    if unknown:
        raise StudyError(f"{path}: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(_PROFILE_KEYS)}")
    datasets = data.get("datasets") or {}
    if not isinstance(datasets, dict) or not datasets:
        raise StudyError(f"{path}: 'datasets' must map at least one of {list(DATASETS)} to its section parameters")
    for name, sections in datasets.items():
        if name not in DATASETS:
            raise StudyError(f"{path}: unknown dataset {name!r} under 'datasets'; known: {list(DATASETS)}")
        _check_section_mapping(path, f"datasets.{name}", sections or {}, DATASET_SECTIONS)
    _check_section_mapping(path, "sections", data.get("sections") or {}, DATASET_SECTIONS)
    _check_section_mapping(path, "study", data.get("study") or {}, STUDY_SECTIONS)
    data.setdefault("profile", path.stem)
    data.setdefault("seed", 0)
    return data, path


def _check_section_mapping(path: Path, where: str, mapping, allowed: Iterable[Section]) -> None:
    names = {s.name for s in allowed}
    if not isinstance(mapping, dict):
        raise StudyError(f"{path}: '{where}' must be a mapping of section name to parameters")
    for key, params in mapping.items():
        if key not in names:
            raise StudyError(f"{path}: unknown section {key!r} under '{where}'; known: {sorted(names)}")
        if params is not None and not isinstance(params, dict):
            raise StudyError(f"{path}: '{where}.{key}' must be a mapping of parameter names to values")


# ---- the plan ---------------------------------------------------------------------------------------------------


@dataclass
class Task:
    section: Section
    dataset: str  # the dataset it runs for (GLOBAL/"small_data" for study sections)
    params: dict
    origin: str  # where the parameters come from, for error messages
    key: str = ""

    @property
    def label(self) -> str:
        return f"{self.dataset} · {self.section.name}"


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def notebook_parameters(path: Path) -> dict[str, dict]:
    """The parameters a notebook declares in its cell tagged ``parameters`` (name -> default, help)."""
    import papermill  # lazy: papermill pulls in nbclient and jupyter; `--help` and the tests of the plan need neither

    if not path.exists():
        raise StudyError(f"notebook {relative(path)} not found (section notebooks live in notebooks/)")
    declared = papermill.inspect_notebook(str(path))
    if not declared:
        raise StudyError(f"{relative(path)}: no cell tagged 'parameters' (the runner passes its parameters there)")
    return declared


def plan(profile: dict, profile_path: Path, workspace: str, *, datasets: Iterable[str] | None = None,
         sections: Iterable[str] | None = None) -> list[Task]:
    """Every task of the profile in dependency order, with its merged and validated parameters."""
    chosen = list(profile["datasets"]) if datasets is None else list(datasets)
    for name in chosen:
        if name not in profile["datasets"]:
            raise StudyError(f"dataset {name!r} is not in profile {relative(profile_path)} "
                             f"(it runs {list(profile['datasets'])})")
    wanted = None if sections is None else set(sections)
    if wanted is not None:
        unknown = wanted - set(SECTION_BY_NAME)
        if unknown:
            raise StudyError(f"unknown section(s) {sorted(unknown)}; known: {[s.name for s in SECTIONS]}")
    base = {"profile": profile["profile"], "workspace": workspace, "seed": int(profile["seed"])}
    study_params = profile.get("study") or {}
    tasks: list[Task] = []

    def add(section: Section, dataset: str, extra: dict, origin: str) -> None:
        params = {**base, "dataset": dataset, **extra}
        if section.name == "cross_dataset":
            params.setdefault("datasets", list(profile["datasets"]))
        tasks.append(Task(section, dataset, params, origin))

    for section in STUDY_SECTIONS:
        if section.part == "method" and section.name in study_params:
            add(section, section.dataset, study_params.get(section.name) or {}, f"study.{section.name}")
    for dataset in chosen:
        own = profile["datasets"][dataset] or {}
        for section in DATASET_SECTIONS:
            merged = {**((profile.get("sections") or {}).get(section.name) or {}), **(own.get(section.name) or {})}
            add(section, dataset, merged, f"sections.{section.name} / datasets.{dataset}.{section.name}")
    for section in STUDY_SECTIONS:
        if section.part != "method" and section.name in study_params:
            add(section, section.dataset, study_params.get(section.name) or {}, f"study.{section.name}")
    for task in tasks:
        _validate_parameters(task, profile_path)
    if wanted is not None:
        tasks = [t for t in tasks if t.section.name in wanted]
    return tasks


def _validate_parameters(task: Task, profile_path: Path) -> None:
    path = notebooks_dir() / task.section.notebook
    declared = notebook_parameters(path)
    where = f"{relative(profile_path)} ({task.origin})"
    for name in RUNNER_PARAMETERS + (("datasets",) if task.section.name == "cross_dataset" else ()):
        if name not in declared:
            raise StudyError(f"{relative(path)}: the parameters cell lacks {name!r}, which the runner always passes")
    unknown = sorted(set(task.params) - set(declared))
    if unknown:
        raise StudyError(
            f"{where}: unknown parameter(s) {unknown} for notebook {relative(path)}; "
            f"it declares: {sorted(declared)}"
        )
    missing = sorted(
        name for name, info in declared.items()
        if "required" in (info.get("help") or "").lower() and name not in task.params
    )
    if missing:
        raise StudyError(f"{where}: missing required parameter(s) {missing} for notebook {relative(path)}")


# ---- staleness ----------------------------------------------------------------------------------------------------


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def notebook_source_hash(path: Path) -> str:
    """Hash of a notebook's cell types and sources (outputs and metadata do not count)."""

    nb = nbformat.read(path, as_version=4)
    return _digest([(c.cell_type, c.source) for c in nb.cells])


def code_hash() -> str:
    """Hash of the helpers package source: a change of code makes every section out of date."""
    pkg = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for file in sorted(pkg.rglob("*.py")):
        h.update(file.relative_to(pkg).as_posix().encode())
        h.update(file.read_bytes())
    return h.hexdigest()


def assign_keys(tasks: list[Task], ws: Workspace, all_datasets: Iterable[str]) -> None:
    """A task's key covers its notebook, its parameters, the code and its upstream sections' keys (read from their
    stamps when the upstream task is not in this plan)."""
    code = code_hash()
    keys: dict[tuple[str, str], str] = {}
    for task in tasks:
        upstream = []
        for dep in task.section.depends:
            targets = [task.dataset] if task.section.scope == "dataset" else list(task.params.get("datasets", all_datasets))
            for ds in targets:
                upstream.append(keys.get((ds, dep)) or _stamp_key(ws, ds, dep))
        nb = notebooks_dir() / task.section.notebook
        task.key = _digest({"nb": notebook_source_hash(nb), "params": task.params, "code": code, "up": upstream})
        keys[(task.dataset, task.section.name)] = task.key


def stamp_path(ws: Workspace, dataset: str, section: str) -> Path:
    return ws.root / "results" / ".stamps" / dataset / f"{section}.json"


def executed_path(ws: Workspace, task: Task) -> Path:
    return ws.executed(task.dataset) / task.section.notebook


def _stamp_key(ws: Workspace, dataset: str, section: str) -> str | None:
    path = stamp_path(ws, dataset, section)
    if not path.exists():
        return None
    try:
        return _io.read_json(path).get("key")
    except ValueError:
        return None


def is_up_to_date(ws: Workspace, task: Task) -> bool:
    return _stamp_key(ws, task.dataset, task.section.name) == task.key and executed_path(ws, task).exists()


# ---- execution ----------------------------------------------------------------------------------------------------


def kernel_environment() -> dict:
    """Environment of the notebook kernels: no progress bars in executed notebooks (the runner reports progress),
    a non-interactive matplotlib backend and the project root made explicit."""
    # OMP_WAIT_POLICY=PASSIVE: on a small shared machine, OpenMP threads that spin while waiting made torch
    # 10-70 times slower with 2 threads than with 1 (measured, see benchmarks/bench_training.py).
    return {"TQDM_DISABLE": "1", "MPLBACKEND": "Agg", "HONEST_PROJECT_ROOT": str(project_root()),
            "PYTHONHASHSEED": "0", "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


class Interrupted(StudyError):
    """The user interrupted the run (Ctrl-C, SIGINT or SIGTERM); the message names what was stopped."""


#: Lines of the notebook processes' output that are start-up chatter, not news for the user: the kernel's
#: warning about local TCP without encryption, its report of a caught interrupt, papermill's own log lines.
CHATTER = (
    "Kernel is running over TCP without encryption",
    "KeyboardInterrupt caught in kernel",
    "[IPKernelApp]",
    "Input Notebook:",
    "Output Notebook:",
    "Executing notebook with kernel",
    "Black is not installed",
    "To connect another client to this kernel",
)


def quiet(text: str) -> str:
    """``text`` without the lines of :data:`CHATTER` (and the indented continuation lines of such a warning)."""
    out, skipping = [], False
    for line in text.splitlines():
        if any(marker in line for marker in CHATTER):
            skipping = True
            continue
        if skipping and (line.startswith((" ", "\t")) or not line.strip()):
            continue
        skipping = False
        out.append(line)
    return "\n".join(out)


class _StopSignals:
    """While active, SIGINT and SIGTERM set a flag instead of raising in the middle of the runner's bookkeeping;
    the runner polls :attr:`received` while it waits for a notebook process and stops that process itself."""

    def __init__(self):
        self.received: str | None = None
        self._saved: dict = {}

    def _handler(self, signum, frame):

        self.received = signal.Signals(signum).name

    def __enter__(self):

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):

        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        return False


_SIGNALS: _StopSignals | None = None  # the active handler of the run in progress (None: default handlers)


def _stop_requested() -> str | None:
    return _SIGNALS.received if _SIGNALS is not None else None


def _terminate(proc) -> None:
    """Stop a notebook process and everything it started (its kernel runs in a session of its own, so a signal to
    the process group would miss it): SIGTERM to all, SIGKILL to whatever is left after 5 s."""

    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:  # it has ended on its own meanwhile
        family = []
    for member in family:
        try:
            member.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=5)
    for member in alive:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait(proc, what: str) -> int:
    """Wait for a child process, stopping it promptly when the user interrupts the run."""

    while True:
        try:
            return proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            signal_name = _stop_requested()
            if signal_name:
                _terminate(proc)
                raise Interrupted(f"interrupted ({signal_name}) during {what}") from None


def _run_notebook(source: Path, target: Path, params: dict, log: Path, *, env: dict | None = None) -> dict:
    """Execute ``source`` with papermill in a child process of its own session (so that a terminal's Ctrl-C
    reaches only the runner, which then stops the child and its kernel); its output goes to ``log``.

    Returns the child's result: ``{"ok": True}`` or the failure (``ename``, ``evalue``, ``exec_count``)."""

    spec = target.with_name(f".{target.stem}.spec.json")
    result = target.with_name(f".{target.stem}.result.json")
    result.unlink(missing_ok=True)
    _io.write_json({"source": str(source), "target": str(target), "params": params, "result": str(result)}, spec)
    env = {**os.environ, **kernel_environment(), **(env or {})}
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "helpers.study", "execute-notebook", str(spec)],
                                    cwd=project_root(), env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            rc = _wait(proc, "the notebook")
        if result.exists():
            return _io.read_json(result)
        tail = quiet(log.read_text(encoding="utf-8", errors="replace")).strip().splitlines()[-20:]
        return {"ok": False, "ename": "ProcessError", "evalue": f"the notebook process exited with code {rc}",
                "exec_count": None, "output": "\n".join(tail)}
    finally:
        spec.unlink(missing_ok=True)
        result.unlink(missing_ok=True)


def _die_with_parent() -> None:
    """Linux: have the kernel send this process SIGTERM when the runner dies, even by SIGKILL (which the runner
    cannot handle), so that no notebook goes on writing into a workspace whose lock is gone."""

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _execute_in_child(spec_path: str) -> int:
    """The child side of :func:`_run_notebook` (``python -m helpers.study execute-notebook SPEC``)."""
    import papermill  # lazy, as in notebook_parameters
    from papermill.exceptions import PapermillExecutionError

    _die_with_parent()
    spec = _io.read_json(spec_path)
    try:
        papermill.execute_notebook(spec["source"], spec["target"], parameters=spec["params"], cwd=str(project_root()),
                                   kernel_name="python3", progress_bar=False, log_output=False, report_mode=False)
        outcome = {"ok": True}
    except PapermillExecutionError as err:
        outcome = {"ok": False, "ename": err.ename, "evalue": err.evalue, "exec_count": err.exec_count}
    except Exception as err:
        outcome = {"ok": False, "ename": type(err).__name__, "evalue": str(err), "exec_count": None}
    _io.write_json(outcome, spec["result"])
    return 0 if outcome["ok"] else 1


def execute(task: Task, ws: Workspace, *, priority: int = 0) -> float:
    """Execute one task's notebook with papermill; on success write the executed notebook and the stamp
    atomically. On a failing cell raise :class:`StudyError` naming notebook, cell and error, and keep the failed
    notebook beside the executed ones (``*.failed.ipynb``) without touching earlier results. On an interrupt
    raise :class:`Interrupted`: the half-executed notebook is removed and nothing is stamped."""
    source = notebooks_dir() / task.section.notebook
    target = executed_path(ws, task)
    target.parent.mkdir(parents=True, exist_ok=True)
    failed = target.with_suffix(".failed.ipynb")
    tmp = target.with_name(f".{target.stem}.running.ipynb")
    log = target.with_name(f".{target.stem}.log")
    start = time.perf_counter()
    try:
        outcome = _run_notebook(source, tmp, task.params, log, env={cluster.PRIORITY_ENV: str(int(priority))})
    except Interrupted as err:
        tmp.unlink(missing_ok=True)
        raise Interrupted(f"{err} of section {task.label} ({relative(source)}); nothing of it was stamped, "
                          "the next run resumes there") from None
    seconds = time.perf_counter() - start
    if not outcome.get("ok"):
        if tmp.exists():
            os.replace(tmp, failed)
            cell = _failing_cell(failed)
            where = f"  the executed notebook with the traceback: {relative(failed)}\n"
        else:
            cell, where = "?", f"  the notebook process's output: {relative(log)}\n"
        extra = f"\n{outcome['output']}" if outcome.get("output") else ""
        raise StudyError(
            f"{relative(source)} failed for dataset {task.dataset!r} in cell {cell} "
            f"(execution count {outcome.get('exec_count')}): {outcome.get('ename')}: {outcome.get('evalue')}\n"
            f"{where}"
            f"  earlier results are intact; fix the problem and run again to resume{extra}"
        )
    log.unlink(missing_ok=True)
    _strip_papermill_metadata(tmp, collapse_parameters=True)
    os.replace(tmp, target)
    failed.unlink(missing_ok=True)
    _io.write_json(
        {"key": task.key, "section": task.section.name, "dataset": task.dataset, "params": task.params,
         "seconds": round(seconds, 1), "notebook": relative(source)},
        stamp_path(ws, task.dataset, task.section.name),
    )
    return seconds


def _failing_cell(path: Path) -> str:
    """Where an executed notebook failed: the 1-based index of the failing cell among the *source* notebook's
    cells (papermill's injected-parameters and error-banner cells not counted) and its first line."""

    nb = nbformat.read(path, as_version=4)
    index = 0
    for cell in nb.cells:
        tags = set(cell.metadata.get("tags", []))
        if tags & {"injected-parameters", "papermill-error-cell-tag"}:
            continue
        index += 1
        if any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
            first = next((line for line in cell.source.splitlines() if line.strip()), "")
            return f"{index} (`{first.strip()[:60]}`)"
    return "?"


def _strip_papermill_metadata(path: Path, *, collapse_parameters: bool = False) -> None:
    """Remove papermill's timing metadata so that executed notebooks differ only where outputs differ; with
    ``collapse_parameters`` also tag the parameters cells ``hide-input`` (the book shows them folded)."""

    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        tags = cell.metadata.get("tags", [])
        if collapse_parameters and {"parameters", "injected-parameters"} & set(tags) and "hide-input" not in tags:
            cell.metadata["tags"] = [*tags, "hide-input"]
    nbformat.write(nb, path)


@dataclass
class RunReport:
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ---- the workspace lock ---------------------------------------------------------------------------------------

LOCK_FILE = ".study.lock"


def lock_path(ws: Workspace) -> Path:
    return ws.root / LOCK_FILE


@contextlib.contextmanager
def workspace_lock(ws: Workspace, command: str, *, out=sys.stdout):
    """Hold the workspace's lock for the duration of a run: an exclusive ``flock`` on ``<ws>/.study.lock``, whose
    content (pid, host, start time, command) names the holder to a second run, which stops at once.

    The operating system releases a ``flock`` when its process dies, so the lock of a killed run is stale by
    construction: the next run takes it over (and says so)."""

    path = lock_path(ws)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            raise StudyError(
                f"workspace {relative(ws.root)} is in use by another run: {holder}. Wait for it to finish, stop it "
                f"(Ctrl-C in its terminal), or choose another --workspace"
            ) from None
        previous = _lock_holder(fd, default="")
        if previous:
            print(f"study: taking over the stale lock of a run that stopped without releasing it ({previous})",
                  file=out, flush=True)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # an empty lock file: released cleanly
    finally:
        os.close(fd)


def _lock_holder(fd: int, *, default: str = "a run whose details are unknown") -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "null")
    except (OSError, ValueError):
        return default
    if not isinstance(info, dict):
        return default
    return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: "
            f"{info.get('command')}")


# ---- running the study ------------------------------------------------------------------------------------------


def run(profile: str, *, workspace: str = ".", datasets=None, sections=None, force: bool = False,
        book: bool = True, scheduler: str | None = None, workers: int | None = None,
        out=sys.stdout) -> RunReport:
    """Run the study: every out-of-date section notebook of the profile, independent sections concurrently
    (one dataset's chain beside another's), then the book.

    ``scheduler``: None/``"none"`` (in-process, one section and one task at a time; the command line's default
    is ``"local"``), ``"local"`` (a Dask ``LocalCluster`` sized to this machine, ``workers`` worker processes) or
    the address of a running Dask scheduler; the address reaches every notebook that declares a ``scheduler``
    parameter (see ``helpers.compute.cluster``).

    The workspace is locked while the run lasts; Ctrl-C (SIGINT) or SIGTERM stops the notebooks in progress and
    raises :class:`Interrupted` naming them, with nothing stamped that did not finish."""
    prof, prof_path = load_profile(profile)
    return run_profile(prof, prof_path, workspace=workspace, datasets=datasets, sections=sections, force=force,
                       book=book, scheduler=scheduler, workers=workers, out=out)


def run_profile(prof: dict, prof_path: Path, *, workspace: str = ".", datasets=None, sections=None,
                force: bool = False, book: bool = True, scheduler: str | None = None, workers: int | None = None,
                out=sys.stdout) -> RunReport:
    """:func:`run` for a profile already loaded (:func:`load_profile`) or built by a command (``evaluate``)."""
    ws = Workspace.at(workspace)
    tasks = plan(prof, prof_path, workspace, datasets=datasets, sections=sections)
    with workspace_lock(ws, f"helpers.study run --profile {prof['profile']}", out=out), _signals():
        return _run_locked(tasks, ws, prof, prof_path, force=force, book=book, scheduler=scheduler,
                           workers=workers, out=out)


def _run_locked(tasks: list[Task], ws: Workspace, prof: dict, prof_path: Path, *, force: bool, book: bool,
                scheduler: str | None, workers: int | None, out) -> RunReport:
    assign_keys(tasks, ws, prof["datasets"])
    report = execute_tasks(tasks, ws, prof, prof_path, force=force, scheduler=scheduler, workers=workers, out=out)
    write_toc(prof, ws)
    print(f"study: {len(report.executed)} executed, {len(report.skipped)} up to date, "
          f"{report.seconds:.1f} s", file=out, flush=True)
    if book:
        build_book(ws, out=out)
    return report


@contextlib.contextmanager
def _signals():
    """Install the runner's SIGINT/SIGTERM handling for a block (nested blocks share the outer one)."""
    global _SIGNALS
    if _SIGNALS is not None:
        yield _SIGNALS
        return
    with _StopSignals() as handler:
        _SIGNALS = handler
        try:
            yield handler
        finally:
            _SIGNALS = None


def execute_tasks(tasks: list[Task], ws: Workspace, prof: dict, prof_path: Path, *, force: bool = False,
                  scheduler: str | None = None, workers: int | None = None, out=sys.stdout) -> RunReport:
    """Execute the out-of-date tasks, independent ones concurrently (:func:`run_sections`) on the run's Dask
    cluster, reporting progress; stop at the first failure or interrupt (the tasks already done keep their
    stamps). At most as many sections computing in their own process run at once as this machine has cores
    (one with no cluster); the sections whose grids run on the cluster do not count (see :func:`run_sections`)."""

    report = RunReport()
    start = time.perf_counter()
    print(f"study: profile {prof['profile']} ({relative(prof_path)}), workspace {relative(ws.root)}, "
          f"{len(tasks)} section runs", file=out, flush=True)
    try:
        with _environment(kernel_environment()), cluster.open_cluster(scheduler, workers=workers, out=out) as info:
            start = time.perf_counter()
            pass_scheduler(tasks, info.address)
            parallel = 1 if info.address is None else runtime.available_cores()
            run_sections(tasks, ws, report, force=force, parallel=parallel, out=out)
    except cluster.GridError as err:
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
        if self.failure is None and _stop_requested() and self.waiting:
            self.failure = Interrupted(f"interrupted ({_stop_requested()}) before section "
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


# ---- the book ---------------------------------------------------------------------------------------------------


#: The hand-written files the book needs besides the executed notebooks (relative to the project root).
BOOK_FILES = ("_config.yml", "book")


def book_root(ws: Workspace) -> Path:
    """The folder Jupyter Book builds from: the project root for a workspace inside the clone (the hand-written
    pages are read where they are), else the workspace itself, which then holds a copy of them
    (:func:`stage_book_files`): Sphinx reads only files below its source folder."""
    root = project_root()
    return root if ws.root == root or root in ws.root.parents else ws.root


def stage_book_files(ws: Workspace) -> None:
    """Copy the book's configuration and hand-written pages into a workspace outside the clone (atomically, file
    by file; the executed notebooks under ``book/executed`` are not touched)."""
    root = project_root()
    if book_root(ws) == root:
        return
    for name in BOOK_FILES:
        source = root / name
        files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        for file in files:
            rel = file.relative_to(root)
            if rel.parts[:2] == ("book", "executed") or any(part.startswith(".") for part in rel.parts):
                continue
            _io.write_bytes(ws.root / rel, file.read_bytes())


def toc_path(ws: Workspace) -> Path:
    """The book's table of contents: ``_toc.yml`` at the project root for the main workspace, else inside the
    workspace."""
    return project_root() / "_toc.yml" if ws.root == project_root() else ws.root / "_toc.yml"


def toc(profile: dict, ws: Workspace) -> dict:
    """The table of contents for the datasets and chapters of ``profile``: one part per dataset plus the
    cross-dataset chapters; only chapters whose executed notebook exists are listed. Paths are relative to
    :func:`book_root`."""
    root = book_root(ws)

    def entry(dataset: str, section: Section, title: str):
        path = ws.executed(dataset) / section.notebook
        if not path.exists():
            return None
        return {"file": path.relative_to(root).with_suffix("").as_posix(), "title": title}

    study = profile.get("study") or {}
    method = [{"file": "book/methods"}]
    for s in STUDY_SECTIONS:
        if s.part == "method" and s.name in study:
            method.append(entry(s.dataset, s, s.title))
    parts = [{"caption": "The study", "chapters": [c for c in method if c]}]
    for dataset in profile["datasets"]:
        chapters = [entry(dataset, s, f"{dataset.upper()}: {s.title.lower()}") for s in DATASET_SECTIONS]
        chapters = [c for c in chapters if c]
        if chapters:
            parts.append({"caption": dataset_entry(dataset).caption, "chapters": chapters})
    for part, caption in (("across", "Across datasets"), ("small", "The second study: tiny datasets")):
        chapters = [entry(s.dataset, s, s.title) for s in STUDY_SECTIONS if s.part == part and s.name in study]
        chapters = [c for c in chapters if c]
        if chapters:
            parts.append({"caption": caption, "chapters": chapters})
    parts.append({"caption": "Reproducibility", "chapters": [{"file": "book/reproducibility"},
                                                            {"file": "book/references"}]})
    return {"format": "jb-book", "root": "book/intro", "parts": parts}


def write_toc(profile: dict, ws: Workspace) -> Path:

    text = ("# Generated by `python -m helpers.study run`: one part per dataset run, then the cross-dataset chapters.\n"
            + yaml.safe_dump(toc(profile, ws), sort_keys=False, allow_unicode=True))
    return _io.write_text(toc_path(ws), text)


def build_book(ws: Workspace, *, out=sys.stdout) -> Path:
    """Build the HTML book with Jupyter Book v1 (execution off, warnings as errors); returns the HTML folder."""

    toc_file = toc_path(ws)
    if not toc_file.exists():
        raise StudyError(f"{relative(toc_file)} not found: run the study before building its book")
    stage_book_files(ws)
    root = book_root(ws)
    cli = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(cli) if cli.exists() else "jupyter-book", "build", str(root), "--toc", str(toc_file),
           "--path-output", str(ws.root), "-W", "-n", "--keep-going"]
    print(f"book: building {relative(ws.root / '_build' / 'html')} …", file=out, flush=True)
    start = time.perf_counter()
    log = ws.root / ".book-build.log"
    with _signals(), open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, cwd=root, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        returncode = _wait(proc, "the book build")
    text = log.read_text(encoding="utf-8", errors="replace")
    log.unlink(missing_ok=True)
    if returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-40:])
        raise StudyError(f"the book build failed (exit {returncode}):\n{tail}")
    html = ws.root / "_build" / "html"
    print(f"book: built in {time.perf_counter() - start:.1f} s; open {relative(html / 'index.html')}",
          file=out, flush=True)
    return html


# ---- evaluating predictions made elsewhere ----------------------------------------------------------------------

#: The sections the ``evaluate`` command runs (no training: the predictions come from elsewhere).
EVALUATE_SECTIONS = ("data", "evaluation", "stratification", "reversals", "bootstrap", "qualitative")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="which dataset the predictions are for")
    parser.add_argument("--data-root", required=True,
                        help="your copy of the dataset (its published layout), or 'synthetic' for the stand-in")
    parser.add_argument("--predictions", required=True,
                        help="a folder of prediction files (one model, named after the folder) or of model folders")
    parser.add_argument("--workspace", default="build/evaluate",
                        help="where results and the book go: any folder, absolute or relative (to the project root)")
    parser.add_argument("--mapping", help="CSV with columns case_id,file tying files to cases explicitly")
    parser.add_argument("--missing-as-empty", action="store_true",
                        help="score a test case without a prediction as an empty prediction (default: stop)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the bootstrap")
    parser.add_argument("--no-book", action="store_true", help="do not build the book")


def prediction_models(folder: Path) -> dict[str, Path]:
    """The models of a predictions folder: the folder itself when it holds prediction files (the model is named
    after it), else each sub-folder with prediction files (``_``/``.`` folders skipped)."""

    if not folder.is_dir():
        raise StudyError(f"--predictions {folder}: folder not found")
    if _predictions.list_cases(folder.parent, folder.name):
        return {folder.name: folder}
    models = {name: folder / name for name in _predictions.list_models(folder)}
    if not models:
        entries = sorted(p.name for p in folder.iterdir())[:10]
        raise StudyError(f"--predictions {folder}: no prediction files ({', '.join(_predictions_suffixes())}) in it "
                         f"or in its sub-folders; it holds: {entries or 'nothing'}")
    return models


def _predictions_suffixes() -> tuple[str, ...]:
    return _predictions.SUFFIXES


def format_matching(model: str, table, test_ids: set[str]) -> str:
    """The matching of one model's files as the lines the ``evaluate`` command prints before anything runs."""
    in_test = table["case_id"].isin(test_ids)
    matched = table[(table["status"] == "matched") & in_test]
    elsewhere = table[(table["status"] == "matched") & ~in_test]
    unmatched = table[table["status"] == "unmatched file"]
    missing = table[(table["status"] == "no prediction") & in_test]
    lines = [f"predictions of model {model!r}: {len(matched)} test cases matched, {len(missing)} test cases without a "
             f"prediction, {len(unmatched)} unmatched files, {len(elsewhere)} files of cases outside the test split"]
    for _, row in matched.iterrows():
        lines.append(f"  matched        {row['case_id']:<36} {row['file']}  ({row['rule']})")
    for _, row in missing.iterrows():
        lines.append(f"  NO PREDICTION  {row['case_id']}")
    for _, row in unmatched.iterrows():
        lines.append(f"  unmatched file {row['file']:<36} ({row['rule']})")
    for _, row in elsewhere.iterrows():
        lines.append(f"  not evaluated  {row['file']:<36} (case {row['case_id']} is not in the test split)")
    return "\n".join(lines)


def evaluate_command(args, *, out=None) -> RunReport:
    """``python -m helpers.study evaluate``: match the prediction files to the dataset's test cases, print the
    matching, stage the matched files under ``<workspace>/predictions/<dataset>/<model>/<case_id>.<ext>`` (links),
    then run :data:`EVALUATE_SECTIONS` and build the book."""
    out = sys.stdout if out is None else out
    dataset = args.dataset
    ws = Workspace.at(args.workspace)
    found, used = _read_dataset(args, out)
    split = _splits.make_splits(found, seed=args.seed)
    test_ids = set(split["test"])
    print(f"split: {len(test_ids)} test cases ({split['rule']})", file=out, flush=True)
    staged = _match_models(args, found, test_ids, out)
    prof = {"profile": "evaluate", "description": f"evaluate predictions from {relative(resolve(args.predictions))}",
            "seed": int(args.seed), "datasets": {dataset: {"data": {"data_root": str(used)}}}, "study": {}}
    prof_path = ws.root / "evaluate_profile.yaml"
    with workspace_lock(ws, f"helpers.study evaluate --dataset {dataset}", out=out), _signals():
        _io.write_text(prof_path, "# written by `python -m helpers.study evaluate`\n"
                       + yaml.safe_dump(prof, sort_keys=False))
        by_id = {f.case_id: f for f in found}
        for model, files in staged.items():
            stage_predictions(ws.predictions(dataset), model, files, by_id)
        tasks = plan(prof, prof_path, relative(ws.root), sections=EVALUATE_SECTIONS)
        # Evaluation only: no training grid, so the sections run in-process, one after another.
        return _run_locked(tasks, ws, prof, prof_path, force=False, book=not args.no_book, scheduler=None,
                           workers=None, out=out)


def _read_dataset(args, out) -> tuple[list, Path]:
    """The cases found under ``--data-root`` and the dataset folder they were found in."""
    if args.data_root == "synthetic":
        raise StudyError("--data-root synthetic: the stand-in is written by a run (use `run --profile smoke`); "
                         "point --data-root at a dataset folder, e.g. <workspace>/data/wmh of such a run")
    data_root = resolve(args.data_root)
    try:
        found = _data.find_cases(args.dataset, data_root)
    except (FileNotFoundError, ValueError) as err:
        raise StudyError(f"--data-root: {err}") from None
    used = _data.dataset_folder(found, data_root)
    note = "" if used == data_root.resolve() else f" (one level below {data_root})"
    print(f"data: {len(found)} {args.dataset} cases in {used}{note}", file=out, flush=True)
    return found, used


def _match_models(args, found: list, test_ids: set[str], out) -> dict[str, dict[str, Path | None]]:
    """For each model of ``--predictions``: its file per test case (None: no prediction, scored as empty with
    ``--missing-as-empty``); the matching is printed. Missing predictions without that flag stop the command."""
    mapping = _predictions.read_mapping(resolve(args.mapping)) if args.mapping else None
    staged: dict[str, dict[str, Path | None]] = {}
    problems = []
    for model, folder in prediction_models(resolve(args.predictions)).items():
        try:
            matching = _predictions.match_predictions(found, folder, mapping=mapping)
        except (FileNotFoundError, ValueError) as err:
            raise StudyError(f"--predictions {folder}: {err}") from None
        print(format_matching(model, matching.table(), test_ids), file=out, flush=True)
        files = {c: p for c, (p, _) in matching.matched.items() if c in test_ids}
        missing = sorted(test_ids - set(files))
        if missing and not args.missing_as_empty:
            problems.append(f"model {model!r}: no prediction for test case(s) {missing[:10]}"
                            + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
        staged[model] = {**files, **{c: None for c in missing}}
    if problems:
        raise StudyError("; ".join(problems) + ". Name the files by case id, give --mapping case_id,file, or score "
                         "them as empty predictions with --missing-as-empty")
    return staged


def stage_predictions(root: Path, model: str, files: dict, cases: dict) -> None:
    """Lay the matched files out as ``<root>/<model>/<case_id><suffix>`` (symbolic links, copies where links are
    not possible); a case mapped to ``None`` gets an empty prediction on its grid."""

    folder = root / model
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for case_id, path in files.items():
        if path is None:
            case = _data.read_case(cases[case_id])
            kind = "image" if case.mask.ndim == 2 else "volume"
            _predictions.write_prediction(root, model, case_id, np.zeros(case.mask.shape, bool), kind=kind,
                                          affine=case.affine)
            continue
        suffix = next(s for s in _predictions.SUFFIXES if path.name.lower().endswith(s))
        target = folder / f"{case_id}{suffix}"
        try:
            target.symlink_to(path.resolve())
        except OSError:
            shutil.copyfile(path, target)


# ---- committed notebooks -------------------------------------------------------------------------------------------


def refresh_notebooks(*, profile: str = "smoke", workspace: str = "build/nbval", out=sys.stdout) -> None:
    """Re-execute the committed source notebooks in place with their default parameters (after a run of the
    ``smoke`` profile in their default workspace), so that nbval has fresh reference outputs."""
    run(profile, workspace=workspace, book=False, out=out)
    ws = Workspace.at(workspace)
    with workspace_lock(ws, "helpers.study refresh-notebooks", out=out), _signals():
        for section in SECTIONS:
            path = notebooks_dir() / section.notebook
            if not path.exists():
                continue
            print(f"refresh: {relative(path)}", file=out, flush=True)
            tmp = path.with_name(f".{path.stem}.refresh.ipynb")
            log = path.with_name(f".{path.stem}.refresh.log")
            outcome = _run_notebook(path, tmp, {}, log)
            if not outcome.get("ok"):
                raise StudyError(f"{relative(path)}: {outcome.get('ename')}: {outcome.get('evalue')} "
                                 f"(the executed copy: {relative(tmp)})")
            log.unlink(missing_ok=True)
            _strip_papermill_metadata(tmp)
            os.replace(tmp, path)


# ---- command line --------------------------------------------------------------------------------------------------


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """``--scheduler`` and ``--workers``: where the grid's tasks run (see ``helpers.compute.cluster``)."""
    parser.add_argument(
        "--scheduler", default="local", metavar="ADDRESS|local|none",
        help="Dask scheduler for the grid's tasks: 'local' (default) starts a LocalCluster on this machine, 'none' "
             "runs everything in-process one task at a time, an address (tcp://host:8786) uses a running "
             "scheduler, e.g. one started by dask-jobqueue (examples/slurm_paper.py)")
    parser.add_argument(
        "--workers", type=_positive_int, default=None, metavar="N",
        help="worker processes of the local cluster (default: one per core; torch threads per worker = "
             "cores // N)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value



def build_parser() -> argparse.ArgumentParser:
    """The command line: ``run``, ``book``, ``evaluate``, ``refresh-notebooks`` (and the runner's child command)."""
    parser = argparse.ArgumentParser(prog="python -m helpers.study", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ws_help = ("where results go: any folder, absolute or relative (to the project root), inside or outside the "
               "clone")
    p_run = sub.add_parser("run", help="run the out-of-date sections of a profile, then build the book")
    p_run.add_argument("--profile", default="default", help="profile name (profiles/<name>.yaml) or a YAML path")
    p_run.add_argument("--workspace", default=".", help=ws_help)
    p_run.add_argument("--dataset", action="append", help="only this dataset (repeatable)")
    p_run.add_argument("--section", action="append", help="only this section (repeatable)")
    p_run.add_argument("--force", action="store_true", help="re-run even up-to-date sections")
    p_run.add_argument("--no-book", action="store_true", help="do not build the book")
    add_cluster_arguments(p_run)
    p_book = sub.add_parser("book", help="build the book of a workspace")
    p_book.add_argument("--workspace", default=".", help=ws_help)
    p_eval = sub.add_parser(
        "evaluate", help="evaluate predictions made elsewhere (no training): data, evaluation, stratification, "
                         "reversals, bootstrap and qualitative sections, then the book")
    add_evaluate_arguments(p_eval)
    p_ref = sub.add_parser("refresh-notebooks", help="re-execute the committed notebooks (nbval references)")
    p_ref.add_argument("--profile", default="smoke")
    p_ref.add_argument("--workspace", default="build/nbval")
    p_exec = sub.add_parser("execute-notebook", help=argparse.SUPPRESS)  # the runner's child process
    p_exec.add_argument("spec")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            run(args.profile, workspace=args.workspace, datasets=args.dataset, sections=args.section,
                force=args.force, book=not args.no_book, scheduler=args.scheduler, workers=args.workers)
        elif args.command == "book":
            ws = Workspace.at(args.workspace)
            with workspace_lock(ws, "helpers.study book"):
                build_book(ws)
        elif args.command == "evaluate":
            evaluate_command(args)
        elif args.command == "execute-notebook":
            return _execute_in_child(args.spec)
        else:
            refresh_notebooks(profile=args.profile, workspace=args.workspace)
    except Interrupted as err:
        print(f"study: {err}", file=sys.stderr)
        return 130
    except StudyError as err:
        print(f"study: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
