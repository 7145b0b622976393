"""The study: the notebook context (provenance banner, workspace folders) and the runner that executes the
section notebooks with papermill. Run ``python -m helpers.study --help``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import provenance
from .io import read_json
from .paths import Workspace, relative

GLOBAL = "study"  # the pseudo-dataset of the chapters that span datasets
DATASETS = ("wmh", "lits", "idrid")


@dataclass(frozen=True, repr=False)
class Context:
    """What a section notebook needs to know about its run: the dataset, profile, seed and folders.

    Its markdown representation is the provenance banner shown at the top of every page."""

    dataset: str
    profile: str
    seed: int
    ws: Workspace
    data_source: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def results(self) -> Path:
        return self.ws.results(None if self.dataset == GLOBAL else self.dataset)

    @property
    def figures(self) -> Path:
        return self.ws.figures(None if self.dataset == GLOBAL else self.dataset)

    @property
    def synthetic(self) -> bool | None:
        """True when any number on the page comes from synthetic or constructed data, False for real data only,
        None when unknown (no data section has run yet)."""
        sources = self.sources
        if not sources:
            return None
        return any(src in ("synthetic", "constructed") for src in sources.values())

    @property
    def source(self) -> str | None:
        """The data source of a dataset's page: "synthetic", a real dataset path, or "constructed"."""
        if self.data_source is not None:
            return self.data_source
        manifest = self.ws.results(self.dataset) / "data_manifest.json"
        if self.dataset != GLOBAL and manifest.exists():
            return read_json(manifest).get("source")
        return None

    @property
    def sources(self) -> dict[str, str]:
        """Data source per dataset behind this page: the page's own for a dataset, every dataset run in this
        workspace for the cross-dataset chapters (read from each ``data_manifest.json``)."""
        if self.dataset != GLOBAL or self.data_source is not None:
            return {} if self.source is None else {self.dataset: self.source}
        out = {}
        for manifest in sorted(self.ws.results().glob("*/data_manifest.json")):
            source = read_json(manifest).get("source")
            if source is not None and manifest.parent.name in DATASETS:
                out[manifest.parent.name] = source
        return out

    def banner(self) -> str:
        versions = provenance.package_versions()
        pkgs = ", ".join(f"{k} {v}" for k, v in versions.items())
        sources = self.sources
        if self.source == "constructed":
            data = "examples constructed in this chapter (no dataset is read)"
        elif not sources:
            data = "unknown (the data section has not run)"
        else:
            data = "; ".join(
                f"**synthetic stand-in** for {name.upper()}, written in the real on-disk layout" if src == "synthetic"
                else f"real {name.upper()} data at `{src}`"
                for name, src in sources.items()
            )
        lines = [
            f"**Provenance** · dataset `{self.dataset}` · profile `{self.profile}` · seed {self.seed} · "
            f"workspace `{relative(self.ws.root)}` · commit `{provenance.git_commit()}`",
            f"Data: {data}.",
            f"Packages: {pkgs}.",
        ]
        if self.synthetic:
            what = "constructed examples" if self.source == "constructed" else "synthetic stand-in data"
            lines.append(
                f"⚠ Numbers on this page come from {what}. They test the pipeline and illustrate the method; "
                "they are **not** the paper's results."
            )
        return "\n\n".join("> " + line for line in lines)

    def _repr_markdown_(self) -> str:
        return self.banner()

    def __repr__(self) -> str:
        # no absolute path: notebook outputs must be the same in every clone of the project
        return (f"Context(dataset={self.dataset!r}, profile={self.profile!r}, seed={self.seed}, "
                f"workspace={relative(self.ws.root)!r})")


def context(*, dataset: str, profile: str, workspace: str, seed: int, data_source: str | None = None) -> Context:
    """The context of a section notebook; show it (last line of a cell) to print the provenance banner."""
    return Context(dataset=dataset, profile=profile, seed=int(seed), ws=Workspace.at(workspace), data_source=data_source)


