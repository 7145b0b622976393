"""The study runner: profiles, parameter validation, up-to-date checks, resuming after a failure, the TOC.

The runner is exercised for real (papermill, kernels) on a throw-away project whose notebooks are tiny: each
writes one result file, so what ran and what was kept can be read off the workspace.
"""

from __future__ import annotations

import json

import nbformat
import pytest
import yaml

from helpers.data import datasets
from helpers.runner import cli, errors, execution, lock, plan, running, sections
from helpers.base.paths import Workspace

pytestmark = pytest.mark.slow


def _notebook(extra_params: str = "") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(
        'dataset = "wmh"\nprofile = "smoke"\nworkspace = "build/x"\nseed = 0\nvalue = 1\nfail = False\n' + extra_params
    )
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import pathlib, time\n"
        "from helpers.base.paths import Workspace\n"
        "from helpers.base import io\n"
        "if fail:\n"
        "    raise ValueError('planted failure')\n"
        ""
        "io.write_text(Workspace.at(workspace).results(dataset) / f'{SECTION}.txt', f'{value} {time.time_ns()}')\n"
    )
    nb.cells = [nbformat.v4.new_markdown_cell("# A section"), params, body]
    return nb


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A project root with one tiny notebook per section and a two-dataset profile."""
    (tmp_path / "_config.yml").write_text("title: test\n")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "notebooks").mkdir()
    for section in sections.SECTIONS:
        nb = _notebook('datasets = ["wmh"]\n' if section.name in ("cross_dataset", "multiverse") else "")
        nb.cells[2].source = nb.cells[2].source.replace("{SECTION}", section.name)
        nbformat.write(nb, tmp_path / "notebooks" / section.notebook)
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    # the package's source is part of every key; pin it so that only what a test changes counts
    monkeypatch.setattr(plan, "code_hash", lambda: "code-v1")
    return tmp_path


def write_profile(root, data: dict, name: str = "t") -> str:
    (root / "profiles" / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return name


BASE = {"profile": "t", "seed": 0, "datasets": {"wmh": {}, "lits": {}}}


def result(root, dataset: str, section: str) -> str:
    return (root / "ws" / "results" / dataset / f"{section}.txt").read_text()


def test_repeated_run_executes_nothing_and_one_parameter_reruns_only_its_dependents(project):
    name = write_profile(project, BASE)
    first = running.run(name, workspace="ws", book=False)
    assert len(first.executed) == 2 * len(sections.DATASET_SECTIONS) and first.skipped == []
    before = {d: {s.name: result(project, d, s.name) for s in sections.DATASET_SECTIONS} for d in ("wmh", "lits")}

    again = running.run(name, workspace="ws", book=False)
    assert again.executed == []
    assert len(again.skipped) == len(first.executed)

    changed = {**BASE, "datasets": {"wmh": {}, "lits": {"stratification": {"value": 2}}}}
    write_profile(project, changed)
    third = running.run(name, workspace="ws", book=False)
    # stratification feeds reversals, bootstrap and qualitative; nothing upstream and nothing of wmh re-runs
    assert third.executed == ["lits · stratification", "lits · reversals", "lits · bootstrap", "lits · qualitative"]
    assert result(project, "lits", "stratification").startswith("2 ")
    assert result(project, "lits", "evaluation") == before["lits"]["evaluation"]
    assert all(result(project, "wmh", s) == before["wmh"][s] for s in before["wmh"])


def test_changed_code_or_notebook_source_makes_sections_out_of_date(project, monkeypatch):
    name = write_profile(project, {**BASE, "datasets": {"wmh": {}}})
    running.run(name, workspace="ws", book=False)
    nb = nbformat.read(project / "notebooks" / "06_bootstrap.ipynb", as_version=4)
    nb.cells[0].source += "\n\nA new sentence."
    nbformat.write(nb, project / "notebooks" / "06_bootstrap.ipynb")
    assert running.run(name, workspace="ws", book=False).executed == ["wmh · bootstrap"]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="outputs do not count")]
    nbformat.write(nb, project / "notebooks" / "06_bootstrap.ipynb")
    assert running.run(name, workspace="ws", book=False).executed == []
    monkeypatch.setattr(plan, "code_hash", lambda: "code-v2")
    assert len(running.run(name, workspace="ws", book=False).executed) == len(sections.DATASET_SECTIONS)


def test_unknown_parameter_is_rejected_naming_profile_and_notebook(project):
    name = write_profile(project, {**BASE, "datasets": {"wmh": {"training": {"epochz": 3}}}})
    with pytest.raises(errors.StudyError, match=r"t\.yaml.*unknown parameter\(s\) \['epochz'\].*02_training\.ipynb"):
        running.run(name, workspace="ws", book=False)


def test_unknown_section_and_dataset_are_rejected(project):
    name = write_profile(project, {**BASE, "sections": {"trainnig": {}}})
    with pytest.raises(errors.StudyError, match="unknown section 'trainnig' under 'sections'"):
        running.run(name, workspace="ws", book=False)
    name = write_profile(project, {**BASE, "datasets": {"brats": {}}})
    with pytest.raises(errors.StudyError, match="unknown dataset 'brats'"):
        running.run(name, workspace="ws", book=False)


def test_missing_required_parameter_is_rejected(project):
    nb = _notebook('data_root = "synthetic"  # required: where the dataset lives\n')
    nb.cells[2].source = nb.cells[2].source.replace("{SECTION}", "data")
    nbformat.write(nb, project / "notebooks" / "01_data.ipynb")
    name = write_profile(project, BASE)
    with pytest.raises(errors.StudyError, match=r"missing required parameter\(s\) \['data_root'\].*01_data\.ipynb"):
        running.run(name, workspace="ws", book=False)


def test_missing_notebook_is_named(project):
    (project / "notebooks" / "03_evaluation.ipynb").unlink()
    name = write_profile(project, BASE)
    with pytest.raises(errors.StudyError, match=r"notebook notebooks/03_evaluation\.ipynb not found"):
        running.run(name, workspace="ws", book=False)


def test_missing_profile_lists_the_available_ones(project):
    write_profile(project, BASE, name="smoke")
    with pytest.raises(errors.StudyError, match=r"profile 'nope'.*not found \(available: smoke\)"):
        running.run("nope", workspace="ws", book=False)


def test_failing_cell_is_reported_and_earlier_results_stay_then_the_run_resumes(project):
    name = write_profile(project, {**BASE, "datasets": {"wmh": {}, "lits": {"reversals": {"fail": True}}}})
    with pytest.raises(errors.StudyError) as info:
        running.run(name, workspace="ws", book=False)
    message = str(info.value)
    assert "notebooks/05_reversals.ipynb failed for dataset 'lits' in cell 3 (`import pathlib, time`)" in message
    assert "ValueError: planted failure" in message
    ws = Workspace.at("ws")
    assert (ws.executed("lits") / "05_reversals.failed.ipynb").exists()
    assert not (ws.executed("lits") / "05_reversals.ipynb").exists()
    kept = {s: result(project, "lits", s) for s in ("data", "training", "evaluation", "stratification")}
    assert not (ws.results("lits") / "reversals.txt").exists()

    write_profile(project, BASE)
    resumed = running.run(name, workspace="ws", book=False)
    assert resumed.executed == ["lits · reversals", "lits · bootstrap", "lits · qualitative"]
    assert {s: result(project, "lits", s) for s in kept} == kept
    assert not (ws.executed("lits") / "05_reversals.failed.ipynb").exists()


NO_KERNEL = {"ok": False, "ename": "RuntimeError", "evalue": "Kernel didn't respond in 180 seconds", "exec_count": None}


def test_a_kernel_that_does_not_start_is_started_again_and_its_section_runs(project, monkeypatch, capsys):
    """A kernel that never answered (the main job once stopped on one under load) ran no cell: the runner starts
    the notebook again, says so, and the section's result is the real one."""
    real, calls = execution.run_notebook, []

    def flaky(source, target, params, log, **kwargs):
        calls.append(source.name)
        if source.name == "05_reversals.ipynb" and calls.count(source.name) < execution.KERNEL_START_ATTEMPTS:
            return dict(NO_KERNEL)
        return real(source, target, params, log, **kwargs)

    monkeypatch.setattr(execution, "run_notebook", flaky)
    name = write_profile(project, {**BASE, "datasets": {"wmh": {}}})
    done = running.run(name, workspace="ws", book=False)
    assert "wmh · reversals" in done.executed and result(project, "wmh", "reversals").startswith("1 ")
    assert calls.count("05_reversals.ipynb") == execution.KERNEL_START_ATTEMPTS == 3
    assert calls.count("04_stratification.ipynb") == 1
    err = capsys.readouterr().err
    assert "wmh · reversals: the notebook's kernel did not start (Kernel didn't respond in 180 seconds); " \
           "starting it again (2 of 3)" in err and "(3 of 3)" in err


