"""The notebook context: the provenance banner, its representation, and the one saving call of the notebooks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from pathlib import Path

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import dataclasses  # noqa: E402

from helpers.runner import context  # noqa: E402
from helpers.runner.sections import Section  # noqa: E402
from helpers.base.paths import Workspace  # noqa: E402


#: A page whose section declares the names the saving tests use.
PAGE = Section("page", "page.ipynb", "A page", results=("overall_metrics.csv", "edges.json", "t.csv", "x.csv",
                                                       "x.json"), figures=("curve.png", "curve.jpg"))


def _page(dataset: str):
    ctx = context.context(section="evaluation", dataset=dataset, profile="smoke", workspace="ws", seed=0)
    return dataclasses.replace(ctx, section=PAGE)


def test_banner_labels_synthetic_real_and_constructed_data(tmp_path, monkeypatch):
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(tmp_path))
    from helpers.base import io

    ws = Workspace.at("ws")
    io.write_json({"source": "synthetic"}, ws.results("wmh") / "data_manifest.json")
    io.write_json({"source": "/data/LiTS"}, ws.results("lits") / "data_manifest.json")
    wmh = context.context(section="evaluation", dataset="wmh", profile="smoke", workspace="ws", seed=0).banner()
    assert "**synthetic stand-in** for WMH" in wmh and "not** the paper's results" in wmh
    lits = context.context(section="evaluation", dataset="lits", profile="smoke", workspace="ws", seed=0).banner()
    assert "real LiTS data at `/data/LiTS`" in lits and "paper's results" not in lits
    # a chapter across datasets names every source and warns because one of them is synthetic
    across = context.context(section="evaluation", dataset="study", profile="smoke", workspace="ws", seed=0).banner()
    assert "synthetic stand-in** for WMH" in across and "real LiTS data" in across and "⚠" in across
    made = context.context(section="evaluation", dataset="study", profile="smoke", workspace="ws", seed=0,
                           data_source="constructed")
    assert "constructed in this chapter" in made.banner() and "constructed examples" in made.banner()
    unknown = context.context(section="evaluation", dataset="idrid", profile="smoke", workspace="ws", seed=0)
    assert unknown.synthetic is None and "has not run" in unknown.banner()


def test_context_repr_holds_no_absolute_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(tmp_path))
    ctx = context.context(section="evaluation", dataset="wmh", profile="smoke", workspace="build/nbval", seed=3)
    assert repr(ctx) == "Context(scope='wmh', profile='smoke', seed=3, workspace='build/nbval')"
    assert str(tmp_path) not in repr(ctx)


def test_the_dataset_parameter_is_resolved_once_into_scope_entry_and_display_name(tmp_path, monkeypatch):
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(tmp_path))
    lits = context.context(section="evaluation", dataset="lits", profile="smoke", workspace="ws", seed=0)
    assert (lits.scope, lits.dataset.name, lits.title) == ("lits", "lits", "LiTS")
    assert "**Provenance** · LiTS · profile `smoke`" in lits.banner()
    idrid = context.context(section="evaluation", dataset="idrid", profile="smoke", workspace="ws", seed=0)
    assert idrid.title == "IDRiD" and idrid.dataset.display == "IDRiD"
    for scope, title in (("study", "Across datasets"), ("small_data", "Small data")):
        page = context.context(section="evaluation", dataset=scope, profile="smoke", workspace="ws", seed=0)
        assert page.dataset is None and page.title == title
    assert page.results == Workspace.at("ws").results("small_data")
    with pytest.raises(ValueError, match=r"dataset must be one of \('wmh', 'lits', 'idrid'\) or a scope of "
                                         r"\('study', 'small_data'\), got 'LITS'"):
        context.context(section="evaluation", dataset="LITS", profile="smoke", workspace="ws", seed=0)


def test_banner_says_when_the_evaluated_predictions_are_constructed(tmp_path, monkeypatch):
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(tmp_path))
    from helpers.base import io

    ws = Workspace.at("ws")
    for name in ("wmh", "lits"):
        io.write_json({"source": "synthetic"}, ws.results(name) / "data_manifest.json")
    io.write_json({"source": "constructed"}, ws.results("wmh") / "predictions_source.json")
    io.write_json({"source": "trained"}, ws.results("lits") / "predictions_source.json")
    wmh = context.context(section="evaluation", dataset="wmh", profile="smoke", workspace="ws", seed=0).banner()
    assert "> Predictions (WMH): **constructed** from the reference masks" in wmh
    assert "Predictions" not in context.context(section="evaluation", dataset="lits", profile="smoke", workspace="ws",
                                                seed=0).banner()
    across = context.context(section="evaluation", dataset="study", profile="smoke", workspace="ws", seed=0).banner()
    assert "Predictions (WMH): **constructed**" in across


def test_save_writes_tables_into_the_pages_results_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(tmp_path))
    ctx = _page("wmh")
    table = pd.DataFrame({"model": ["unet", "resunet"], "dice": [0.5, float("nan")]})
    path = ctx.save(table, "overall_metrics.csv")
    assert path == tmp_path / "ws" / "results" / "wmh" / "overall_metrics.csv"
    # no index column; NaN as the empty field (helpers.base.io.write_csv)
    assert path.read_text().splitlines() == ["model,dice", "unet,0.5", "resunet,"]
    assert ctx.save({"edges": [1, 2]}, "edges.json").read_text() == '{\n  "edges": [\n    1,\n    2\n  ]\n}\n'
    # the returned path displays nothing in a notebook (no machine-specific path among stored outputs, with or
    # without the kernel's history that a trailing ';' needs)
    from IPython.core.formatters import DisplayFormatter
    assert DisplayFormatter().format(path) == ({}, {})
    assert DisplayFormatter().format(Path(path))[0]["text/plain"].endswith("overall_metrics.csv')")
    # a chapter across datasets writes into results/ itself
    across = _page("study")
    assert across.save(table, "t.csv") == tmp_path / "ws" / "results" / "t.csv"
    # no temporary file is left beside the results
    assert sorted(p.name for p in (tmp_path / "ws" / "results" / "wmh").iterdir()) == ["edges.json",
                                                                                       "overall_metrics.csv"]


def test_save_rejects_paths_and_mismatched_suffixes(tmp_path, monkeypatch):
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(tmp_path))
    ctx = _page("wmh")
    table = pd.DataFrame({"a": [1]})
    with pytest.raises(ValueError, match="name must be a plain file name .* got '../x.csv'"):
        ctx.save(table, "../x.csv")
    with pytest.raises(ValueError, match="got 'sub/x.csv'"):
        ctx.save(table, "sub/x.csv")
    with pytest.raises(TypeError, match=r"cannot write a DataFrame as 'x.json'; a DataFrame goes to a .csv file"):
        ctx.save(table, "x.json")
    with pytest.raises(TypeError, match="cannot write a str as 'x.csv'"):
        ctx.save("text", "x.csv")
    assert not (tmp_path / "ws").exists()


def test_show_saves_the_figure_closes_it_and_returns_the_saved_image(tmp_path, monkeypatch):
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(tmp_path))
    ctx = _page("lits")
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    image = ctx.show(fig, "curve.png")
    path = tmp_path / "ws" / "figures" / "lits" / "curve.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.data == path.read_bytes()  # the page shows the very file that was written
    assert not plt.fignum_exists(fig.number)
    with pytest.raises(ValueError, match="name must end with .png, got 'curve.jpg'"):
        ctx.show(plt.figure(), "curve.jpg")
    plt.close("all")


def test_the_context_holds_no_scheduler(tmp_path, monkeypatch):
    # the scheduler is the grids' business (the notebook's own parameter), not a value the context stores unread
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(tmp_path))
    ctx = context.context(section="evaluation", dataset="wmh", profile="smoke", workspace="ws", seed="2")
    assert ctx.seed == 2 and not hasattr(ctx, "scheduler")
    with pytest.raises(TypeError, match="scheduler"):
        context.context(section="evaluation", dataset="wmh", profile="smoke", workspace="ws", seed=0,
                        scheduler="tcp://127.0.0.1:1")


def test_save_and_show_refuse_a_name_the_section_does_not_declare(tmp_path, monkeypatch):
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(tmp_path))
    ctx = context.context(section="reversals", dataset="wmh", profile="smoke", workspace="ws", seed=0)
    assert ctx.section.name == "reversals"
    table = pd.DataFrame({"a": [1]})
    assert ctx.save(table, "ranking_reversals.csv") == tmp_path / "ws" / "results" / "wmh" / "ranking_reversals.csv"
    with pytest.raises(ValueError, match=r"section 'reversals' does not declare 'reversal.csv' among its results "
                                         r"\['ranking_reversals.csv'\]: add it to its Section"):
        ctx.save(table, "reversal.csv")
    with pytest.raises(ValueError, match="does not declare 'matrix.png' among its figures"):
        ctx.show(plt.figure(), "matrix.png")
    plt.close("all")
    assert not (tmp_path / "ws" / "results" / "wmh" / "reversal.csv").exists()
    with pytest.raises(ValueError, match="section must be one of"):
        context.context(section="reversal", dataset="wmh", profile="smoke", workspace="ws", seed=0)


def test_another_chapters_file_is_named_by_its_section(tmp_path, monkeypatch):
    monkeypatch.setenv("HONEST_PROJECT_ROOT", str(tmp_path))
    ctx = context.context(section="reversals", dataset="lits", profile="smoke", workspace="ws", seed=0)
    assert (ctx.input("evaluation", "overall_metrics.csv")
            == tmp_path / "ws" / "results" / "lits" / "overall_metrics.csv")
    assert ctx.input("evaluation", "per_case_metrics.csv", dataset="wmh").parent.name == "wmh"
    assert (ctx.input("failure_modes", "failure_modes_sweep.csv")
            == tmp_path / "ws" / "results" / "failure_modes_sweep.csv")
    with pytest.raises(ValueError, match=r"section 'evaluation' does not write 'overall.csv'; it declares \["):
        ctx.input("evaluation", "overall.csv")
    across = context.context(section="cross_dataset", dataset="study", profile="smoke", workspace="ws", seed=0)
    with pytest.raises(ValueError, match="writes one file per dataset; name the dataset"):
        across.input("evaluation", "overall_metrics.csv")
    assert across.declared_by("bootstrap", "bootstrap_directional_robustness.csv") == \
        "bootstrap_directional_robustness.csv"