# ----------------------------------------------------------------------------------------------------------------
# The runner
# ----------------------------------------------------------------------------------------------------------------

import argparse  # noqa: E402
import contextlib  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Iterable  # noqa: E402

from . import io as _io  # noqa: E402
from .paths import project_root, resolve  # noqa: E402

DATASET_TITLES = {
    "wmh": "WMH: white matter hyperintensities (brain MRI)",
    "lits": "LiTS: liver tumours (abdominal CT)",
    "idrid": "IDRiD: retinal lesions (fundus photographs)",
}
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
    import yaml

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
    import papermill

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
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return _digest([(c.cell_type, c.source) for c in nb.cells])


def code_hash() -> str:
    """Hash of the helpers package source: a change of code makes every section out of date."""
    pkg = Path(__file__).resolve().parent
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


def execute(task: Task, ws: Workspace) -> float:
    """Execute one task's notebook with papermill; on success write the executed notebook and the stamp
    atomically. On a failing cell raise :class:`StudyError` naming notebook, cell and error, and keep the failed
    notebook beside the executed ones (``*.failed.ipynb``) without touching earlier results."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = notebooks_dir() / task.section.notebook
    target = executed_path(ws, task)
    target.parent.mkdir(parents=True, exist_ok=True)
    failed = target.with_suffix(".failed.ipynb")
    tmp = target.with_name(f".{target.stem}.running.ipynb")
    saved_env = {k: os.environ.get(k) for k in kernel_environment()}
    os.environ.update(kernel_environment())
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source), str(tmp), parameters=task.params, cwd=str(project_root()), kernel_name="python3",
            progress_bar=False, log_output=False, report_mode=False,
        )
    except PapermillExecutionError as err:
        os.replace(tmp, failed)
        cell = _failing_cell(failed)
        raise StudyError(
            f"{relative(source)} failed for dataset {task.dataset!r} in cell {cell} "
            f"(execution count {err.exec_count}): {err.ename}: {err.evalue}\n"
            f"  the executed notebook with the traceback: {relative(failed)}\n"
            f"  earlier results are intact; fix the problem and run again to resume"
        ) from None
    except Exception as err:
        if tmp.exists():
            os.replace(tmp, failed)
        raise StudyError(f"{relative(source)} could not be executed for dataset {task.dataset!r}: "
                         f"{type(err).__name__}: {err}") from None
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - start
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
    import nbformat

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
    import nbformat

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


def run(profile: str, *, workspace: str = ".", datasets=None, sections=None, force: bool = False,
        book: bool = True, scheduler: str | None = None, workers: int | None = None,
        out=sys.stdout) -> RunReport:
    """Run the study: every out-of-date section notebook of the profile, independent sections concurrently
    (one dataset's chain beside another's), then the book.

    ``scheduler``: None/``"none"`` (in-process, one section and one task at a time; the command line's default
    is ``"local"``), ``"local"`` (a Dask ``LocalCluster`` sized to this machine, ``workers`` worker processes) or
    the address of a running Dask scheduler; the address reaches every notebook that declares a ``scheduler``
    parameter (see ``helpers.cluster``)."""
    from . import cluster as _cluster

    prof, prof_path = load_profile(profile)
    ws = Workspace.at(workspace)
    tasks = plan(prof, prof_path, workspace, datasets=datasets, sections=sections)
    assign_keys(tasks, ws, prof["datasets"])
    report = RunReport()
    print(f"study: profile {prof['profile']} ({relative(prof_path)}), workspace {relative(ws.root)}, "
          f"{len(tasks)} section runs", file=out, flush=True)
    try:
        with _environment(kernel_environment()), _cluster.open_cluster(scheduler, workers=workers, out=out) as info:
            start = time.perf_counter()
            pass_scheduler(tasks, info.address)
            run_sections(tasks, ws, report, force=force, parallel=max(1, info.workers), out=out)
    except _cluster.GridError as err:
        raise StudyError(str(err)) from None
    report.seconds = time.perf_counter() - start
    write_toc(prof, ws)
    print(f"study: {len(report.executed)} executed, {len(report.skipped)} up to date, "
          f"{report.seconds:.1f} s", file=out, flush=True)
    if book:
        build_book(ws, out=out)
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


def run_sections(tasks: list[Task], ws: Workspace, report: RunReport, *, force: bool = False, parallel: int = 1,
                 out=sys.stdout) -> None:
    """Execute the out-of-date tasks, up to ``parallel`` notebooks at a time, each as soon as the tasks it depends
    on are done. The first failure stops new starts; the running ones finish; then its error is raised."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    deps = section_dependencies(tasks)
    done: set[int] = set()
    waiting = list(range(len(tasks)))
    running: dict = {}
    failure = None
    start = time.perf_counter()

    def prefix(i):
        return f"[{i + 1}/{len(tasks)}] {tasks[i].label:<32}"

    with ThreadPoolExecutor(max_workers=parallel) if parallel > 1 else contextlib.nullcontext() as pool:
        while waiting or running:
            ready = [i for i in waiting if deps[i] <= done] if failure is None else []
            for i in ready:
                if len(running) >= parallel:
                    break
                waiting.remove(i)
                if not force and is_up_to_date(ws, tasks[i]):
                    report.skipped.append(tasks[i].label)
                    done.add(i)
                    print(f"{prefix(i)} up to date", file=out, flush=True)
                    continue
                print(f"{prefix(i)} running …", file=out, flush=True)
                running[pool.submit(_execute_in_thread, tasks[i], ws) if pool else _execute_now(tasks[i], ws)] = i
            if not running:
                if failure is not None or not waiting:
                    break
                continue  # skipped tasks freed others
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                i = running.pop(future)
                try:
                    seconds = future.result()
                except StudyError as err:
                    failure = failure or err
                    continue
                done.add(i)
                report.executed.append(tasks[i].label)
                print(f"{prefix(i)} done in {seconds:6.1f} s (elapsed {time.perf_counter() - start:6.1f} s)",
                      file=out, flush=True)
    if failure is not None:
        raise failure