def test_a_kernel_that_never_starts_fails_its_section_after_the_last_attempt(project, monkeypatch):
    real, calls = execution.run_notebook, []

    def never(source, target, params, log, **kwargs):
        calls.append(source.name)
        return dict(NO_KERNEL) if source.name == "05_reversals.ipynb" else real(source, target, params, log, **kwargs)

    monkeypatch.setattr(execution, "run_notebook", never)
    name = write_profile(project, {**BASE, "datasets": {"wmh": {}}})
    with pytest.raises(errors.StudyError, match="RuntimeError: Kernel didn't respond in 180 seconds"):
        running.run(name, workspace="ws", book=False)
    assert calls.count("05_reversals.ipynb") == 3
    assert not (Workspace.at("ws").results("wmh") / "reversals.txt").exists()


def test_only_a_kernel_that_never_answered_counts_as_not_started():
    assert execution.kernel_did_not_start(NO_KERNEL)
    assert execution.kernel_did_not_start({**NO_KERNEL, "evalue": "Kernel died before replying to kernel_info"})
    assert not execution.kernel_did_not_start({**NO_KERNEL, "exec_count": 3})  # a cell ran: not retried
    assert not execution.kernel_did_not_start({**NO_KERNEL, "evalue": "planted failure"})
    assert not execution.kernel_did_not_start({"ok": True})


