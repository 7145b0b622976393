"""The study's grid on Dask: a real scheduler and two ``dask worker`` processes on 127.0.0.1 (started here), the
training grid's results against the in-process run, a worker killed mid-task, resumption, and the Slurm recipe."""

import gc
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas.testing
import pytest

from helpers.compute import cluster
from helpers.data import predictions
from helpers.learning import grid, training
from helpers.learning.protocol import TrainingProtocol
from helpers.base.paths import Workspace
from helpers.data.preprocessing import PreparedCase, save_prepared
from helpers.data.splits import Splits, save_splits

ROOT = Path(__file__).resolve().parents[1]
# Smaller than the smoke profile's training: two models, 3 epochs of 2 steps of 2 patches.
TINY = TrainingProtocol(size="smoke", epochs=3, steps_per_epoch=2, batch_size=2, patch_size=64,
                        val_max_slices=2)
MODELS = ["unet", "resunet"]


# ---- pieces without a cluster -------------------------------------------------------------------------------------


def test_local_layout_gives_workers_times_threads_equal_to_cores():
    assert cluster.local_layout(cores=8) == (8, 1)
    assert cluster.local_layout(2, cores=8) == (2, 4)
    assert cluster.local_layout(3, cores=8) == (3, 2)  # 3 x 2 = 6 <= 8: never more threads than cores
    assert cluster.local_layout(4, cores=2) == (4, 1)  # more workers than cores: one thread each
    with pytest.raises(ValueError, match="workers must be a positive integer, got 0"):
        cluster.local_layout(0, cores=2)


def test_worker_environment_makes_openmp_threads_wait_passively():
    env = cluster.worker_environment(2)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert env["OMP_NUM_THREADS"] == env[cluster.THREADS_ENV] == "2"


def _square(x):
    return x * x


def _fail_on_three(x):
    if x == 3:
        raise ValueError("three is not allowed")
    return x


def test_in_process_grid_keeps_order_and_names_the_failing_task():
    tasks = [cluster.GridTask(f"item {i}", _square, (i,)) for i in range(4)]
    assert cluster.run_grid(tasks, progress=False) == [0, 1, 4, 9]
    tasks = [cluster.GridTask(f"item {i}", _fail_on_three, (i,)) for i in range(5)]
    with pytest.raises(cluster.GridError, match="task item 3 failed: ValueError: three is not allowed"):
        cluster.run_grid(tasks, progress=False)


def test_grid_rejects_duplicate_labels_and_unknown_prerequisites():
    with pytest.raises(ValueError, match="task labels must be unique"):
        cluster.run_grid([cluster.GridTask("a", _square, (1,)), cluster.GridTask("a", _square, (2,))])
    with pytest.raises(ValueError, match=r"task 'a' waits for unknown task\(s\) \['b'\]"):
        cluster.run_grid([cluster.GridTask("a", _square, (1,), after=("b",))])


def test_progress_printer_counts_tasks_over_grids():

    out = io.StringIO()
    printer = cluster.ProgressPrinter(out=out)
    t0 = printer.start
    printer((0.0, {"event": "grid", "name": "train wmh", "n": 2}))
    printer((0.0, {"event": "task", "label": "wmh · unet · seed 0", "status": "done", "seconds": 1.25}))
    printer((0.0, {"event": "grid", "name": "train lits", "n": 1}))
    # a worker's event carries the task's submission, start and end (wall clock) and its worker: the timeline
    printer((0.0, {"event": "task", "label": "wmh · resunet · seed 0", "status": "done", "seconds": 2.5,
                   "submitted": t0 + 0.5, "start": t0 + 9.25, "end": t0 + 11.75, "worker": 1}))
    lines = out.getvalue().splitlines()
    assert lines[0].strip() == "grid train wmh: 2 tasks"
    assert lines[1].strip().startswith("[1/2] wmh · unet · seed 0")
    assert "done in    1.2 s" in lines[1] or "done in    1.3 s" in lines[1]
    assert lines[2].strip() == "grid train lits: 1 tasks"
    assert lines[3].strip().startswith("[2/3] wmh · resunet · seed 0")
    assert lines[3].endswith("done in    2.5 s (queued from 0.5 s, ran 9.2 s to 11.8 s on worker 1)")


# ---- a real scheduler and two workers -------------------------------------------------------------------------------


