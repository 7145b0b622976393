"""The committed notebooks and the profiles agree: every section has its notebook, every notebook the runner's
parameters with the smoke/nbval defaults, no notebook defines functions, and every profile validates."""

from __future__ import annotations

import re

import nbformat
import papermill
import pytest

from helpers.runner import plan, profiles, sections
from helpers.base.paths import project_root

NOTEBOOKS = sorted((project_root() / "notebooks").glob("*.ipynb"))


def test_every_section_has_its_notebook_and_nothing_else_is_there():
    assert sorted(p.name for p in NOTEBOOKS) == sorted(s.notebook for s in sections.SECTIONS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_parameters_have_the_nbval_defaults(path):
    declared = papermill.inspect_notebook(str(path))
    section = next(s for s in sections.SECTIONS if s.notebook == path.name)
    assert set(sections.RUNNER_PARAMETERS) <= set(declared)
    assert declared["profile"]["default"] == '"smoke"'
    assert declared["workspace"]["default"] == '"build/nbval"'
    expected = '"wmh"' if section.scope == "dataset" else f'"{section.dataset}"'
    assert declared["dataset"]["default"] == expected
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_stay_thin(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not re.search(r"^\s*(def|class) ", cell.source, re.M), f"{path.name} defines a function or class"
            assert not re.search(r"/(work|tmp|root|home)/", cell.source), "absolute path of a machine"


#: How a notebook would save around the context (every file a notebook writes goes through ctx.save/ctx.show).
DIRECT_SAVES = re.compile(r"write_csv|write_json|save_figure|savefig|to_csv|ctx\.(results|figures) /|(?<![\w.])show\(")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_save_through_the_context(path):
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    direct = [line for source in code for line in source.splitlines()
              if DIRECT_SAVES.search(line) and "read_" not in line]
    assert direct == [], f"{path.name} saves around ctx.save/ctx.show"
    assert any("ctx.save(" in source or "ctx.show(" in source for source in code), f"{path.name} saves nothing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_plumbing_cells_are_hidden_and_the_context_comes_first(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    context_cell = code[1]
    assert "ctx = context(" in context_cell.source
    assert context_cell.source.rstrip().endswith("ctx"), "the context cell shows the provenance banner"
    assert "hide-input" in context_cell.metadata.get("tags", [])
    for cell in code[1:]:
        plumbing = all(line.startswith(("import ", "from ")) or not line.strip() for line in cell.source.splitlines())
        if plumbing:
            assert "hide-input" in cell.metadata.get("tags", []), f"{path.name}: import-only cell {cell.id} shown"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_with_a_scheduler_hands_it_to_its_grids_not_to_the_context(path):
    # one vocabulary: the notebook's `scheduler` parameter goes to the grids it starts; the context has none
    declared = papermill.inspect_notebook(str(path))
    nb = nbformat.read(path, as_version=4)
    context_cell = next(c for c in nb.cells if "ctx = context(" in c.source)
    assert "scheduler" not in context_cell.source
    grid_cells = [c for c in nb.cells[1:] if c.cell_type == "code" and "scheduler=scheduler" in c.source]
    assert bool(grid_cells) == ("scheduler" in declared), "a declared scheduler must reach a grid, and only then"


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_profiles_validate_against_the_notebooks(profile):
    prof, path = profiles.load_profile(profile)
    tasks = plan.plan(prof, path, ".")
    names = [(t.dataset, t.section.name) for t in tasks]
    # every dataset runs every per-dataset section, then the chapters across datasets
    for dataset in prof["datasets"]:
        assert [s for d, s in names if d == dataset] == [s.name for s in sections.DATASET_SECTIONS]
    assert names[-1] == ("small_data", "small_data")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_names_its_section_and_saves_only_what_the_section_declares(path):
    section = next(s for s in sections.SECTIONS if s.notebook == path.name)
    nb = nbformat.read(path, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert f'ctx = context(section="{section.name}",' in source
    saved = re.findall(r'ctx\.save\([^\n]*?,\s*"([^"]+)"\)', source)
    shown = re.findall(r'ctx\.show\([^\n]*?,\s*"([^"]+)"\)', source)
    assert saved or shown or section.writes, "the regular expressions found nothing to check"
    assert set(saved) <= set(section.results), f"{path.name} saves {sorted(saved)}"
    # a declared result the notebook saves under a computed name (a loop) still appears in its source
    assert all(f'"{name}"' in source for name in section.results), f"{path.name} never names a declared result"
    assert set(shown) == set(section.figures), f"{path.name} shows {sorted(shown)}"
    # another chapter's file is asked for by section and name, never as a path under ctx.results
    assert not re.search(r'ctx\.results / "', source.replace('ctx.results / "preprocessing.json"', ""))
