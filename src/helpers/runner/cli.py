"""The study runner: the sections of the study, profiles, up-to-date checks, running the out-of-date section
notebooks with papermill (independent sections side by side, their grids on the run's Dask cluster), the book, and
the command line. Run ``python -m helpers.study --help``. The notebooks' own context is
:mod:`helpers.runner.context`."""

# This module is the command line; the docstring above is its ``--help`` description. The runner's parts are the
# modules beside it: sections, profiles, plan, execution, scheduling, interrupts, lock, book, running, evaluate,
# notebooks.

from __future__ import annotations

import argparse
import sys

from helpers.base.paths import Workspace
from helpers.runner.book import build_book
from helpers.runner.errors import Interrupted, StudyError
from helpers.runner.evaluate import add_evaluate_arguments, evaluate_command
from helpers.runner.execution import execute_in_child
from helpers.runner.lock import workspace_lock
from helpers.runner.notebooks import refresh_notebooks
from helpers.runner.running import run

__all__ = ["add_cluster_arguments", "build_parser", "main"]


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """``--scheduler``, ``--security`` and ``--workers``: where the grid's tasks run and with which credentials
    (see ``helpers.compute.cluster`` and ``helpers.compute.security``)."""
    parser.add_argument(
        "--scheduler", default="local", metavar="ADDRESS|local|none",
        help="Dask scheduler for the grid's tasks: 'local' (default) starts a LocalCluster on this machine (every "
             "socket on 127.0.0.1), 'none' runs everything in-process one task at a time, an address "
             "(tls://host:8786, with --security) uses a running scheduler, e.g. one started by dask-jobqueue "
             "(examples/slurm_paper.py); plain tcp:// to another host is allowed with a warning")
    parser.add_argument(
        "--security", default=None, metavar="PATH",
        help="security file with the credentials of a tls:// scheduler: YAML with distributed.comm.tls.ca-file, "
             ".client.cert and .client.key (see helpers.compute.security); the Dask configuration's "
             "distributed.comm.tls.* settings are used when it is not given")
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
                force=args.force, book=not args.no_book, scheduler=args.scheduler, workers=args.workers,
                security=args.security)
        elif args.command == "book":
            ws = Workspace.at(args.workspace)
            with workspace_lock(ws, "helpers.study book"):
                build_book(ws)
        elif args.command == "evaluate":
            evaluate_command(args)
        elif args.command == "execute-notebook":
            return execute_in_child(args.spec)
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