def _case(case_id, *, seed, n=3, hw=(64, 64), original=(48, 56)):
    rng = np.random.default_rng(seed)
    mask = np.zeros((n, *hw), bool)
    mask[:, 20:28, 30:40] = True
    mask[n // 2, 50:53, 10:13] = True
    image = (rng.normal(size=(n, 1, *hw)) + 2.0 * mask[:, None]).astype(np.float32)
    return PreparedCase(case_id, image, mask, None, (3.0, 0.9, 0.9), (n, *original),
                        (1.0, hw[0] / original[0], hw[1] / original[1]), np.diag([0.9, 0.9, 3.0, 1.0]), "volume")


def _dataset(ws, dataset="wmh"):
    ids = {"train": ["a", "b"], "val": ["c"], "test": ["d", "e"]}
    for i, case_id in enumerate(ids["train"] + ids["val"] + ids["test"]):
        save_prepared(ws, dataset, _case(case_id, seed=i))
    save_splits(ws, dataset, Splits(**ids))


def _worker_env():
    env = {**os.environ, **cluster.worker_environment(1), "HONEST_PROJECT_ROOT": str(ROOT)}
    return env


class _Cluster:
    """``dask scheduler`` and ``dask worker`` processes (no nanny: a killed worker stays dead)."""

    def __init__(self, folder: Path):
        self.folder, self.workers = folder, []
        self.file = folder / "scheduler.json"
        dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
        self.scheduler = subprocess.Popen(
            [*dask, "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(self.file)],
            env=_worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            if self.file.exists() and self.file.stat().st_size:
                break
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text())["address"]

    def add_worker(self):
        proc = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(self.file),
             "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
            env=_worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.workers.append(proc)
        return proc

    def wait_for_workers(self, n):
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(n, timeout=120)

    def close(self):
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    c = _Cluster(tmp_path_factory.mktemp("dask"))
    try:
        c.add_worker()
        c.add_worker()
        c.wait_for_workers(2)
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """The reference: the tiny grid in-process with one torch thread (the workers' count)."""
    ws = Workspace.at(tmp_path_factory.mktemp("reference"))
    _dataset(ws)
    old = os.environ.get(cluster.THREADS_ENV)
    os.environ[cluster.THREADS_ENV] = "1"
    try:
        grid.train_all(ws, "wmh", TINY, models=MODELS, seed=0, seeds=2, progress=False)
        grid.predict_all(ws, "wmh", models=MODELS, seed=0, seeds=2, progress=False)
    finally:
        if old is None:
            os.environ.pop(cluster.THREADS_ENV)
        else:
            os.environ[cluster.THREADS_ENV] = old
    return ws


def _predictions(ws):
    out = {}
    for s, index in ((0, 0), (1, 1)):
        root = grid.predictions_root(ws, "wmh", seed_index=index, seed=s)
        for model in MODELS:
            for case in ("d", "e"):
                out[(s, model, case)] = predictions.read_prediction(root, model, case, shape=(3, 48, 56))
    return out


def _assert_same_predictions(ws, reference):
    ours, ref = _predictions(ws), _predictions(reference)
    assert ours.keys() == ref.keys()
    for key in ref:
        assert np.array_equal(ours[key], ref[key]), key


@pytest.mark.slow
def test_training_grid_on_two_workers_equals_the_in_process_run(tmp_path, dask_cluster, in_process):
    ws = Workspace.at(tmp_path)
    _dataset(ws)
    summary = grid.train_all(ws, "wmh", TINY, models=MODELS, seed=0, seeds=2, scheduler=dask_cluster.address)
    assert list(zip(summary["model"], summary["seed"])) == [("unet", 0), ("resunet", 0), ("unet", 1), ("resunet", 1)]
    grid.predict_all(ws, "wmh", models=MODELS, seed=0, seeds=2, scheduler=dask_cluster.address)
    _assert_same_predictions(ws, in_process)
    for model in MODELS:  # identical best weights, not only identical thresholded masks
        a = training.load_best_model(grid.model_folder(ws, "wmh", model)).state_dict()
        b = training.load_best_model(grid.model_folder(in_process, "wmh", model)).state_dict()
        assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)

    # a rerun finds every task up to date: no checkpoint is rewritten
    last = {m: grid.model_folder(ws, "wmh", m) / training.CHECKPOINT_LAST for m in MODELS}
    before = {m: p.stat().st_mtime_ns for m, p in last.items()}
    tasks = [cluster.GridTask(f"wmh · {m} · seed 0", grid.train_task, (ws, "wmh", m),
                              {"seed": 0, "protocol": TINY}) for m in MODELS]
    rows = cluster.run_grid(tasks, scheduler=dask_cluster.address)
    assert [r["up_to_date"] for r in rows] == [True, True]
    assert {m: p.stat().st_mtime_ns for m, p in last.items()} == before


@pytest.mark.slow
def test_an_interrupted_grid_resumes_without_redoing_finished_tasks(tmp_path, dask_cluster, in_process):
    ws = Workspace.at(tmp_path)
    _dataset(ws)
    # "interrupted": only the first seed's tasks ran before the stop
    grid.train_all(ws, "wmh", TINY, models=MODELS, seed=0, seeds=1, scheduler=dask_cluster.address)
    first = {m: (grid.model_folder(ws, "wmh", m) / training.CHECKPOINT_LAST).stat().st_mtime_ns for m in MODELS}
    tasks = [cluster.GridTask(f"wmh · {m} · seed {s}", grid.train_task, (ws, "wmh", m),
                              {"seed": s, "seed_index": s, "protocol": TINY}) for s in (0, 1) for m in MODELS]
    rows = cluster.run_grid(tasks, scheduler=dask_cluster.address)
    assert [r["up_to_date"] for r in rows] == [True, True, False, False]
    assert {m: (grid.model_folder(ws, "wmh", m) / training.CHECKPOINT_LAST).stat().st_mtime_ns
            for m in MODELS} == first
    grid.predict_all(ws, "wmh", models=MODELS, seed=0, seeds=2, scheduler=dask_cluster.address)
    _assert_same_predictions(ws, in_process)


@pytest.mark.slow
def test_a_failing_task_stops_the_grid_naming_it_and_keeps_earlier_results(tmp_path, dask_cluster):
    ws = Workspace.at(tmp_path)
    _dataset(ws)
    tasks = [cluster.GridTask("wmh · unet · seed 0", grid.train_task, (ws, "wmh", "unet"),
                              {"seed": 0, "protocol": TINY}),
             cluster.GridTask("wmh · broken · seed 0", grid.train_task, (ws, "wmh", "broken"),
                              {"seed": 0, "protocol": TINY}, after=("wmh · unet · seed 0",))]
    # (the failing task runs on a worker: its function must be importable there, hence a bad model name)
    with pytest.raises(cluster.GridError,
                       match=r"task wmh · broken · seed 0 failed: ValueError: model name must be one of"):
        cluster.run_grid(tasks, scheduler=dask_cluster.address)
    assert (grid.model_folder(ws, "wmh", "unet") / training.CHECKPOINT_BEST).exists()


@pytest.mark.slow
def test_killing_a_worker_mid_task_still_completes_with_identical_results(tmp_path, dask_cluster, in_process):
    from distributed import Client

    ws = Workspace.at(tmp_path)
    _dataset(ws)
    extra = dask_cluster.add_worker()  # the one to kill; the module's two workers stay for the other tests
    dask_cluster.wait_for_workers(3)
    killed = []  # the task keys the victim was running when it was killed

    def kill_a_busy_worker():
        with Client(dask_cluster.address, timeout="30s") as client:
            pid_of = client.run(os.getpid)
            for _ in range(2400):
                busy = {w: keys for w, keys in client.processing().items() if keys and w in pid_of}
                if busy:
                    time.sleep(0.3)  # into the training loop (data loaded, maybe an epoch saved)
                    busy = {w: keys for w, keys in client.processing().items() if keys and w in busy}
                    if busy:
                        victim = next((w for w in busy if pid_of[w] == extra.pid), next(iter(busy)))
                        os.kill(pid_of[victim], signal.SIGKILL)
                        killed.extend(busy[victim])
                        return
                time.sleep(0.05)

    thread = threading.Thread(target=kill_a_busy_worker)
    thread.start()
    try:
        grid.train_all(ws, "wmh", TINY, models=MODELS, seed=0, seeds=2, scheduler=dask_cluster.address)
    finally:
        thread.join()
    assert killed and all(str(k).startswith("train-wmh-") for k in killed)
    grid.predict_all(ws, "wmh", models=MODELS, seed=0, seeds=2, scheduler=dask_cluster.address)
    _assert_same_predictions(ws, in_process)
    # the fixture's workers are replaced when the killed one was one of them
    alive = [p for p in dask_cluster.workers if p.poll() is None]
    for _ in range(2 - len(alive)):
        dask_cluster.add_worker()
    dask_cluster.wait_for_workers(2)


# ---- HPO: one trial per task, a stored study that resumes -----------------------------------------------------------


@pytest.fixture(scope="module")
def vessels(tmp_path_factory):
    from helpers.studies.small_data import data as sd

    root = tmp_path_factory.mktemp("vessels")
    sd.write_small_data(root, seed=0, n_images=6, size=48)
    return sd.load_small_data(root)


HPO = {"size": 32, "epochs": 2, "width": 4, "sampler": "tpe", "threads": 1, "n_startup": 2}


def _trial_table(trials):
    return trials.drop(columns=["seconds"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def uninterrupted(vessels, tmp_path_factory):
    from helpers.studies.small_data import hpo as st

    storage = tmp_path_factory.mktemp("hpo") / "hpo.journal"
    return st.optimize("unet", vessels, n_trials=4, storage=storage, **HPO)


@pytest.mark.slow
def test_an_hpo_search_interrupted_after_k_trials_continues_from_k(vessels, uninterrupted, tmp_path, monkeypatch):
    from helpers.studies.small_data import hpo as st

    storage = tmp_path / "hpo.journal"
    real, calls = st.train_model, []

    def stop_in_third_trial(*args, **kwargs):
        calls.append(kwargs["params"])
        if len(calls) == 3:
            raise KeyboardInterrupt("stopped by the user")  # an interruption in the middle of trial 2
        return real(*args, **kwargs)

    monkeypatch.setattr(st, "train_model", stop_in_third_trial)
    with pytest.raises(KeyboardInterrupt):
        st.optimize("unet", vessels, n_trials=4, storage=storage, **HPO)
    monkeypatch.setattr(st, "train_model", real)
    study_name = uninterrupted[1]["study"]
    assert len(st._finished_trials(st._open_study(storage, study_name))) == 2  # k = 2 finished
    st._open_study(storage, study_name).ask()  # and a trial left RUNNING, as by a worker killed mid-trial

    resumed_calls = []
    monkeypatch.setattr(st, "train_model", lambda *a, **kw: resumed_calls.append(kw["params"]) or real(*a, **kw))
    trials, best = st.optimize("unet", vessels, n_trials=4, storage=storage, **HPO)
    # only trials 2 and 3 were trained, trial 2 with the parameters it had proposed before the interruption
    assert len(resumed_calls) == 2 and resumed_calls[0] == calls[2]
    assert list(trials["trial"]) == [0, 1, 2, 3]
    pandas.testing.assert_frame_equal(_trial_table(trials), _trial_table(uninterrupted[0]))
    assert best == uninterrupted[1]


@pytest.mark.slow
def test_hpo_trials_on_the_workers_equal_the_in_process_search(vessels, uninterrupted, tmp_path, dask_cluster):
    from helpers.studies.small_data import hpo as st

    trials, best = st.optimize("unet", vessels, n_trials=4, storage=tmp_path / "hpo.journal",
                               scheduler=dask_cluster.address, **HPO)
    pandas.testing.assert_frame_equal(_trial_table(trials), _trial_table(uninterrupted[0]))
    assert best == uninterrupted[1]


@pytest.mark.slow
def test_cross_validation_folds_on_the_workers_equal_the_in_process_run(vessels, dask_cluster):
    from helpers.studies.small_data import cv as st
    from helpers.data.splits import cv_splits

    splits = cv_splits([c.case_id for c in vessels], protocols=["3fold"], seeds=[0])
    kwargs = {"models": ["unet", "segformer"], "splits": splits, "cnn_size": 32, "epochs": 1, "width": 4,
              "mc_passes": 2, "keep_models": [("3fold", 0, 0, "unet"), ("3fold", 0, 1, "segformer")],
              "progress": False}
    here = st.cross_validate(vessels, **kwargs)
    there = st.cross_validate(vessels, scheduler=dask_cluster.address, **kwargs)
    pandas.testing.assert_frame_equal(there.scores, here.scores)
    assert len(here.scores) == 6 * 2 * 4  # 6 images tested once x 2 models x (3 classes + macro)
    assert here.predictions.keys() == there.predictions.keys()
    assert all(np.array_equal(here.predictions[k], there.predictions[k]) for k in here.predictions)
    assert all(np.array_equal(here.uncertainty[k], there.uncertainty[k]) for k in here.uncertainty)
    assert list(there.models) == [("3fold", 0, 0, "unet"), ("3fold", 0, 1, "segformer")]
    x, _ = st.stack_cases(vessels[:2], 32)
    for key in here.models:  # the kept models come back with their weights (a transformer included)
        assert np.array_equal(st.predict_proba(here.models[key], x), st.predict_proba(there.models[key], x))


# ---- the Slurm recipe ------------------------------------------------------------------------------------------------


def test_slurm_recipe_renders_a_gpu_job_script_without_submitting(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("slurm_paper", ROOT / "examples" / "slurm_paper.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    from helpers.compute.security import run_credentials

    with run_credentials(tmp_path) as credentials:
        slurm = recipe.make_cluster(credentials, queue="gpu", account="proj", cores=8, memory="64GB", gpus=1,
                                    python="/shared/env/bin/python", project_root="/shared/study",
                                    dashboard_address="127.0.0.1:0")
        try:
            script = slurm.job_script()
            assert slurm.workers == {}  # nothing submitted
        finally:
            slurm.close()
    lines = script.splitlines()
    for directive in ("#SBATCH -p gpu", "#SBATCH -A proj", "#SBATCH --cpus-per-task=8", "#SBATCH --gres=gpu:1",
                      "#SBATCH -t 24:00:00"):
        assert directive in lines, directive
    assert "export OMP_WAIT_POLICY=PASSIVE" in lines and "export HONEST_TORCH_THREADS=8" in lines
    assert "cd /shared/study" in lines
    command = lines[-1]
    assert command.startswith("/shared/env/bin/python -m distributed.cli.dask_worker tls://")
    assert command.count("--nthreads") == 1 and "--nthreads 1 " in command and "--resources GPU=1" in command


# ---- the runner: concurrency plan and command line -------------------------------------------------------------------


def test_section_dependencies_let_datasets_run_side_by_side():
    from helpers.runner import plan, scheduling, sections

    def task(name, dataset, **params):
        section = sections.SECTION_BY_NAME[name]
        return plan.Task(section, dataset if section.scope == "dataset" else section.dataset, params, "test")

    tasks = [task("metric_definitions", "study"), task("data", "wmh"), task("training", "wmh"),
             task("data", "lits"), task("training", "lits"), task("evaluation", "lits"),
             task("cross_dataset", "study", datasets=["wmh", "lits"]), task("small_data", "study")]
    deps = scheduling.section_dependencies(tasks)
    # by hand from Section.depends: training <- data; evaluation <- data, training; cross_dataset <- data and
    # evaluation of both datasets (wmh's evaluation is not in this plan); metric definitions and small data: none
    assert deps == {0: set(), 1: set(), 2: {1}, 3: set(), 4: {3}, 5: {3, 4}, 6: {1, 3, 5}, 7: set()}


def test_section_priorities_count_the_sections_waiting_downstream():
    from helpers.runner import plan, scheduling, sections

    def task(name, dataset, **params):
        section = sections.SECTION_BY_NAME[name]
        return plan.Task(section, dataset if section.scope == "dataset" else section.dataset, params, "test")

    tasks = [task("metric_definitions", "study"), task("data", "wmh"), task("training", "wmh"),
             task("data", "lits"), task("training", "lits"), task("evaluation", "lits"),
             task("cross_dataset", "study", datasets=["wmh", "lits"]), task("small_data", "study")]
    # by hand from the dependencies above: lits data <- lits training, lits evaluation, cross_dataset (3);
    # wmh data <- wmh training, cross_dataset (2); lits training <- lits evaluation <- cross_dataset (2, 1);
    # nothing waits for wmh training here (its evaluation is not in the plan), cross_dataset or small data
    assert scheduling.section_priorities(tasks) == {0: 0, 1: 2, 2: 0, 3: 3, 4: 2, 5: 1, 6: 0, 7: 0}


def test_grid_priority_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(cluster.PRIORITY_ENV, raising=False)
    assert cluster.grid_priority() == 0
    monkeypatch.setenv(cluster.PRIORITY_ENV, "6")
    assert cluster.grid_priority() == 6
    assert cluster.grid_priority(finishing=True) == 7
    monkeypatch.setenv(cluster.PRIORITY_ENV, "high")
    with pytest.raises(ValueError, match=r"\$HONEST_GRID_PRIORITY must be an integer, got 'high'"):
        cluster.grid_priority()


def test_predictions_run_one_above_the_training_of_their_section(tmp_path, monkeypatch):
    from helpers.learning import grid

    ws = Workspace(tmp_path / "ws")
    seen = {}

    def fake_run_grid(tasks, *, scheduler=None, name="grid", progress=True, priority=None, out=None):
        seen[name] = priority
        return [[] for _ in tasks]

    monkeypatch.setattr(grid, "run_grid", fake_run_grid)
    monkeypatch.setattr(grid, "load_splits", lambda ws, dataset: Splits(train=["a"], val=["b"], test=["c"]))
    monkeypatch.setenv(cluster.PRIORITY_ENV, "6")
    grid.predict_all(ws, "wmh", models=["unet"], scheduler="tcp://nowhere:1")
    assert seen == {"predict wmh": 7}


@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_local_workers_start_with_the_allocator_settings_not_dasks_trim_threshold(monkeypatch):
    """Dask's nannies would start workers with MALLOC_TRIM_THRESHOLD_=65536 (see helpers.compute.cluster,
    "Memory"): they start with the study's allocator settings instead, and a value the user set is kept."""

    from distributed import Client

    from helpers.compute.runtime import ALLOCATOR_ENV

    for name in ALLOCATOR_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MALLOC_TOP_PAD_", "12345")
    with cluster.open_cluster("local", workers=1, out=io.StringIO()) as info:
        with Client(info.address) as client:
            seen = client.run(lambda: {name: os.environ.get(name, "unset") for name in ALLOCATOR_ENV})
    expected = {**ALLOCATOR_ENV, "MALLOC_TOP_PAD_": "12345"}
    assert list(seen.values()) == [expected]
    assert expected["MALLOC_TRIM_THRESHOLD_"] == "1073741824"
    gc.collect()


def test_notebook_kernels_get_the_allocator_settings(monkeypatch):
    from helpers.compute.runtime import ALLOCATOR_ENV
    from helpers.runner.execution import kernel_environment

    for name in ALLOCATOR_ENV:
        monkeypatch.delenv(name, raising=False)
    env = kernel_environment()
    assert {name: env[name] for name in ALLOCATOR_ENV} == ALLOCATOR_ENV
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert kernel_environment()["MALLOC_MMAP_THRESHOLD_"] == "65536"


def test_command_line_takes_scheduler_and_workers(monkeypatch):
    from helpers.runner import cli

    seen = {}
    monkeypatch.setattr(cli, "run", lambda profile, **kw: seen.update(kw))
    assert cli.main(["run", "--profile", "smoke", "--scheduler", "none", "--workers", "3", "--no-book"]) == 0
    assert seen["scheduler"] == "none" and seen["workers"] == 3
    assert cli.main(["run", "--profile", "smoke"]) == 0
    assert seen["scheduler"] == "local" and seen["workers"] is None
    with pytest.raises(SystemExit):
        cli.main(["run", "--workers", "0"])


def test_a_scheduler_that_cannot_be_reached_is_named():

    with pytest.raises(cluster.GridError, match="cannot connect to the Dask scheduler at 'tcp://127.0.0.1:9'"):
        with cluster.open_cluster("tcp://127.0.0.1:9", connect_timeout="1s", out=io.StringIO()):
            pass


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_runner_on_a_local_cluster_runs_both_datasets_and_passes_the_address(tmp_path, monkeypatch):
    """Tiny section notebooks (as in test_study) under a two-worker LocalCluster: every section runs once, each
    dataset's chain in order, and the training notebook receives the cluster's address."""

    import nbformat
    import yaml

    from helpers.runner import running, sections

    (tmp_path / "_config.yml").write_text("title: test\n")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "notebooks").mkdir()
    for section in sections.SECTIONS:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        extra = 'datasets = ["wmh"]\n' if section.name in ("cross_dataset", "multiverse") else ""
        extra += "scheduler = None\n" if section.name == "training" else ""
        params = nbformat.v4.new_code_cell(
            f'dataset = "wmh"\nprofile = "t"\nworkspace = "ws"\nseed = 0\n{extra}')
        params.metadata["tags"] = ["parameters"]
        body = nbformat.v4.new_code_cell(
            "import time\nfrom helpers.base import io\nfrom helpers.base.paths import Workspace\n"
            f"io.write_text(Workspace.at(workspace).results(dataset) / '{section.name}.txt', "
            "f'{time.time_ns()} {globals().get(\"scheduler\")}')\n")
        nb.cells = [params, body]
        nbformat.write(nb, tmp_path / "notebooks" / section.notebook)
    (tmp_path / "profiles" / "t.yaml").write_text(yaml.safe_dump(
        {"profile": "t", "seed": 0, "datasets": {"wmh": {}, "lits": {}}}))
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    report = running.run("t", workspace="ws", book=False, scheduler="local", workers=2, out=out)
    assert sorted(report.executed) == sorted(f"{d} · {s.name}" for d in ("wmh", "lits")
                                             for s in sections.DATASET_SECTIONS)
    text = out.getvalue()
    assert "dask: local cluster tcp://127.0.0.1:" in text and "2 workers x 1 torch threads" in text
    assert "dashboard http" in text
    for dataset in ("wmh", "lits"):
        stamp = {s.name: int((tmp_path / "ws" / "results" / dataset / f"{s.name}.txt").read_text().split()[0])
                 for s in sections.DATASET_SECTIONS}
        for section in sections.DATASET_SECTIONS:  # every section after the sections it depends on
            assert all(stamp[dep] < stamp[section.name] for dep in section.depends), section.name
        address = (tmp_path / "ws" / "results" / dataset / "training.txt").read_text().split()[1]
        assert address.startswith("tcp://127.0.0.1:")
    # the address is not part of a section's key: a rerun (new cluster, new address) executes nothing
    assert running.run("t", workspace="ws", book=False, scheduler="local", workers=2, out=io.StringIO()).executed == []
    # clients and sockets of the concurrently executed sections go to the garbage collector: collect them here, where
    # their ResourceWarnings are ignored, not in a later test
    gc.collect()


def _tiny_project(root, training_body: str, *, datasets=("wmh", "lits")):
    """A project root whose section notebooks each write ``results/<dataset>/<section>.txt``; the training
    notebook declares ``scheduler`` and runs ``training_body`` (which may use ``workspace``, ``dataset``,
    ``scheduler``)."""
    import nbformat
    import yaml

    from helpers.runner import sections

    (root / "_config.yml").write_text("title: test\n")
    (root / "profiles").mkdir()
    (root / "notebooks").mkdir()
    for section in sections.SECTIONS:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        extra = 'datasets = ["wmh"]\n' if section.name in ("cross_dataset", "multiverse") else ""
        extra += "scheduler = None\n" if section.name == "training" else ""
        params = nbformat.v4.new_code_cell(f'dataset = "wmh"\nprofile = "t"\nworkspace = "ws"\nseed = 0\n{extra}')
        params.metadata["tags"] = ["parameters"]
        body = training_body if section.name == "training" else (
            "import time\nfrom helpers.base import io\nfrom helpers.base.paths import Workspace\n"
            f"io.write_text(Workspace.at(workspace).results(dataset) / '{section.name}.txt', f'{{time.time()}}')\n")
        nb.cells = [params, nbformat.v4.new_code_cell(body)]
        nbformat.write(nb, root / "notebooks" / section.notebook)
    (root / "profiles" / "t.yaml").write_text(yaml.safe_dump(
        {"profile": "t", "seed": 0, "datasets": {d: {} for d in datasets}}))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_section_waiting_for_its_grid_does_not_block_a_runnable_section(tmp_path, monkeypatch):
    """One worker, two datasets whose training sections each submit a 3 s task: both sections run at the same
    time (a section waiting on the cluster holds no slot), while their tasks run one after the other on the one
    worker. (Before, sections were capped at the number of workers: the second training section started only
    after the first had finished.)"""

    from helpers.runner import running, sections

    _tiny_project(tmp_path, (
        "import time\nfrom helpers.base import io\nfrom helpers.compute import cluster\n"
        "from helpers.base.paths import Workspace\n"
        "start = time.time()\n"
        "cluster.run_grid([cluster.GridTask(f'{dataset} · sleep', time.sleep, (3.0,))], scheduler=scheduler, "
        "name=f'sleep {dataset}')\n"
        "io.write_text(Workspace.at(workspace).results(dataset) / 'training.txt', f'{start} {time.time()}')\n"))
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    report = running.run("t", workspace="ws", book=False, scheduler="local", workers=1, out=out)
    assert sorted(report.executed) == sorted(f"{d} · {s.name}" for d in ("wmh", "lits")
                                             for s in sections.DATASET_SECTIONS)
    span = {d: [float(x) for x in (tmp_path / "ws" / "results" / d / "training.txt").read_text().split()]
            for d in ("wmh", "lits")}
    (wmh_start, wmh_end), (lits_start, lits_end) = span["wmh"], span["lits"]
    assert wmh_start < lits_end and lits_start < wmh_end  # the two training sections overlapped
    # the timeline: two task lines, each with its start, end and worker; on one worker they did not overlap
    lines = [line for line in out.getvalue().splitlines() if "· sleep" in line and " done in " in line]
    assert len(lines) == 2
    times = sorted(tuple(map(float, re.search(r"ran ([\d.]+) s to ([\d.]+) s on worker", line).groups()))
                   for line in lines)
    assert times[0][1] - times[0][0] >= 2.95 and times[1][1] - times[1][0] >= 2.95  # 3 s naps, printed to 0.1 s
    assert times[0][1] <= times[1][0] + 0.2
    gc.collect()


def _states(dask_scheduler, prefix):
    return sorted((ts.state, ts.processing_on.name if ts.processing_on else None)
                  for key, ts in dask_scheduler.tasks.items() if str(key).startswith(prefix))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_grid_tasks_wait_in_the_scheduler_queue_until_a_worker_is_free():
    """Four 4 s tasks on a local cluster of two one-thread workers: two run (one per worker), the other two wait
    in the scheduler's queue, assigned to no worker, so whichever worker frees first takes the next (Dask's default
    assigns all four at once, two to each worker, by guessed durations)."""

    from distributed import Client

    out = io.StringIO()
    with cluster.open_cluster("local", workers=2, out=out) as info:
        tasks = [cluster.GridTask(f"nap {i}", time.sleep, (4.0,)) for i in range(4)]
        result = {}
        thread = threading.Thread(target=lambda: result.update(r=cluster.run_grid(tasks, scheduler=info.address,
                                                                                   name="naps")))
        thread.start()
        with Client(info.address) as client:
            states = []
            for _ in range(600):  # until both workers run a task (the first start imports torch)
                states = client.run_on_scheduler(_states, prefix="naps-")
                if [s for s, _ in states].count("processing") == 2:
                    break
                time.sleep(0.1)
        thread.join(timeout=120)
    assert [s for s, _ in states] == ["processing", "processing", "queued", "queued"]
    assert len({w for s, w in states if s == "processing"}) == 2  # one on each worker
    assert result["r"] == [None] * 4
    assert out.getvalue().count(" done in ") == 4
    gc.collect()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_grid_of_higher_priority_overtakes_queued_tasks():
    """One worker: a grid of three 2 s naps at priority 0 starts; a one-task grid at priority 5 submitted while
    the first nap runs is the next to run, before the two queued naps."""

    out = io.StringIO()
    with cluster.open_cluster("local", workers=1, out=out) as info:
        low = [cluster.GridTask(f"low {i}", time.sleep, (2.0,)) for i in range(3)]
        thread = threading.Thread(target=cluster.run_grid, args=(low,),
                                  kwargs={"scheduler": info.address, "name": "low", "priority": 0})
        thread.start()
        for _ in range(600):  # until the first nap runs (its start imports torch on the worker)
            if "low" in _running_labels(info.address):
                break
            time.sleep(0.1)
        cluster.run_grid([cluster.GridTask("high", time.sleep, (0.5,))], scheduler=info.address, name="high",
                         priority=5)
        thread.join(timeout=60)
    order = [re.search(r"\] (\S+ ?\d?)", line).group(1).strip() for line in out.getvalue().splitlines()
             if " done in " in line]
    assert order[1] == "high" and sorted(order) == ["high", "low 0", "low 1", "low 2"]
    gc.collect()


def _running_labels(address):
    from distributed import Client

    with Client(address) as client:
        states = client.run_on_scheduler(lambda dask_scheduler: [str(k) for k, ts in dask_scheduler.tasks.items()
                                                                 if ts.state == "processing"])
    return " ".join(states)


def test_as_scheduler_is_one_vocabulary():
    assert [cluster.as_scheduler(v) for v in (None, "none", "")] == [None, None, None]
    assert cluster.as_scheduler("local") == "local" == cluster.LOCAL
    assert cluster.as_scheduler("tcp://10.0.0.1:8786") == "tcp://10.0.0.1:8786"
    with pytest.raises(TypeError, match="scheduler must be 'local', 'none' or a Dask scheduler address, got int: 3"):
        cluster.as_scheduler(3)
    with pytest.raises(ValueError, match="got 'tcp://a b'"):
        cluster.as_scheduler("tcp://a b")


@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_run_grid_local_means_a_local_cluster_as_in_open_cluster():
    # "local" is no address: run_grid starts a local cluster for the grid, as open_cluster does for a run
    tasks = [cluster.GridTask(f"t{i}", _square, (i,)) for i in range(3)]
    out = io.StringIO()
    assert cluster.run_grid(tasks, scheduler="local", progress=False, out=out) == [0, 1, 4]
    assert "dask: local cluster tcp://127.0.0.1:" in out.getvalue()
    # the cluster's processes and sockets go to the garbage collector here, where their warnings are ignored
    gc.collect()
