"""The context of a section notebook: which scope (a dataset, or the chapters across datasets), profile, seed and
workspace it runs under, the provenance banner shown at the top of its page, and the one way a notebook saves what
it shows.

Conventions
-----------
- Saving: a notebook saves a table with ``ctx.save(table, "name.csv")`` (into ``results/<dataset>/``) and a figure
  with ``ctx.show(fig, "name.png")`` (into ``figures/<dataset>/``, then displayed); the chapters spanning datasets
  (dataset ``"study"``) write into ``results/`` and ``figures/`` themselves. Each name must be declared by the
  notebook's section (:mod:`helpers.runner.sections`), and a file of another chapter is read through
  ``ctx.input(section, name)``, which checks that the other section declares it. Every write is atomic
  (:mod:`helpers.base.io`), so an interrupted notebook never leaves half a file behind. Names are plain file names,
  never paths: where a file goes is the context's business, not the cell's.
- Scope and names: the notebook's ``dataset`` parameter is resolved once: ``ctx.scope`` (the parameter),
  ``ctx.dataset`` (the registry entry, None for a scope that is not a dataset) and ``ctx.title`` (the display
  name, ``"LiTS"``; never the key upper-cased).
- Scheduler: not the context's business. A notebook that starts a grid declares its own ``scheduler`` parameter
  (the runner passes the address of its cluster) and hands it to the grid (:mod:`helpers.compute.cluster`).
- Saved files: ``ctx.save`` returns the written file as a :class:`SavedFile`, a path that displays nothing in a
  notebook. A cell ending in a save therefore shows no path, whatever the kernel (a trailing ``;`` is not enough:
  IPython reads it from the kernel's history, which nbval's kernel does not keep).
- Representation: showing the context (last line of a cell) prints the provenance banner; its ``repr`` holds no
  absolute path, so committed notebook outputs are the same in every clone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from helpers.base import provenance
from helpers.evaluation.constructed import predictions_source
from helpers.data.datasets import DATASETS, Dataset, display_name, is_dataset, register_workspace
from helpers.data.datasets import get as dataset_entry
from helpers.base.io import read_json, write_csv, write_json
from helpers.base.paths import Workspace, relative
from helpers.base.plots import show as show_figure
from helpers.runner.sections import GLOBAL, SCOPE_TITLES, Section, scope_title
from helpers.runner.sections import section as section_named

__all__ = ["Context", "SavedFile", "context"]


class SavedFile(type(Path())):
    """The path of a file a notebook saved: a plain :class:`pathlib.Path` that displays nothing in a notebook, so
    a cell ending in ``ctx.save(...)`` stores no machine-specific path among its outputs."""

    def _ipython_display_(self) -> None:
        """Display nothing (IPython calls this instead of printing the path)."""


@dataclass(frozen=True, repr=False)
class Context:
    """What a section notebook needs to know about its run: its scope, profile, seed and folders.

    ``scope`` is what the notebook's ``dataset`` parameter says: a registered dataset (``"wmh"``), :data:`GLOBAL`
    for the chapters across datasets, or :data:`SMALL_DATA`. ``dataset`` is the registry entry, resolved once
    (None for a scope that is not a dataset); ``title`` the name a reader sees. Its markdown representation is the
    provenance banner shown at the top of every page."""

    scope: str
    profile: str
    seed: int
    ws: Workspace
    section: Section
    data_source: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def dataset(self) -> Dataset | None:
        """The registry entry of this page's dataset; None for the chapters across datasets and the small-data
        study."""
        return dataset_entry(self.scope) if is_dataset(self.scope) else None

    @property
    def title(self) -> str:
        """The page's scope as a reader sees it (``"LiTS"``, ``"Across datasets"``, ``"Small data"``)."""
        return scope_title(self.scope)

    @property
    def results(self) -> Path:
        return self.ws.results(None if self.scope == GLOBAL else self.scope)

    @property
    def figures(self) -> Path:
        return self.ws.figures(None if self.scope == GLOBAL else self.scope)

    # ---- saving ------------------------------------------------------------------------------------------------

    def save(self, table, name: str) -> SavedFile:
        """Write ``table`` into this page's results folder as ``name`` (atomically) and return the file (a
        :class:`SavedFile`, which a notebook does not display).

        A DataFrame is written as CSV (``name`` ending ``.csv``, no index); a dict or list as JSON (``.json``).
        ``name`` must be one of the files the page's section declares (``Section.results``)."""
        path = self.results / self._declared(name, "results")
        suffix = path.suffix.lower()
        if hasattr(table, "to_csv") and suffix == ".csv":
            return SavedFile(write_csv(table, path))
        if isinstance(table, (dict, list)) and suffix == ".json":
            return SavedFile(write_json(table, path))
        raise TypeError(f"ctx.save: cannot write a {type(table).__name__} as {name!r}; a DataFrame goes to a .csv "
                        f"file, a dict or list to a .json file")

    def show(self, fig, name: str):
        """Save ``fig`` as PNG into this page's figures folder as ``name`` (atomically), close it, and return the
        saved image for display: the page shows exactly the file the study writes, once."""
        if PurePath(_file_name(name, "name")).suffix.lower() != ".png":
            raise ValueError(f"ctx.show: name must end with .png, got {name!r}")
        return show_figure(fig, self.figures / self._declared(name, "figures"))

    def input(self, section: str, name: str, *, dataset: str | None = None) -> Path:
        """The path of ``name``, a file that ``section`` writes (its ``results`` or ``writes``), for ``dataset``
        (default: this page's dataset; a study-scope section's files lie in ``results/``). Checks that the section
        declares the file, so a renamed output fails here, naming both, instead of reading a stale file."""
        owner = section_named(section)
        self.declared_by(section, name)
        if owner.scope != "dataset":
            return self.ws.results(None if owner.dataset == GLOBAL else owner.dataset) / name
        dataset = self.scope if dataset is None else dataset
        if not is_dataset(dataset):
            raise ValueError(f"ctx.input: section {section!r} writes one file per dataset; name the dataset "
                             f"(one of {DATASETS}), got {dataset!r}")
        return self.ws.results(dataset) / name

    @staticmethod
    def declared_by(section: str, name: str) -> str:
        """``name`` when ``section`` writes it (its ``results`` or ``writes``), else an error naming what it
        declares: how a chapter names another chapter's file (for instance to collect it over datasets)."""
        owner = section_named(section)
        if name not in owner.results + owner.writes:
            raise ValueError(f"section {section!r} does not write {name!r}; it declares "
                             f"{list(owner.results + owner.writes)}")
        return name

    def _declared(self, name: str, kind: str) -> str:
        declared = getattr(self.section, kind)
        if _file_name(name, "name") not in declared:
            raise ValueError(f"section {self.section.name!r} does not declare {name!r} among its {kind} "
                             f"{list(declared)}: add it to its Section in helpers.runner.sections")
        return name

    # ---- provenance ----------------------------------------------------------------------------------------------

    @property
    def synthetic(self) -> bool | None:
        """True when any number on the page comes from synthetic or constructed data, False for real data only,
        None when unknown (no data section has run yet)."""
        sources = self.sources
        if not sources:
            return None
        return any(src in ("synthetic", "constructed") for src in sources.values())

    @property
    def source(self) -> str | None:
        """The data source of a dataset's page: "synthetic", a real dataset path, or "constructed"."""
        if self.data_source is not None:
            return self.data_source
        manifest = self.ws.results(self.scope) / "data_manifest.json"
        if self.scope != GLOBAL and manifest.exists():
            return read_json(manifest).get("source")
        return None

    @property
    def sources(self) -> dict[str, str]:
        """Data source per dataset behind this page: the page's own for a dataset, every dataset run in this
        workspace for the cross-dataset chapters (read from each ``data_manifest.json``)."""
        if self.scope != GLOBAL or self.data_source is not None:
            return {} if self.source is None else {self.scope: self.source}
        out = {}
        for manifest in sorted(self.ws.results().glob("*/data_manifest.json")):
            source = read_json(manifest).get("source")
            if source is not None and is_dataset(manifest.parent.name):
                out[manifest.parent.name] = source
        return out

    def banner(self) -> str:
        lines = [
            f"**Provenance** · {self.title} · profile `{self.profile}` · seed {self.seed} · "
            f"workspace `{relative(self.ws.root)}` · commit `{provenance.git_commit()}`",
            f"Data: {self._data_line()}.",
            *self._predictions_lines(),
            "Packages: " + ", ".join(f"{k} {v}" for k, v in provenance.package_versions().items()) + ".",
        ]
        if self.synthetic:
            what = "constructed examples" if self.source == "constructed" else "synthetic stand-in data"
            lines.append(
                f"⚠ Numbers on this page come from {what}. They test the pipeline and illustrate the method; "
                "they are **not** the paper's results."
            )
        return "\n\n".join("> " + line for line in lines)

    def _data_line(self) -> str:
        sources = self.sources
        if self.source == "constructed":
            return "examples constructed in this chapter (no dataset is read)"
        if not sources:
            return "unknown (the data section has not run)"
        return "; ".join(
            f"**synthetic stand-in** for {scope_title(name)}, written in the real on-disk layout" if src == "synthetic"
            else f"user data ({scope_title(name)}, evaluated only) at `{src}`"
            if is_dataset(name) and dataset_entry(name).data_source == "user"
            else f"real {scope_title(name)} data at `{src}`"
            for name, src in sources.items()
        )

    def _predictions_lines(self) -> list[str]:
        """A line per dataset of this page whose evaluated predictions are constructed (the regression run)."""
        names = [name for name in self.sources if is_dataset(name)]
        constructed = [name for name in names
                       if (predictions_source(self.ws, name) or {}).get("source") == "constructed"]
        if not constructed:
            return []
        which = ", ".join(display_name(name) for name in constructed)
        return [f"Predictions ({which}): **constructed** from the reference masks by seeded perturbation operators "
                "(profile switch `predictions_from: constructed`, the portable regression run), not predicted by "
                "the trained models. Model names label construction rules; differences between them are built in."]

    def _repr_markdown_(self) -> str:
        return self.banner()

    def __repr__(self) -> str:
        # no absolute path: notebook outputs must be the same in every clone of the project
        return (f"Context(scope={self.scope!r}, profile={self.profile!r}, seed={self.seed}, "
                f"workspace={relative(self.ws.root)!r})")


