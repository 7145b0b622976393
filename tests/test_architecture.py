"""The package's architecture, enforced: the folders are the layers, imports go one way, through public names,
without side effects.

A module's layer is its folder under ``src/helpers`` (``metrics/lesions/labels.py`` belongs to ``metrics``;
the two studies are folders of their own, ``studies/failure_lab`` and ``studies/small_data``). The order of the
folders is written once, in CONTRIBUTING.md's tree (section "Architecture"); these tests read it from there, so the
tree, the code and the page cannot disagree:

- every folder of the package is in the tree and every folder in the tree exists;
- a module imports only modules of its own folder or of folders above it in the tree (no upward arrow); drawn at
  folder level the graph is acyclic, whatever the tree says;
- the graph of all package imports (module level and inside functions alike) is acyclic, and package modules are
  imported at the top of a module, never inside a function; no module uses another module's ``_private`` names;
- every module has its paragraph in CONTRIBUTING.md and none is over 600 lines; every public module declares
  ``__all__`` (naming only what it defines or re-exports), and a package's ``__init__`` holds its docstring and
  re-exports only;
- importing the package, or any module below the learning layer, sets no global state: no warnings filter, no
  matplotlib setting or import, no module-level call; the one stated exception is ``compute.runtime``, which sets
  ``OMP_WAIT_POLICY`` when unset, because it must precede torch's first import.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "helpers"
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
MAX_LINES = 600
# Top-level modules: the package docstring and the command line's entry points (python -m helpers[.study]).
ENTRY_POINTS = {"helpers", "helpers.__main__", "helpers.study"}
# Module-level statements allowed to change process state, each with its reason (see the module's docstring).
STATE_EXCEPTIONS = {"helpers.compute.runtime": "OMP_WAIT_POLICY must be set before torch is first imported"}


def _dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    return {_dotted(p): (p, ast.parse(p.read_text(encoding="utf-8"), filename=str(p)))
            for p in sorted(PACKAGE.rglob("*.py"))}


def folder_of(module: str) -> str | None:
    """The layer folder of a dotted module name: ``helpers.metrics.lesions.labels`` -> ``metrics``,
    ``helpers.studies.small_data.cv`` -> ``studies/small_data``; None for the top-level entry points."""
    parts = module.split(".")[1:]
    if module in ENTRY_POINTS or not parts:
        return None
    if parts[0] == "studies" and len(parts) > 1:
        return "studies/" + parts[1]
    return parts[0]


def _package_imports(module: str, tree: ast.Module, modules):
    """Yield (imported module, imported names, node, at module level) for every import of a package module."""
    top = set(map(id, tree.body))
    package = module if modules[module][0].name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("helpers.") or alias.name == "helpers":
                    yield alias.name, [], node, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if not (name == "helpers" or name.startswith("helpers.")):
                continue
            submodules = [f"{name}.{a.name}" for a in node.names if f"{name}.{a.name}" in modules]
            if submodules:  # from helpers.data import layouts: an import of the submodule
                for target in submodules:
                    yield target, [], node, id(node) in top
                names = [a.name for a in node.names if f"{name}.{a.name}" not in modules]
                if names:
                    yield name, names, node, id(node) in top
            else:
                yield name, [a.name for a in node.names], node, id(node) in top


def _graph(modules=None) -> dict[str, set[str]]:
    modules = modules or _modules()
    return {name: {target for target, *_ in _package_imports(name, tree, modules) if target in modules}
            for name, (_, tree) in modules.items()}


def contributing_folders() -> list[str]:
    """The layer folders in the order of CONTRIBUTING.md's tree: in the first code block after the heading
    "## Architecture", the lines ``  name/`` (two spaces) and, under ``  studies/``, ``    name/`` (four)."""
    section = CONTRIBUTING.read_text(encoding="utf-8").split("\n## Architecture", 1)[1]
    block = section.split("```", 2)[1]
    folders, parent = [], None
    for line in block.splitlines():
        if match := re.match(r"^  (\w+)/(\s|$)", line):
            parent = match.group(1)
            if parent != "studies":
                folders.append(parent)
        elif (match := re.match(r"^    (\w+)/(\s|$)", line)) and parent == "studies":
            folders.append("studies/" + match.group(1))
    return folders


def _package_folders() -> set[str]:
    return {folder for name in _modules() if (folder := folder_of(name))}


# ------------------------------------------------------------------------------------------------ the layers


def test_folder_of_reads_the_path():
    assert folder_of("helpers.metrics.lesions.labels") == "metrics"
    assert folder_of("helpers.studies.small_data.cv") == "studies/small_data"
    assert folder_of("helpers.studies") is None or folder_of("helpers.studies") == "studies"
    assert folder_of("helpers.study") is None and folder_of("helpers") is None


def test_the_tree_in_contributing_lists_every_folder_once():
    listed = contributing_folders()
    assert len(listed) == len(set(listed)), f"listed twice: {listed}"
    actual = _package_folders() - {"studies"}
    assert set(listed) == actual, (f"in the package, not in CONTRIBUTING.md's tree: {sorted(actual - set(listed))}; "
                                   f"in the tree, not in the package: {sorted(set(listed) - actual)}")
    assert len(listed) >= 6


def test_imports_go_down_the_tree():
    order = {folder: i for i, folder in enumerate(contributing_folders())}
    upward = []
    for source, targets in _graph().items():
        for target in sorted(targets):
            a, b = folder_of(source), folder_of(target)
            if a is None or b is None or a == b or "studies" in (a, b):
                continue
            if order[b] > order[a]:
                upward.append(f"{source} ({a}) imports {target} ({b})")
    assert not upward, "imports up the tree:\n" + "\n".join(upward)


def test_only_the_entry_points_import_the_runner():
    importers = sorted(source for source, targets in _graph().items() for target in targets
                       if folder_of(target) == "runner" and folder_of(source) != "runner")
    assert set(importers) <= {"helpers.__main__", "helpers.study"}, importers


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


def test_folder_graph_is_acyclic():
    folders: dict[str, set[str]] = {}
    for source, targets in _graph().items():
        if (a := folder_of(source)) is None:
            continue
        folders.setdefault(a, set()).update(b for t in targets if (b := folder_of(t)) not in (None, a))
    cycle = _cycle(folders)
    assert cycle is None, "folder cycle: " + " -> ".join(cycle or [])


def test_import_graph_is_acyclic():
    graph = _graph()
    # a package's __init__ re-exporting its modules is not a cycle with a module importing the package's name
    cycle = _cycle({k: {t for t in v if not (k.startswith(t + ".") and not t.endswith("__init__"))}
                    for k, v in graph.items()})
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_graph_sees_submodule_imports():
    # guard against a graph that silently misses the common import forms
    graph = _graph()
    assert "helpers.base.io" in graph["helpers.data.splits"]
    assert "helpers.metrics" in graph["helpers.evaluation.tables"]


def test_package_modules_are_imported_at_module_level():
    modules = _modules()
    inside = [f"{name}:{node.lineno}: {ast.unparse(node)}" for name, (_, tree) in modules.items()
              for _, _, node, at_top in _package_imports(name, tree, modules) if not at_top]
    assert not inside, "package imports inside functions (import them at the top):\n" + "\n".join(inside)


def test_no_module_uses_another_modules_private_names():
    modules = _modules()
    found = []
    for name, (_, tree) in modules.items():
        aliases = {}
        for target, names, node, _ in _package_imports(name, tree, modules):
            found += [f"{name}:{node.lineno}: imports {target}.{n}" for n in names
                      if n.startswith("_") and not n.startswith("__")]
            if not names:
                for alias in node.names:
                    if target.endswith("." + alias.name) or target == alias.name:
                        aliases[alias.asname or alias.name.split(".")[-1]] = target
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                found.append(f"{name}:{node.lineno}: uses {aliases[node.value.id]}.{node.attr}")
    assert not found, "\n".join(found)


# ------------------------------------------------------------------------------------------------ the modules


def test_no_module_is_over_the_line_limit():
    long = {name: n for name, (path, _) in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them along their concerns): {long}"


def test_every_module_has_its_contributing_paragraph():
    text = CONTRIBUTING.read_text(encoding="utf-8")
    documented = set(re.findall(r"\*\*`([\w./]+)`\*\*", text))
    missing = [name for name, (path, _) in _modules().items()
               if name not in ENTRY_POINTS and path.name != "__init__.py"
               and name.removeprefix("helpers.") not in documented]
    assert not missing, ("modules without a paragraph in CONTRIBUTING.md (a line starting "
                         f"- **`folder.module`**:): {missing}")
    stale = sorted(d for d in documented if "." in d and f"helpers.{d}" not in _modules()
                   and re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", d))
    assert not stale, f"CONTRIBUTING.md describes modules that do not exist: {stale}"


def _defined(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _all_of(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return list(ast.literal_eval(node.value)) if node.value is not None else []
    return None


def test_every_public_module_declares_all():
    missing, unknown = [], []
    for name, (path, tree) in _modules().items():
        if name in ENTRY_POINTS - {"helpers.study"} or any(p.startswith("_") for p in name.split(".")[1:]):
            continue
        names = _all_of(tree)
        if names is None:
            if path.name == "__init__.py" and not any(isinstance(n, ast.ImportFrom) for n in tree.body):
                continue  # a docstring-only package declares nothing
            missing.append(name)
            continue
        unknown += [f"{name}.{n}" for n in names if n not in _defined(tree)]
    assert not missing, f"public modules without __all__: {missing}"
    assert not unknown, f"__all__ names what the module neither defines nor imports: {unknown}"


def test_a_package_init_holds_its_docstring_and_re_exports_only():
    offenders = []
    for name, (path, tree) in _modules().items():
        if path.name != "__init__.py":
            continue
        body = tree.body
        if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)):
            offenders.append(f"{name}: no docstring")
        for node in body[1:]:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(name + "."):
                continue
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] in (["__all__"],
                                                                                                     ["__version__"]):
                continue
            offenders.append(f"{name}:{node.lineno}: {ast.unparse(node)[:80]}")
        names = _all_of(tree)
        if names is not None:
            imported = {a.asname or a.name for n in body if isinstance(n, ast.ImportFrom) for a in n.names}
            if set(names) != imported:
                offenders.append(f"{name}: __all__ differs from what it re-exports: {set(names) ^ imported}")
    assert not offenders, "\n".join(offenders)


# ------------------------------------------------------------------------------------------------ side effects


def test_no_module_changes_process_state_when_imported():
    """No call at module level (a bare expression statement), no assignment into os.environ, sys or a module's
    attribute: importing only defines names."""
    found = []
    for name, (_, tree) in _modules().items():
        for node in tree.body:
            if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test):
                continue  # the entry point's `if __name__ == "__main__":`
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                if name not in STATE_EXCEPTIONS:
                    found.append(f"{name}:{node.lineno}: {ast.unparse(node)[:80]}")
            elif isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, (ast.Attribute, ast.Subscript)) for t in targets):
                    found.append(f"{name}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert not found, "module-level statements that change state on import:\n" + "\n".join(found)


def _light_modules() -> list[str]:
    heavy = {"learning", "studies/small_data", "studies/failure_lab", "runner", "compute"}
    return sorted(name for name in _modules()
                  if folder_of(name) not in heavy and name not in ENTRY_POINTS - {"helpers"})


def test_importing_the_package_sets_no_global_state():
    # every module below the learning layer (those that load no torch, MONAI or Dask) at once, after the
    # third-party libraries they use (numpy and scipy add warnings filters of their own when imported); below the
    # report layer, not even matplotlib is imported
    light = _light_modules()
    below_report = [m for m in light if folder_of(m) != "report"]
    third_party = "numpy, scipy.stats, scipy.ndimage, scipy.spatial, pandas, skimage.measure, nibabel, yaml, tqdm"
    code = (f"import {third_party}; import sys, warnings, importlib; before = list(warnings.filters); "
            f"[importlib.import_module(m) for m in {below_report!r}]; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'; "
            f"[importlib.import_module(m) for m in {light!r}]; "
            "assert warnings.filters == before, [f for f in warnings.filters if f not in before]")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "helpers" in light and "helpers.metrics" in below_report and "helpers.report.figures" in light


def test_the_side_effect_test_fails_on_a_warnings_filter(tmp_path):
    # the check above can fail: a module that sets a filter on import is caught
    (tmp_path / "noisy.py").write_text("import warnings\nwarnings.filterwarnings('ignore', message='x')\n")
    code = ("import sys, warnings; before = list(warnings.filters); sys.path.insert(0, %r); import noisy; "
            "assert warnings.filters == before" % str(tmp_path))
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode != 0


def test_importing_plots_leaves_matplotlib_settings_alone():
    code = ("import matplotlib; backend = matplotlib.get_backend(); rc = dict(matplotlib.rcParams); "
            "import helpers.base.plots; "
            "assert matplotlib.get_backend() == backend, 'backend switched'; "
            "changed = [k for k, v in matplotlib.rcParams.items() if rc.get(k) != v]; "
            "assert not changed, changed")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
