"""The book: its table of contents (``_toc.yml``: one part per dataset, then the cross-dataset chapters), the
hand-written pages staged into a workspace outside the clone, and the Jupyter Book build."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from helpers.base import io as _io
from helpers.base.paths import Workspace, project_root, relative
from helpers.data.datasets import display_name
from helpers.data.datasets import get as dataset_entry
from helpers.runner.errors import StudyError
from helpers.runner.interrupts import signals, wait
from helpers.runner.sections import DATASET_SECTIONS, STUDY_SECTIONS, Section
from helpers.report.findings import read_claims, run_summary_markdown
from helpers.report.methods import methods_markdown
from helpers.analysis.claims import CLAIMS_FILE

__all__ = [
    "BOOK_FILES", "book_root", "stage_book_files", "toc_path", "toc", "write_toc", "GENERATED", "generated_path",
    "write_generated_pages", "build_book",
]

#: The pages the hand-written ones include, generated from the run at each :func:`write_toc`: the intro's "What
#: this run found" (counted from ``results/claims.csv``) and the methods page's paragraph of this run's choices
#: (:func:`helpers.report.methods.methods_markdown` of the profile). Paths relative to the book's ``book/``.
GENERATED = {"findings": "executed/findings.md", "methods": "executed/methods_run.md"}


#: The hand-written files the book needs besides the executed notebooks (relative to the project root).
BOOK_FILES = ("_config.yml", "book")


def book_root(ws: Workspace) -> Path:
    """The folder Jupyter Book builds from: the project root for a workspace inside the clone (the hand-written
    pages are read where they are), else the workspace itself, which then holds a copy of them
    (:func:`stage_book_files`): Sphinx reads only files below its source folder."""
    root = project_root()
    return root if ws.root == root or root in ws.root.parents else ws.root


def stage_book_files(ws: Workspace) -> None:
    """Copy the book's configuration and hand-written pages into a workspace outside the clone (atomically, file
    by file; the executed notebooks under ``book/executed`` are not touched)."""
    root = project_root()
    if book_root(ws) == root:
        return
    for name in BOOK_FILES:
        source = root / name
        files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        for file in files:
            rel = file.relative_to(root)
            if rel.parts[:2] == ("book", "executed") or any(part.startswith(".") for part in rel.parts):
                continue
            _io.write_bytes(ws.root / rel, file.read_bytes())


def toc_path(ws: Workspace) -> Path:
    """The book's table of contents: ``_toc.yml`` at the project root for the main workspace, else inside the
    workspace."""
    return project_root() / "_toc.yml" if ws.root == project_root() else ws.root / "_toc.yml"


def toc(profile: dict, ws: Workspace) -> dict:
    """The table of contents for the datasets and chapters of ``profile``: one part per dataset plus the
    cross-dataset chapters; only chapters whose executed notebook exists are listed. Paths are relative to
    :func:`book_root`."""
    root = book_root(ws)

    def entry(dataset: str, section: Section, title: str):
        path = ws.executed(dataset) / section.notebook
        if not path.exists():
            return None
        return {"file": path.relative_to(root).with_suffix("").as_posix(), "title": title}

    study = profile.get("study") or {}
    method = [{"file": "book/methods"}]
    for s in STUDY_SECTIONS:
        if s.part == "method" and s.name in study:
            method.append(entry(s.dataset, s, s.title))
    parts = [{"caption": "The study", "chapters": [c for c in method if c]}]
    for dataset in profile["datasets"]:
        chapters = [entry(dataset, s, f"{display_name(dataset)}: {s.title.lower()}") for s in DATASET_SECTIONS]
        chapters = [c for c in chapters if c]
        if chapters:
            parts.append({"caption": dataset_entry(dataset).caption, "chapters": chapters})
    for part, caption in (("across", "Across datasets"), ("small", "The second study: tiny datasets")):
        chapters = [entry(s.dataset, s, s.title) for s in STUDY_SECTIONS if s.part == part and s.name in study]
        chapters = [c for c in chapters if c]
        if chapters:
            parts.append({"caption": caption, "chapters": chapters})
    parts.append({"caption": "Reproducibility", "chapters": [{"file": "book/reproducibility"},
                                                            {"file": "book/references"}]})
    return {"format": "jb-book", "root": "book/intro", "parts": parts}


def generated_path(ws: Workspace, name: str) -> Path:
    """Where the generated page ``name`` of :data:`GENERATED` is written: below the book root's ``book/`` folder,
    where the hand-written page that includes it reads it."""
    return book_root(ws) / "book" / GENERATED[name]


def write_generated_pages(profile: dict, ws: Workspace) -> list[Path]:
    """Write the pages of :data:`GENERATED` for the run of ``profile`` in ``ws`` (atomically): "What this run found",
    linking each conclusion chapter listed in the table of contents, and the methods paragraph."""
    pages: dict[str, list[str]] = {}
    for part in toc(profile, ws)["parts"]:
        for chapter in part["chapters"]:
            file = chapter["file"]
            for s in (*DATASET_SECTIONS, *STUDY_SECTIONS):
                if file.endswith("/" + Path(s.notebook).stem):
                    pages.setdefault(s.name, []).append(file)
    claims_file = ws.results() / CLAIMS_FILE
    claims = read_claims(claims_file) if claims_file.is_file() else None
    summary = run_summary_markdown(claims, pages=pages,
                                   titles={s.name: s.title for s in (*DATASET_SECTIONS, *STUDY_SECTIONS)})
    return [_io.write_text(generated_path(ws, "findings"), summary + "\n"),
            _io.write_text(generated_path(ws, "methods"), methods_markdown(profile).replace("# Methods of this run",
                                                                                            "## This run's choices"))]


def write_toc(profile: dict, ws: Workspace) -> Path:
    """Write the table of contents (:func:`toc`) and the generated pages the hand-written ones include
    (:func:`write_generated_pages`)."""
    write_generated_pages(profile, ws)
    text = ("# Generated by `python -m helpers.study run`: one part per dataset run, then the cross-dataset chapters.\n"
            + yaml.safe_dump(toc(profile, ws), sort_keys=False, allow_unicode=True))
    return _io.write_text(toc_path(ws), text)


def build_book(ws: Workspace, *, out=sys.stdout) -> Path:
    """Build the HTML book with Jupyter Book v1 (execution off, warnings as errors); returns the HTML folder."""

    toc_file = toc_path(ws)
    if not toc_file.exists():
        raise StudyError(f"{relative(toc_file)} not found: run the study before building its book")
    stage_book_files(ws)
    root = book_root(ws)
    cli = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(cli) if cli.exists() else "jupyter-book", "build", str(root), "--toc", str(toc_file),
           "--path-output", str(ws.root), "-W", "-n", "--keep-going"]
    print(f"book: building {relative(ws.root / '_build' / 'html')} …", file=out, flush=True)
    start = time.perf_counter()
    log = ws.root / ".book-build.log"
    with signals(), open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, cwd=root, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        returncode = wait(proc, "the book build")
    text = log.read_text(encoding="utf-8", errors="replace")
    log.unlink(missing_ok=True)
    if returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-40:])
        raise StudyError(f"the book build failed (exit {returncode}):\n{tail}")
    html = ws.root / "_build" / "html"
    print(f"book: built in {time.perf_counter() - start:.1f} s; open {relative(html / 'index.html')}",
          file=out, flush=True)
    return html