def test_toc_has_one_part_per_dataset_and_only_existing_chapters(project):
    name = write_profile(project, {**BASE, "datasets": {"wmh": {}}, "study": {"cross_dataset": {"datasets": ["wmh"]}}})
    running.run(name, workspace="ws", book=False)
    toc = yaml.safe_load((project / "ws" / "_toc.yml").read_text())
    captions = [p["caption"] for p in toc["parts"]]
    assert captions == ["The study", datasets.get("wmh").caption, "Across datasets", "Reproducibility"]
    wmh = toc["parts"][1]["chapters"]
    assert [c["file"] for c in wmh] == [f"ws/book/executed/wmh/{s.notebook[:-6]}" for s in sections.DATASET_SECTIONS]
    stamp = json.loads((project / "ws" / "results" / ".stamps" / "wmh" / "data.json").read_text())
    assert stamp["params"]["workspace"] == "ws" and stamp["params"]["dataset"] == "wmh"


# ---- workspaces outside the clone, interrupts, the lock, a quiet runner ------------------------------------------

BOOK_PAGES = {"intro.md": "# Intro\n", "methods.md": "# Methods\n", "reproducibility.md": "# Reproducibility\n",
              "references.md": "# References\n"}


def _small_profile(project, **training) -> str:
    return write_profile(project, {"profile": "t", "seed": 0, "datasets": {"wmh": {"training": training}}})


def _sleepy_training(project) -> None:
    """A training notebook that marks its start, then sleeps ``sleep`` seconds before writing its result."""
    nb = _notebook("sleep = 0\n")
    nb.cells[2].source = (
        "import pathlib, time\nfrom helpers.base.paths import Workspace\nfrom helpers.base import io\n"
        "io.write_text(Workspace.at(workspace).results(dataset) / 'training.started', 'x')\n"
        "time.sleep(sleep)\n"
        "io.write_text(Workspace.at(workspace).results(dataset) / 'training.txt', f'{value}')\n")
    nbformat.write(nb, project / "notebooks" / "02_training.ipynb")


def test_run_rerun_and_book_in_a_workspace_outside_the_clone(tmp_path, monkeypatch):
    project = tmp_path / "clone"
    project.mkdir()
    monkeypatch.chdir(tmp_path)
    (project / "_config.yml").write_text(
        "title: test\nonly_build_toc_files: true\nexecute:\n  execute_notebooks: 'off'\n")
    (project / "profiles").mkdir()
    (project / "notebooks").mkdir()
    (project / "book").mkdir()
    for page, text in BOOK_PAGES.items():
        (project / "book" / page).write_text(text)
    for section in sections.SECTIONS:
        nb = _notebook('datasets = ["wmh"]\n' if section.name in ("cross_dataset", "multiverse") else "")
        nb.cells[2].source = nb.cells[2].source.replace("{SECTION}", section.name)
        nbformat.write(nb, project / "notebooks" / section.notebook)
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(project))
    monkeypatch.setattr(plan, "code_hash", lambda: "code-v1")
    name = _small_profile(project)
    chosen = ["data", "training"]
    for workspace in ("../elsewhere", str(tmp_path / "absolute")):  # relative (to the project root) and absolute
        ws = Workspace.at(workspace)
        assert project not in ws.root.parents
        first = running.run(name, workspace=workspace, sections=chosen, book=False)
        assert first.executed == ["wmh · data", "wmh · training"]
        assert running.run(name, workspace=workspace, sections=chosen, book=False).executed == []
        assert cli.main(["book", "--workspace", workspace]) == 0
        html = ws.root / "_build" / "html"
        for chapter in ("01_data", "02_training"):
            assert (html / "book" / "executed" / "wmh" / f"{chapter}.html").is_file()
        index = (html / "book" / "intro.html").read_text()
        assert 'href="executed/wmh/01_data.html"' in index or 'href="../book/executed/wmh/01_data.html"' in index
        toc = yaml.safe_load((ws.root / "_toc.yml").read_text())
        assert toc["parts"][1]["chapters"][0]["file"] == "book/executed/wmh/01_data"