def _execute_now(task: Task, ws: Workspace):
    """:func:`execute` in this thread (one section at a time), its outcome as a finished future."""
    from concurrent.futures import Future

    future = Future()
    try:
        future.set_result(execute(task, ws))
    except StudyError as err:
        future.set_exception(err)
    return future


def _execute_in_thread(task: Task, ws: Workspace) -> float:
    """:func:`execute` in a worker thread, with an event loop of its own for papermill, closed afterwards."""
    import asyncio

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return execute(task, ws)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


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


def toc_path(ws: Workspace) -> Path:
    """The book's table of contents: ``_toc.yml`` at the project root for the main workspace, else inside the
    workspace (the book's root stays the project root, so the hand-written pages are shared)."""
    return project_root() / "_toc.yml" if ws.root == project_root() else ws.root / "_toc.yml"


def toc(profile: dict, ws: Workspace) -> dict:
    """The table of contents for the datasets and chapters of ``profile``: one part per dataset plus the
    cross-dataset chapters; only chapters whose executed notebook exists are listed."""
    root = project_root()

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
            parts.append({"caption": DATASET_TITLES[dataset], "chapters": chapters})
    for part, caption in (("across", "Across datasets"), ("small", "The second study: tiny datasets")):
        chapters = [entry(s.dataset, s, s.title) for s in STUDY_SECTIONS if s.part == part and s.name in study]
        chapters = [c for c in chapters if c]
        if chapters:
            parts.append({"caption": caption, "chapters": chapters})
    parts.append({"caption": "Reproducibility", "chapters": [{"file": "book/reproducibility"},
                                                            {"file": "book/references"}]})
    return {"format": "jb-book", "root": "book/intro", "parts": parts}


