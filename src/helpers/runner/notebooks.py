"""The committed notebooks refreshed: re-executed in place with their default parameters after a run of the ``smoke``
profile, so that nbval has fresh reference outputs."""

from __future__ import annotations

import os
import sys

from helpers.base.paths import Workspace, relative
from helpers.runner.errors import StudyError
from helpers.runner.execution import run_notebook, strip_papermill_metadata
from helpers.runner.interrupts import signals
from helpers.runner.lock import workspace_lock
from helpers.runner.plan import notebooks_dir
from helpers.runner.running import run
from helpers.runner.sections import SECTIONS

__all__ = ["refresh_notebooks"]


def refresh_notebooks(*, profile: str = "smoke", workspace: str = "build/nbval", out=sys.stdout) -> None:
    """Re-execute the committed source notebooks in place with their default parameters (after a run of the
    ``smoke`` profile in their default workspace), so that nbval has fresh reference outputs."""
    run(profile, workspace=workspace, book=False, out=out)
    ws = Workspace.at(workspace)
    with workspace_lock(ws, "helpers.study refresh-notebooks", out=out), signals():
        for section in SECTIONS:
            path = notebooks_dir() / section.notebook
            if not path.exists():
                continue
            print(f"refresh: {relative(path)}", file=out, flush=True)
            tmp = path.with_name(f".{path.stem}.refresh.ipynb")
            log = path.with_name(f".{path.stem}.refresh.log")
            outcome = run_notebook(path, tmp, {}, log)
            if not outcome.get("ok"):
                raise StudyError(f"{relative(path)}: {outcome.get('ename')}: {outcome.get('evalue')} "
                                 f"(the executed copy: {relative(tmp)})")
            log.unlink(missing_ok=True)
            strip_papermill_metadata(tmp)
            os.replace(tmp, path)
