"""nbval stays a regression check of the definitions: a changed metric definition makes it fail.

The committed notebook of the metric definitions is re-executed by nbval, exactly as ``make nbval`` does, against a
copy of the package in which HD95's percentile is 90 instead of 95 (a plausible slip: both are in use for other
metrics). nbval must fail, only on cells whose stored outputs show an HD95 (the copy differs in nothing else), and
among them on the outlier example, where the percentile decides the value: of 17 directed distances, 16 are 0 and
one is 9 mm, so the linear 95th percentile is 0.2 * 9 = 1.8 mm and the 90th is 0.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from helpers.base.paths import project_root

pytestmark = pytest.mark.slow

NOTEBOOK = "notebooks/00_metric_definitions.ipynb"


def _copy_project(dest):
    root = project_root()
    for name in ("_config.yml", "profiles", "tests/nbval_sanitize.cfg", NOTEBOOK):
        source = root / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
    shutil.copytree(root / "src" / "helpers", dest / "src" / "helpers",
                    ignore=shutil.ignore_patterns("__pycache__"))


def _cells_showing(path, word: str) -> set[int]:
    nb = nbformat.read(path, as_version=4)
    shown = set()
    for index, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        # text, and markdown (the methods paragraph states the HD95 definition in words)
        text = "".join(str(o.get("data", {}).get("text/plain", "")) + str(o.get("data", {}).get("text/markdown", ""))
                       + str(o.get("text", "")) for o in cell.outputs)
        if word.lower() in text.lower():
            shown.add(index)
    return shown


def _outlier_cell(path) -> int:
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    return next(i for i, c in enumerate(code) if c.source.startswith("pd.Series(outlier.metric_values())"))


def test_changing_the_hd95_percentile_fails_nbval_on_the_cells_that_show_hd95(tmp_path):
    _copy_project(tmp_path)
    metrics = tmp_path / "src" / "helpers" / "metrics" / "distances.py"
    source = metrics.read_text()
    assert "DEFAULT_PERCENTILE = 95.0" in source
    metrics.write_text(source.replace("DEFAULT_PERCENTILE = 95.0", "DEFAULT_PERCENTILE = 90.0"))
    env = {**os.environ, "HONEST_PROJECT_ROOT": str(tmp_path), "PYTHONPATH": str(tmp_path / "src"),
           "TQDM_DISABLE": "1", "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
         "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", "-o", "testpaths=", "-o", "addopts=",
         "-W", "ignore::DeprecationWarning", "-rf", NOTEBOOK],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    failed = {int(n) for n in re.findall(rf"FAILED {re.escape(NOTEBOOK)}::Cell (\d+)", output)}
    assert failed and failed <= _cells_showing(tmp_path / NOTEBOOK, "hd95"), (failed, output[-3000:])
    assert _outlier_cell(tmp_path / NOTEBOOK) in failed
    assert re.search(r"(\d+) passed", output), output[-2000:]
