"""Running the study from start to end: a profile's plan under the workspace lock and the runner's signal handling,
its out-of-date sections executed, then the table of contents, the run's claims table (``results/claims.csv``)
and the book."""

from __future__ import annotations

import sys
from pathlib import Path

from helpers.analysis.claims import assemble as assemble_claims
from helpers.base.paths import Workspace
from helpers.runner.book import build_book, write_toc
from helpers.runner.interrupts import signals
from helpers.runner.lock import workspace_lock
from helpers.runner.plan import Task, assign_keys, plan
from helpers.runner.profiles import load_profile
from helpers.runner.scheduling import RunReport, execute_tasks

__all__ = ["run", "run_profile", "run_locked"]


def run(profile: str, *, workspace: str = ".", datasets=None, sections=None, force: bool = False,
        book: bool = True, scheduler: str | None = None, workers: int | None = None, security: str | None = None,
        out=sys.stdout) -> RunReport:
    """Run the study: every out-of-date section notebook of the profile, independent sections concurrently
    (one dataset's chain beside another's), then the book.

    ``scheduler``: None/``"none"`` (in-process, one section and one task at a time; the command line's default
    is ``"local"``), ``"local"`` (a Dask ``LocalCluster`` sized to this machine, ``workers`` worker processes) or
    the address of a running Dask scheduler; the address reaches every notebook that declares a ``scheduler``
    parameter (see ``helpers.compute.cluster``). ``security``: the path of a security file with the credentials
    of a ``tls://`` scheduler (see ``helpers.compute.security``).

    The workspace is locked while the run lasts; Ctrl-C (SIGINT) or SIGTERM stops the notebooks in progress and
    raises :class:`Interrupted` naming them, with nothing stamped that did not finish."""
    prof, prof_path = load_profile(profile)
    return run_profile(prof, prof_path, workspace=workspace, datasets=datasets, sections=sections, force=force,
                       book=book, scheduler=scheduler, workers=workers, security=security, out=out)


def run_profile(prof: dict, prof_path: Path, *, workspace: str = ".", datasets=None, sections=None,
                force: bool = False, book: bool = True, scheduler: str | None = None, workers: int | None = None,
                security: str | None = None, out=sys.stdout) -> RunReport:
    """:func:`run` for a profile already loaded (:func:`load_profile`) or built by a command (``evaluate``)."""
    ws = Workspace.at(workspace)
    tasks = plan(prof, prof_path, workspace, datasets=datasets, sections=sections)
    with workspace_lock(ws, f"helpers.study run --profile {prof['profile']}", out=out), signals():
        return run_locked(tasks, ws, prof, prof_path, force=force, book=book, scheduler=scheduler,
                          workers=workers, security=security, out=out)


def run_locked(tasks: list[Task], ws: Workspace, prof: dict, prof_path: Path, *, force: bool, book: bool,
               scheduler: str | None, workers: int | None, out, security: str | None = None) -> RunReport:
    """Run planned tasks in a workspace whose lock the caller holds: their keys, the out-of-date ones, the table of
    contents and (with ``book``) the book."""
    assign_keys(tasks, ws, prof["datasets"])
    report = execute_tasks(tasks, ws, prof, prof_path, force=force, scheduler=scheduler, workers=workers,
                           security=security, out=out)
    assemble_claims(ws)  # results/claims.csv: every claim of the run (helpers.runner.sections.RUNNER_WRITES)
    write_toc(prof, ws)  # after the claims: the intro's "What this run found" counts them
    print(f"study: {len(report.executed)} executed, {len(report.skipped)} up to date, "
          f"{report.seconds:.1f} s", file=out, flush=True)
    if book:
        build_book(ws, out=out)
    return report
