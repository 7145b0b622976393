"""Run the study's ``paper`` profile on a Slurm cluster: Dask workers as Slurm jobs (dask-jobqueue), one GPU each.

Run it on a login node of the cluster, from the project folder on a file system that every compute node mounts
(the workspace must be shared: workers read the prepared data and write checkpoints and predictions there):

    python examples/slurm_paper.py --queue gpu --account my-project --jobs 4 --python "$PWD/.venv/bin/python"

The scheduler and the notebooks run here; each Slurm job starts one Dask worker with ``--resources GPU=1`` in
the same Python environment (``pip install -e .`` of this project, with a CUDA build of torch 2.13.0). Results
come back through the shared workspace; the book is built here at the end. ``--dry-run`` prints the job script
and submits nothing.

Nobody else's code runs on the cluster (``helpers.compute.security``): the scheduler speaks ``tls://`` and admits
only workers and clients holding this run's credentials, a CA and a certificate made for the run
(``Security.temporary()``), written as PEM files of mode 0600 into a folder of mode 0700 below
``<workspace>/.credentials`` (on the shared file system, so the workers can read them; the job script names the
files, never their contents) and removed when the run ends. The dashboard listens on the login node's loopback
only; reach it from your machine with an SSH tunnel: ``ssh -L 8787:127.0.0.1:8787 <login node>``, then open
http://127.0.0.1:8787. Equivalent by hand: start such a cluster in Python, then
``python -m helpers.study run --profile paper --scheduler tls://<scheduler address> --security <folder>/security.yaml``.
"""

from __future__ import annotations

import argparse
import os
import sys


def make_cluster(credentials, *, queue: str | None = None, account: str | None = None, cores: int = 8,
                 memory: str = "64GB", gpus: int = 1, walltime: str = "24:00:00", python: str = sys.executable,
                 project_root: str | None = None, dashboard_address: str = "127.0.0.1:8787"):
    """A ``SLURMCluster`` whose jobs each run one Dask worker with ``cores`` CPU threads for torch and ``gpus``
    GPUs declared as the Dask resource ``GPU`` (the study's GPU tasks ask for ``GPU=1``). Scheduler and workers
    speak ``tls://`` with the run's ``credentials`` (:class:`helpers.compute.security.RunCredentials`: the job
    script names their files); the dashboard listens on this node's loopback. No job is submitted until the
    cluster is scaled. Its scheduler (in this process) queues grid tasks until a worker is free, as the local
    cluster's does (``helpers.compute.cluster.SCHEDULER_CONFIG``)."""
    import dask
    from dask_jobqueue import SLURMCluster

    from helpers.compute.cluster import SCHEDULER_CONFIG

    root = os.path.abspath(project_root or os.getcwd())
    with dask.config.set(SCHEDULER_CONFIG):
        return _slurm_cluster(SLURMCluster, root, queue, account, cores, memory, gpus, walltime, python,
                              dashboard_address, credentials)


def _slurm_cluster(SLURMCluster, root, queue, account, cores, memory, gpus, walltime, python, dashboard_address,
                   credentials):
    return SLURMCluster(
        queue=queue,
        account=account,
        cores=1,  # one Dask thread: a worker runs one task at a time ...
        job_cpu=cores,  # ... on all the job's cores (Slurm --cpus-per-task), as torch threads
        processes=1,
        memory=memory,
        walltime=walltime,
        python=python,
        job_extra_directives=[f"--gres=gpu:{gpus}"] if gpus else [],
        worker_extra_args=["--resources", f"GPU={gpus}"] if gpus else [],
        job_script_prologue=[
            f"cd {root}",
            "export OMP_WAIT_POLICY=PASSIVE",  # idle OpenMP threads sleep instead of spinning
            f"export OMP_NUM_THREADS={cores}",
            f"export HONEST_TORCH_THREADS={cores}",  # torch threads of each task (helpers.compute.runtime.task_threads)
            f"export HONEST_PROJECT_ROOT={root}",
            "export TQDM_DISABLE=1",
        ],
        scheduler_options={"dashboard_address": dashboard_address},
        protocol="tls://",
        security=credentials.worker_security(),  # file paths: the job script carries no credential
        shared_temp_directory=str(credentials.folder),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queue", help="Slurm partition with GPUs")
    parser.add_argument("--account", help="Slurm account to charge")
    parser.add_argument("--jobs", type=int, default=4, help="Slurm jobs (= Dask workers = GPUs) to keep running")
    parser.add_argument("--cores", type=int, default=8, help="CPU cores per job (torch threads per task)")
    parser.add_argument("--memory", default="64GB", help="memory per job")
    parser.add_argument("--walltime", default="24:00:00", help="wall time per job")
    parser.add_argument("--python", default=sys.executable, help="the environment's Python on the compute nodes")
    parser.add_argument("--profile", default="paper", help="study profile to run")
    parser.add_argument("--workspace", default=".", help="shared workspace (relative to the project root)")
    parser.add_argument("--dry-run", action="store_true", help="print the job script and submit nothing")
    parser.add_argument("--credentials-dir", default=None,
                        help="shared folder below which the run's credentials folder (mode 0700) is made "
                             "(default: <workspace>/.credentials)")
    args = parser.parse_args(argv)

    from helpers.base.paths import Workspace
    from helpers.compute.security import run_credentials
    from helpers.runner import errors, running

    base = args.credentials_dir or Workspace.at(args.workspace).root / ".credentials"
    with run_credentials(base) as credentials:
        cluster = make_cluster(credentials, queue=args.queue, account=args.account, cores=args.cores,
                               memory=args.memory, walltime=args.walltime, python=args.python)
        try:
            print(cluster.job_script())
            print(f"# scheduler {cluster.scheduler_address}; dashboard on this node's loopback: "
                  f"ssh -L 8787:127.0.0.1:8787 <this node>, then http://127.0.0.1:8787", flush=True)
            if args.dry_run:
                return 0
            cluster.scale(jobs=args.jobs)
            running.run(args.profile, workspace=args.workspace, scheduler=cluster.scheduler_address,
                        security=str(credentials.security_file))
        except errors.StudyError as err:
            print(f"study: error: {err}", file=sys.stderr)
            return 1
        finally:
            cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
