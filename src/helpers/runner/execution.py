"""Executing one section notebook: papermill in a child process of its own session (``python -m helpers.study
execute-notebook SPEC``) under the kernels' environment, its start-up chatter filtered; on success the executed
notebook and its stamp are written atomically, on a failure the failing cell is named and earlier results stay
intact."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from helpers.base import io as _io
from helpers.compute.runtime import allocator_environment
from helpers.compute.security import SECURITY_ENV
from helpers.base.paths import Workspace, project_root, relative
from helpers.compute import cluster
from helpers.runner.errors import Interrupted, StudyError
from helpers.runner.interrupts import wait
from helpers.runner.plan import Task, executed_path, notebooks_dir, stamp_path
from helpers.data.datasets import DATASETS, display_name

__all__ = [
    "kernel_environment", "KERNEL_START_TIMEOUT", "KERNEL_START_ATTEMPTS", "kernel_did_not_start", "CHATTER", "quiet",
    "run_notebook", "execute_in_child", "execute", "strip_papermill_metadata", "title_with_scope",
]


def kernel_environment(*, security_file: str | None = None) -> dict:
    """Environment of the notebook kernels: no progress bars in executed notebooks (the runner reports progress),
    a non-interactive matplotlib backend, the project root made explicit and the allocator settings of
    :data:`helpers.compute.runtime.ALLOCATOR_ENV`; with ``security_file``, its absolute
    path as :data:`helpers.compute.security.SECURITY_ENV` (the path only: credentials stay in their files)."""
    # OMP_WAIT_POLICY=PASSIVE: on a small shared machine, OpenMP threads that spin while waiting made torch
    # 10-70 times slower with 2 threads than with 1 (measured, see benchmarks/bench_training.py).
    env = {"TQDM_DISABLE": "1", "MPLBACKEND": "Agg", "HONEST_PROJECT_ROOT": str(project_root()),
           "PYTHONHASHSEED": "0", "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
           **allocator_environment()}
    if security_file is not None:
        env[SECURITY_ENV] = str(Path(security_file).expanduser().resolve())
    return env


#: Seconds a notebook's kernel has to answer after it is started (papermill's default is 60). On 2 cores shared by
#: the cluster's workers and other notebooks a kernel once took longer, and the main job stopped.
KERNEL_START_TIMEOUT = 180
#: Starts of a notebook whose kernel did not start (:func:`kernel_did_not_start`) before its section fails. Safe:
#: no cell ran, so nothing was written.
KERNEL_START_ATTEMPTS = 3
#: How papermill (nbclient) reports a kernel that never answered.
_NO_KERNEL = ("Kernel didn't respond", "Kernel died before replying to kernel_info")


def kernel_did_not_start(outcome: dict) -> bool:
    """Whether a failed :func:`run_notebook` outcome is a kernel that never answered (no cell ran)."""
    return (not outcome.get("ok") and outcome.get("exec_count") is None
            and any(text in str(outcome.get("evalue", "")) for text in _NO_KERNEL))


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


def run_notebook(source: Path, target: Path, params: dict, log: Path, *, env: dict | None = None) -> dict:
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
            rc = wait(proc, "the notebook")
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


def execute_in_child(spec_path: str) -> int:
    """The child side of :func:`run_notebook` (``python -m helpers.study execute-notebook SPEC``)."""
    import papermill  # lazy, as in notebook_parameters
    from papermill.exceptions import PapermillExecutionError

    _die_with_parent()
    spec = _io.read_json(spec_path)
    try:
        papermill.execute_notebook(spec["source"], spec["target"], parameters=spec["params"], cwd=str(project_root()),
                                   kernel_name="python3", progress_bar=False, log_output=False, report_mode=False,
                                   start_timeout=KERNEL_START_TIMEOUT)
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
    raise :class:`Interrupted`: the half-executed notebook is removed and nothing is stamped. A kernel that does not
    start is started again, up to :data:`KERNEL_START_ATTEMPTS` times in all, each retry said on standard error."""
    source = notebooks_dir() / task.section.notebook
    target = executed_path(ws, task)
    target.parent.mkdir(parents=True, exist_ok=True)
    failed = target.with_suffix(".failed.ipynb")
    tmp = target.with_name(f".{target.stem}.running.ipynb")
    log = target.with_name(f".{target.stem}.log")
    start = time.perf_counter()
    try:
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            outcome = run_notebook(source, tmp, task.params, log, env={cluster.PRIORITY_ENV: str(int(priority))})
            if not kernel_did_not_start(outcome) or attempt == KERNEL_START_ATTEMPTS:
                break
            print(f"  {task.label}: the notebook's kernel did not start ({outcome.get('evalue')}); starting it "
                  f"again ({attempt + 1} of {KERNEL_START_ATTEMPTS})", file=sys.stderr, flush=True)
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
    strip_papermill_metadata(tmp, collapse_parameters=True)
    if task.dataset in DATASETS:
        title_with_scope(tmp, display_name(task.dataset))
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


def strip_papermill_metadata(path: Path, *, collapse_parameters: bool = False) -> None:
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


def title_with_scope(path: Path, name: str) -> bool:
    """Prefix the page title of an executed notebook (the first ``# `` heading of its first markdown cell) with
    ``name`` (a dataset's display name: "# LiTS: Size stratification ..."), so every page of a dataset says which
    dataset it shows; a title that already starts with ``name`` is left alone. Returns whether it changed."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.split("\n")
        for k, line in enumerate(lines):
            if line.startswith("# "):
                if line[2:].startswith(f"{name}:"):
                    return False
                lines[k] = f"# {name}: {line[2:]}"
                cell.source = "\n".join(lines)
                nbformat.write(nb, path)
                return True
        return False
    return False