def _file_name(name: str, argument: str) -> str:
    """``name`` when it is a plain file name (no folder, not empty), else a ValueError naming ``argument``."""
    if not isinstance(name, str) or not name or PurePath(name).name != name or name in (".", ".."):
        raise ValueError(f"{argument} must be a plain file name such as 'table.csv' (the context chooses the "
                         f"folder), got {name!r}")
    return name


def context(*, section: str, dataset: str, profile: str, workspace: str, seed: int,
            data_source: str | None = None) -> Context:
    """The context of a section notebook (``section``: its name in :data:`helpers.runner.sections.SECTIONS`); show
    it (last line of a cell) to print the provenance banner.

    It also quiets one warning in the notebook's kernel: MONAI, transformers and optuna import ``tqdm.auto``,
    which warns "IProgress not found" in a kernel without ipywidgets; the runner disables progress bars in
    executed notebooks anyway, so the warning says nothing. And it lets pandas show every text cell in full (no
    "unet > r..." cut off at 50 characters). Importing a module of the package sets no such state; the notebook's
    first call does.
    """
    import pandas as pd  # the kernel's display setting, set by the notebook's first call

    warnings.filterwarnings("ignore", message="IProgress not found")
    pd.set_option("display.max_colwidth", None)
    register_workspace(Workspace.at(workspace).root)  # a user dataset evaluated in this workspace (evaluate command)
    if not is_dataset(dataset) and dataset not in SCOPE_TITLES:
        raise ValueError(f"dataset must be one of {DATASETS} or a scope of {tuple(SCOPE_TITLES)}, got {dataset!r}")
    return Context(scope=dataset, profile=profile, seed=int(seed), ws=Workspace.at(workspace),
                   section=section_named(section), data_source=data_source)