def _processes_of(project) -> list[str]:
    """Processes still running for this project (the runner's children and kernels carry its root in their
    environment)."""
    import time

    import psutil

    time.sleep(1.0)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.environ().get("HONEST_PROJECT_ROOT") == str(project) and proc.pid != __import__("os").getpid():
                found.append(" ".join(proc.info["cmdline"] or []))
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def test_ctrl_c_stops_the_section_stamps_nothing_unfinished_and_the_next_run_resumes(project):
    import os
    import signal
    import subprocess
    import sys
    import time

    _sleepy_training(project)
    name = _small_profile(project, sleep=60)
    cmd = [sys.executable, "-m", "helpers.study", "run", "--profile", name, "--workspace", "ws", "--no-book",
           "--section", "data", "--section", "training"]
    env = {**os.environ, "HONEST_PROJECT_ROOT": str(project)}
    proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    ws = Workspace.at("ws")
    started = ws.results("wmh") / "training.started"
    deadline = time.monotonic() + 120
    while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert started.exists(), proc.communicate()
    time.sleep(1.0)  # well inside the cell's sleep
    interrupted_at = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground process group
    stdout, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - interrupted_at < 15, "the run must stop promptly"
    assert proc.returncode == 130, (stdout, stderr)
    assert "interrupted (SIGINT) during the notebook of section wmh · training" in stderr
    assert "Traceback" not in stderr
    assert any(line.startswith("[1/2] wmh · data") and "done in" in line for line in stdout.splitlines())
    assert not plan.stamp_path(ws, "wmh", "training").exists()
    assert not (ws.executed("wmh") / "02_training.ipynb").exists()
    assert not list(ws.executed("wmh").glob(".*.running.ipynb"))
    assert not (ws.results("wmh") / "training.txt").exists()
    assert plan.stamp_path(ws, "wmh", "data").exists()
    assert _processes_of(project) == [], "the notebook process and its kernel must be stopped"

    _small_profile(project, sleep=0)
    resumed = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "wmh · data                       up to date" in resumed.stdout
    assert "wmh · training                   done" in resumed.stdout
    assert (ws.results("wmh") / "training.txt").read_text() == "1"
    # the runner prints only its own progress: no kernel start-up chatter, no caught interrupts
    for noise in ("IPKernelApp", "without encryption", "KeyboardInterrupt", "Input Notebook", "Executing"):
        assert noise not in resumed.stdout + resumed.stderr, noise
        assert noise not in stdout + stderr, noise


def test_a_second_run_on_a_locked_workspace_stops_naming_the_first(project):
    import os

    name = _small_profile(project)
    ws = Workspace.at("ws")
    with lock.workspace_lock(ws, "helpers.study run --profile first"):
        with pytest.raises(errors.StudyError) as info:
            running.run(name, workspace="ws", book=False)
    message = str(info.value)
    assert f"workspace ws is in use by another run: pid {os.getpid()} on " in message
    assert "helpers.study run --profile first" in message
    assert not ws.results("wmh").exists()  # nothing ran
    # released: the next run goes ahead, and leaves the lock file empty behind it
    assert running.run(name, workspace="ws", sections=["data"], book=False).executed == ["wmh · data"]
    assert lock.lock_path(ws).read_text() == ""


def test_a_stale_lock_of_a_killed_run_is_taken_over(project):
    import io as _stdio
    import json as _json

    name = _small_profile(project)
    ws = Workspace.at("ws")
    ws.root.mkdir(parents=True)
    # what a killed run leaves: its details in the lock file, but no process holding the lock
    lock.lock_path(ws).write_text(_json.dumps({"pid": 4194999, "host": "h", "started": "s", "command": "c"}))
    out = _stdio.StringIO()
    assert running.run(name, workspace="ws", sections=["data"], book=False, out=out).executed == ["wmh · data"]
    assert "taking over the stale lock of a run that stopped without releasing it (pid 4194999 on h" in out.getvalue()