def write_toc(profile: dict, ws: Workspace) -> Path:
    import yaml

    text = ("# Generated by `python -m helpers.study run`: one part per dataset run, then the cross-dataset chapters.\n"
            + yaml.safe_dump(toc(profile, ws), sort_keys=False, allow_unicode=True))
    return _io.write_text(toc_path(ws), text)


def build_book(ws: Workspace, *, out=sys.stdout) -> Path:
    """Build the HTML book with Jupyter Book v1 (execution off, warnings as errors); returns the HTML folder."""
    import subprocess

    root = project_root()
    toc_file = toc_path(ws)
    if not toc_file.exists():
        raise StudyError(f"{relative(toc_file)} not found: run the study before building its book")
    cli = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(cli) if cli.exists() else "jupyter-book", "build", str(root), "--toc", str(toc_file),
           "--path-output", str(ws.root), "-W", "-n", "--keep-going"]
    print(f"book: building {relative(ws.root / '_build' / 'html')} …", file=out, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        raise StudyError(f"the book build failed (exit {proc.returncode}):\n{tail}")
    html = ws.root / "_build" / "html"
    print(f"book: built in {time.perf_counter() - start:.1f} s; open {relative(html / 'index.html')}",
          file=out, flush=True)
    return html


# ---- committed notebooks -------------------------------------------------------------------------------------------


def refresh_notebooks(*, profile: str = "smoke", workspace: str = "build/nbval", out=sys.stdout) -> None:
    """Re-execute the committed source notebooks in place with their default parameters (after a run of the
    ``smoke`` profile in their default workspace), so that nbval has fresh reference outputs."""
    import papermill

    run(profile, workspace=workspace, book=False, out=out)
    os.environ.update(kernel_environment())
    for section in SECTIONS:
        path = notebooks_dir() / section.notebook
        if not path.exists():
            continue
        print(f"refresh: {relative(path)}", file=out, flush=True)
        tmp = path.with_name(f".{path.stem}.refresh.ipynb")
        papermill.execute_notebook(str(path), str(tmp), cwd=str(project_root()), kernel_name="python3",
                                   progress_bar=False, log_output=False)
        _strip_papermill_metadata(tmp)
        os.replace(tmp, path)


# ---- command line --------------------------------------------------------------------------------------------------


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """``--scheduler`` and ``--workers``: where the grid's tasks run (see ``helpers.cluster``)."""
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



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.study", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run the out-of-date sections of a profile, then build the book")
    p_run.add_argument("--profile", default="default", help="profile name (profiles/<name>.yaml) or a YAML path")
    p_run.add_argument("--workspace", default=".", help="where results go (relative to the project root)")
    p_run.add_argument("--dataset", action="append", help="only this dataset (repeatable)")
    p_run.add_argument("--section", action="append", help="only this section (repeatable)")
    p_run.add_argument("--force", action="store_true", help="re-run even up-to-date sections")
    p_run.add_argument("--no-book", action="store_true", help="do not build the book")
    add_cluster_arguments(p_run)
    p_book = sub.add_parser("book", help="build the book of a workspace")
    p_book.add_argument("--workspace", default=".")
    p_ref = sub.add_parser("refresh-notebooks", help="re-execute the committed notebooks (nbval references)")
    p_ref.add_argument("--profile", default="smoke")
    p_ref.add_argument("--workspace", default="build/nbval")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            run(args.profile, workspace=args.workspace, datasets=args.dataset, sections=args.section,
                force=args.force, book=not args.no_book, scheduler=args.scheduler, workers=args.workers)
        elif args.command == "book":
            build_book(Workspace.at(args.workspace))
        else:
            refresh_notebooks(profile=args.profile, workspace=args.workspace)
    except StudyError as err:
        print(f"study: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
