"""The package's architecture, enforced: imports go one way, through public names, without side effects.

The layers (CONTRIBUTING.md describes each module):

0. foundation: no study concept; any layer may use it.
1. core: metrics, lesions, datasets and everything that turns data into predictions and tidy per-case/per-lesion
   tables.
2. statistics: ranking, bootstrap, inference, the analysis tables and their figures, the precondition check.
3. studies: the failure-mode lab and the small-data study, built on the core and the statistics.
4. runner: the notebook context and the command line.

A module may import modules of its own layer or below; the graph of all package imports (at module level and inside
functions alike) must be acyclic; package modules are imported at the top of a module, never inside a function;
no module uses another module's ``_private`` names.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "helpers"

LAYERS: dict[str, int] = {
    **dict.fromkeys(["__init__", "paths", "io", "progress", "provenance", "checks", "plots", "runtime", "cluster"], 0),
    **dict.fromkeys(["metrics", "lesions", "layouts", "datasets", "synthetic", "preprocessing", "data", "splits", "models",
                     "training", "predictions", "evaluation", "perturb", "constructed"], 1),
    **dict.fromkeys(["ranking", "inference", "bootstrap", "analysis", "sensitivity", "figures", "preconditions"], 2),
    **dict.fromkeys(["failure_lab", "smalldata", "smallmodels", "smalltrain", "smallhpo", "smallcv",
                     "smallexplain", "smallreport"], 3),
    **dict.fromkeys(["context", "study"], 4),
}
LAYER_NAMES = ("foundation", "core", "statistics", "studies", "runner")


def _modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for path in sorted(PACKAGE.glob("*.py"))}


def _package_imports(name: str, tree: ast.Module):
    """Yield (imported module, imported names, node, at module level) for every import of a package module."""
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("helpers."):
                    yield alias.name.split(".")[1], [], node, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and not (module == "helpers" or module.startswith("helpers.")):
                continue
            if node.level > 1:
                raise AssertionError(f"{name}: relative import beyond the package: {ast.unparse(node)}")
            parts = module.split(".")
            if node.level == 0:
                parts = parts[1:]
            if parts and parts[0]:
                yield parts[0], [alias.name for alias in node.names], node, id(node) in top
            else:  # from helpers import x, y / from . import x, y
                for alias in node.names:
                    yield alias.name, [], node, id(node) in top


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {target for target, *_ in _package_imports(name, tree) if target in modules}
            for name, tree in modules.items()}


def test_every_module_has_a_layer():
    unknown = sorted(set(_modules()) - set(LAYERS))
    assert not unknown, f"modules without a layer (add them to LAYERS and to CONTRIBUTING.md): {unknown}"
    gone = sorted(set(LAYERS) - set(_modules()))
    assert not gone, f"LAYERS names modules that do not exist: {gone}"


def test_imports_go_down_the_layers():
    upward = [f"{source} ({LAYER_NAMES[LAYERS[source]]}) imports {target} ({LAYER_NAMES[LAYERS[target]]})"
              for source, targets in _graph().items() for target in sorted(targets)
              if target in LAYERS and source in LAYERS and LAYERS[target] > LAYERS[source]]
    assert not upward, "\n".join(upward)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_import_graph_is_acyclic():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_package_modules_are_imported_at_module_level():
    inside = [f"{name}.py:{node.lineno}: {ast.unparse(node)}" for name, tree in _modules().items()
              for _, _, node, at_top in _package_imports(name, tree) if not at_top]
    assert not inside, "package imports inside functions (import them at the top):\n" + "\n".join(inside)


def test_no_module_uses_another_modules_private_names():
    modules = _modules()
    found = []
    for name, tree in modules.items():
        aliases = {}
        for target, names, node, _ in _package_imports(name, tree):
            found += [f"{name}.py:{node.lineno}: imports {target}.{n}" for n in names
                      if n.startswith("_") and not n.startswith("__")]
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[-1]
                module = target if names else alias.name.split(".")[-1]
                if module in modules and (not names or alias.name == module):
                    aliases[bound] = module
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                found.append(f"{name}.py:{node.lineno}: uses {aliases[node.value.id]}.{node.attr}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("module", ["helpers.metrics", "helpers.lesions", "helpers.evaluation", "helpers.ranking"])
def test_importing_the_core_has_no_side_effects(module):
    code = (f"import sys, {module}; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_importing_plots_leaves_matplotlib_settings_alone():
    code = ("import matplotlib; backend = matplotlib.get_backend(); rc = dict(matplotlib.rcParams); "
            "import helpers.plots; "
            "assert matplotlib.get_backend() == backend, 'backend switched'; "
            "changed = [k for k, v in matplotlib.rcParams.items() if rc.get(k) != v]; "
            "assert not changed, changed")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