def test_quiet_filters_kernel_chatter_and_keeps_real_errors():
    text = ("[IPKernelApp] WARNING | Kernel is running over TCP without encryption. This is not secure.\n"
            "    To use secure connections, set ...\n"
            "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.\n"
            "ValueError: planted failure\n")
    assert execution.quiet(text) == "ValueError: planted failure"


# ---- the evaluate command: predictions made elsewhere, no training -----------------------------------------------


def test_evaluate_command_matches_reports_and_builds_the_book_on_the_smoke_data(tmp_path, capsys):
    import pandas as pd

    from helpers.evaluation import constructed
    from helpers import data
    from helpers.data import predictions, splits, synthetic

    download = tmp_path / "download"
    synthetic.write_wmh(download / "wmh", seed=0)  # the smoke stand-in, unpacked one folder deeper than named
    found = data.find_cases("wmh", download)
    test_ids = list(splits.make_splits(found, seed=0).test)
    assert len(test_ids) >= 2
    preds = tmp_path / "preds"
    by_id = {f.case_id: f for f in found}
    for model in ("unet", "resunet"):
        for case_id in test_ids:
            if model == "resunet" and case_id == test_ids[-1]:
                continue  # this model has no prediction for the last test case
            case = data.read_case(by_id[case_id])
            mask = constructed.construct(case.mask, model, spacing=case.spacing)
            predictions.write_prediction(preds, model, case_id, mask, kind="volume", affine=case.affine)
    (preds / "resunet" / "notes_final.nii.gz").write_bytes(b"")  # a stray file: listed, not used
    ws = tmp_path / "results"
    args = ["evaluate", "--dataset", "wmh", "--data-root", str(download), "--predictions", str(preds),
            "--workspace", str(ws)]

    assert cli.main(args) == 1
    captured = capsys.readouterr()
    assert f"no prediction for test case(s) ['{test_ids[-1]}']" in captured.err and "--missing-as-empty" in captured.err
    assert f"  NO PREDICTION  {test_ids[-1]}" in captured.out
    assert "  unmatched file notes_final.nii.gz" in captured.out
    assert not (ws / "results").exists()  # nothing ran

    assert cli.main([*args, "--missing-as-empty"]) == 0
    out = capsys.readouterr().out
    assert f"(one level below {download})" in out
    assert f"predictions of model 'unet': {len(test_ids)} test cases matched, 0 test cases without a prediction" in out
    assert "wmh · training" not in out  # nothing is trained
    per_case = pd.read_csv(ws / "results" / "wmh" / "per_case_metrics.csv", dtype={"case_id": str})
    assert sorted(per_case["model"].unique()) == ["resunet", "unet"]
    assert sorted(per_case["case_id"].unique()) == sorted(test_ids)
    empty = per_case[(per_case["model"] == "resunet") & (per_case["case_id"] == test_ids[-1])]
    assert bool(empty["pred_empty"].iloc[0])  # scored as an empty prediction, flagged
    html = ws / "_build" / "html" / "book" / "executed" / "wmh"
    for chapter in ("01_data", "03_evaluation", "04_stratification", "07_qualitative"):
        assert (html / f"{chapter}.html").is_file(), chapter
    assert not (html / "02_training.html").exists()


def test_the_committed_toc_is_the_one_the_main_job_writes(monkeypatch):
    # `make study` writes _toc.yml at the project root (the main workspace): the committed file must be that file,
    # or every run leaves the clone modified ("+dirty" in the provenance of the next run's pages).
    from helpers.base.paths import project_root
    from helpers.runner import book
    from helpers.runner.profiles import load_profile

    root = project_root()
    ws = Workspace.at(root)
    profile, _ = load_profile("default")
    executed = {ws.executed(d) / s.notebook for d in profile["datasets"] for s in sections.DATASET_SECTIONS}
    executed |= {ws.executed(s.dataset) / s.notebook for s in sections.STUDY_SECTIONS}
    real_exists = type(root).exists
    monkeypatch.setattr(type(root), "exists", lambda p: p in executed or real_exists(p))  # as after a full run
    expected = book.toc(profile, ws)
    assert yaml.safe_load((root / "_toc.yml").read_text()) == expected
    titles = [c["title"] for part in expected["parts"] for c in part["chapters"] if "title" in c]
    assert "LiTS: data" in titles and "IDRiD: data" in titles  # display names, never the key upper-cased
