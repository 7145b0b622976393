"""The report layer's pure functions: the label registry and number formats, readable tables, the finding box built
from claims rows (its text is exactly :func:`helpers.analysis.claims.sentence` of each row), the scorecard, the
run's methods paragraph and the evidence figures (files written, axes labelled with the dataset's unit)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from helpers.analysis.claims import CANNOT, claim_row, claims_frame, page_file, sentence
from helpers.base.io import write_csv
from helpers.report import evidence_figures as evidence, findings, methods, tables


# ---- tables ----------------------------------------------------------------------------------------------------


def test_numbers_read_as_integers_percentages_and_p_values():
    assert tables.format_p(0.0) == "< 0.001"
    assert tables.format_p(0.00099) == "< 0.001"
    assert tables.format_p(0.001) == "0.001"
    assert tables.format_p(0.04567) == "0.046"
    assert tables.format_p(float("nan")) == ""
    assert tables.format_percent(871.4286) == "871.4"
    assert tables.format_value(12.0) == "12.000"
    assert tables.format_value(np.int64(7)) == "7"
    assert tables.format_value(True) == "yes"
    counts = tables.format_column("n_cases", pd.Series([20.0, 31.0, np.nan]))
    assert list(counts) == ["20", "31", ""]


def test_column_labels_come_from_one_registry_and_metrics_from_the_metric_registry():
    assert tables.column_label("relative_spread_percent") == "spread among top 3 (%)"
    assert tables.column_label("p_holm") == "p (Holm)"
    assert tables.column_label("hd95") == "HD95"
    assert tables.column_label("some_new_column") == "some new column"


def test_model_orders_read_in_full_with_display_names():
    text = tables.model_order("hybrid_transformer > attention_unet = unet > resunet")
    assert text == "Hybrid CNN-Transformer > Attention U-Net = U-Net > Residual U-Net"
    assert "..." not in text


def test_readable_drops_constant_columns_and_states_them_once():
    frame = pd.DataFrame({"dataset": ["wmh", "wmh"], "model": ["unet", "resunet"], "paper_value": ["0.9", "0.9"],
                          "relative_spread_percent": [871.4286, 5.0], "p_holm": [0.0, 0.5], "n_cases": [20.0, 20.0]})
    table, note = tables.readable(frame, keep=("model",))
    assert list(table.columns) == ["model", "spread among top 3 (%)", "p (Holm)"]
    assert list(table["model"]) == ["U-Net", "Residual U-Net"]
    assert list(table["spread among top 3 (%)"]) == ["871.4", "5.0"]
    assert list(table["p (Holm)"]) == ["< 0.001", "0.500"]
    assert note == "Same on every row: dataset: wmh; paper: 0.9; cases: 20."
    markdown = tables.to_markdown(table, note=note)
    assert markdown.splitlines()[1] == "|---|---:|---:|"
    assert markdown.count("0.9") == 1


def test_long_tables_collapse_into_a_dropdown_with_their_csv_named():
    frame = pd.DataFrame({"case_id": [f"c{i}" for i in range(40)], "dice": np.linspace(0, 1, 40)})
    text = tables.collapsed(frame, summary="40 cases.", csv_name="per_case.csv")
    assert text.startswith("40 cases. The full table is saved as `per_case.csv`.")
    assert ":::{dropdown} Show the table (40 rows)" in text
    assert ":::{dropdown}" not in tables.collapsed(frame.head(3), summary="3 cases.")


# ---- findings --------------------------------------------------------------------------------------------------


def _rows():
    return claims_frame([
        claim_row("dice_leader_not_boundary_leader_q1", dataset="wmh", data_source="synthetic",
                  our_value="leader 2nd on HD95", verdict="supported", n_cases=20, n_lesions=61, n_seeds=1,
                  metric="hd95", p_raw=0.0004),
        claim_row("dice_leader_not_boundary_leader_q1", dataset="lits", data_source="synthetic",
                  our_value="", verdict=CANNOT, n_cases=3, metric="hd95", reason="fewer than 20 cases"),
    ])


def test_finding_box_has_one_bullet_per_row_equal_to_its_sentence():
    rows = _rows()
    text = findings.finding_markdown(rows)
    assert text.startswith("````{admonition} Finding\n:class: important\n")
    bullets = [line[2:] for line in text.splitlines() if line.startswith("- ")]
    assert bullets == [sentence(r) for r in rows.to_dict("records")]
    assert "nan" not in text


def test_a_page_without_rows_says_so_and_a_missing_file_says_not_computed(tmp_path):
    empty = findings.finding_markdown([], where="LiTS")
    assert ":class: note" in empty and "no rows in the claims table for LiTS" in empty
    missing = findings.finding_for(tmp_path, "reversals", scope="wmh")
    assert "were not computed" in missing and page_file("reversals") in missing


def test_page_rows_read_back_from_csv_render_the_same_sentences(tmp_path):
    rows = _rows()
    write_csv(rows, tmp_path / page_file("reversals"))
    text = findings.finding_for(tmp_path, "reversals", scope="wmh")
    bullets = [line[2:] for line in text.splitlines() if line.startswith("- ")]
    assert bullets == [sentence(rows.to_dict("records")[0])]  # the WMH page shows the WMH row only
    assert "Evidence: 20 cases, 61 lesions, 1 seed." in bullets[0]


def test_scorecard_has_one_row_per_claim_with_paper_ours_and_verdict():
    card = findings.scorecard(_rows())
    assert list(card.columns) == ["claim", "paper", "ours", "verdict", "evidence"]
    assert len(card) == 2
    assert card["verdict"].tolist() == ["supported", CANNOT]
    assert card["claim"].iloc[0].endswith("(WMH)") and card["claim"].iloc[1].endswith("(LiTS)")
    assert card["evidence"].iloc[0] == "20 cases, 61 lesions, 1 seed"
    assert "**supported**" in findings.scorecard_markdown(_rows())
    assert "not assembled" in findings.scorecard_markdown(None)


def test_run_summary_counts_verdicts_from_the_table_and_links_pages():
    text = findings.run_summary_markdown(_rows(), pages={"reversals": ["book/executed/wmh/05_reversals"]},
                                         titles={"reversals": "Ranking reversals"})
    assert "- **Ranking reversals**: 2 claim rows (1 supported, 1 cannot be assessed); see " \
           "{doc}`/book/executed/wmh/05_reversals`." in text
    assert "not assembled" in findings.run_summary_markdown(None)


# ---- methods ---------------------------------------------------------------------------------------------------


PROFILE = {"profile": "test", "seed": 3, "datasets": {"wmh": {}, "idrid": {"bootstrap": {"n_bootstrap": 500}}},
           "sections": {"training": {"min_component_voxels": 3}, "bootstrap": {"n_bootstrap": 2000, "alpha": 0.05,
                                                                               "min_cases": 10}},
           "study": {"small_data": {"n_bootstrap": 1000, "cv_seeds": [0, 1]}}}


def test_methods_paragraph_states_every_choice_from_the_profile():
    text = methods.methods_markdown(PROFILE)
    for needed in ("HD95", "95th percentiles", "ASSD", "MASD", "face-connected", "8 neighbours in 2D, 26 in 3D",
                   "minimum overlap 1 voxel", "Q1", "quartile", "`common` set", "penalty",
                   "smaller than 3 voxel(s)", "2000 (WMH), 500 (IDRiD) paired resamples", "Holm", "at least 10",
                   "Friedman", "Nemenyi", "1000 resamples", "2 seed(s)", "IDRiD: px", "WMH: mm"):
        assert needed in text, needed
    assert "{cite:p}`demsar2006`" in text and "{cite:t}`smalllesion2026`" in text
    plain = methods.methods_markdown(PROFILE, citations="text")
    assert "{cite" not in plain and "(Demšar, 2006)" in plain and "clawRxiv:2604.00927" in plain
    assert "arXiv:2509.05892" in plain


def test_parameter_prefers_the_dataset_then_the_shared_value_then_the_default():
    assert methods.parameter(PROFILE, "bootstrap", "n_bootstrap", 1, dataset="idrid") == 500
    assert methods.parameter(PROFILE, "bootstrap", "n_bootstrap", 1, dataset="wmh") == 2000
    assert methods.parameter(PROFILE, "bootstrap", "missing", 7, dataset="wmh") == 7
    assert methods.distance_unit("idrid") == "px" and methods.distance_unit("lits") == "mm"


def test_write_methods_writes_results_methods_md(tmp_path):
    from helpers.base.paths import Workspace

    ws = Workspace.at(tmp_path)
    path = methods.write_methods(ws, PROFILE)
    assert path == ws.results() / "methods.md"
    assert path.read_text(encoding="utf-8").startswith("# Methods of this run")


# ---- evidence figures ------------------------------------------------------------------------------------------


def _per_lesion():
    rng = np.random.default_rng(0)
    rows = []
    for model in ("unet", "resunet"):
        for i in range(12):
            fraction = 10 ** rng.uniform(-4, -2)
            for metric, value in (("hd95", rng.gamma(2.0)), ("dice", rng.uniform())):
                rows.append({"model": model, "case_id": f"c{i % 4}", "lesion_id": i, "kind": "lesion",
                             "metric": metric, "value": value, "penalty": i == 0, "area_fraction": fraction,
                             "quartile": "Q1" if fraction < 1e-3 else "Q2", "detected": True})
    return pd.DataFrame(rows)


def test_lesion_values_leave_out_penalties():
    values = evidence.lesion_values(_per_lesion(), "hd95")
    assert len(values) == 2 * 11


def test_evidence_figures_are_written_with_their_unit_on_the_axis(tmp_path):
    from helpers.base.io import save_figure
    from matplotlib.image import imread

    ax = evidence.plot_boundary_error_vs_size(_per_lesion(), edges=[1e-3, 3e-3, 1e-2], voxel=1.0, unit="px")
    assert ax.get_xscale() == "log"
    assert ax.get_ylabel() == "per-lesion HD95 (px)"
    assert any(line.get_ydata()[0] == 1.0 for line in ax.get_lines())  # the one-voxel line
    assert "one voxel (1 px)" in [t.get_text() for t in ax.get_legend().get_texts()]
    path = save_figure(ax.figure, tmp_path / "size.png")
    image = imread(path)
    assert image.shape[1] >= 300 and float(image[..., :3].std()) > 0.01
    ax = evidence.plot_q1_distribution(_per_lesion(), unit="mm", voxel=0.9)
    assert ax.get_ylabel() == "per-lesion HD95 in Q1 (mm)"
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["Residual U-Net", "U-Net"]


def test_rank_heatmap_shows_the_one_rankings_ranks():
    aggregates = pd.DataFrame([{"stratum": s, "model": m, "metric": metric, "value": v}
                               for s in ("overall", "Q1")
                               for m, dice, hd in (("unet", 0.8, 3.0), ("resunet", 0.7, 1.0))
                               for metric, v in (("dice", dice), ("hd95", hd))])
    axes = evidence.plot_rank_heatmap(aggregates, metrics=["dice", "hd95"])
    texts = [t.get_text() for t in axes[0].texts]
    # rows: unet (Dice rank 1) then resunet; columns Dice, HD95 (lower is better: resunet first)
    assert texts == ["1", "2", "2", "1"]
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["U-Net", "Residual U-Net"]


def test_bootstrap_forest_draws_one_interval_per_pair_and_metric():
    robustness = pd.DataFrame([
        {"stratum": "Q1", "metric": "hd95", "model_a": "unet", "model_b": "resunet", "difference": 1.0,
         "ci_low": 0.5, "ci_high": 1.5, "verdict": "sign kept, Holm p <= 0.05"},
        {"stratum": "Q1", "metric": "dice", "model_a": "unet", "model_b": "resunet", "difference": -0.01,
         "ci_low": -0.03, "ci_high": 0.02, "verdict": "sign not stable (< 95 %)"},
        {"stratum": "overall", "metric": "dice", "model_a": "unet", "model_b": "resunet", "difference": 0.0,
         "ci_low": 0.0, "ci_high": 0.0, "verdict": "no observed difference"},
    ])
    axes = evidence.plot_bootstrap_forest(robustness, unit="px")
    assert [ax.get_title() for ax in axes] == ["Dice", "HD95"]
    assert axes[1].get_xlabel().startswith("difference in HD95 (px)")
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["U-Net - Residual U-Net"]


def test_palette_gives_distinct_colours_and_line_styles():
    styles = evidence.model_style(["a", "b", "c", "d"])
    assert len({s["color"] for s in styles.values()}) == 4
    assert len({str(s["linestyle"]) for s in styles.values()}) == 4


def test_per_image_scores_and_class_key():
    scores = pd.DataFrame([{"case_id": f"img{i}", "model": m, "dice": 0.1 * i} for i in range(9)
                           for m in ("unet", "segformer")])
    ax = evidence.plot_per_image_scores(scores)
    assert len(ax.get_xticks()) == 9 and ax.get_ylabel() == "Dice"
    legend = evidence.add_class_key(ax.figure, {"lumen": "#56B4E9", "media": "#CC79A7"})
    assert [t.get_text() for t in legend.get_texts()] == ["lumen", "media"]


def test_spread_plot_is_linear_with_readable_values():
    from helpers.report import figures

    spreads = pd.DataFrame([{"dataset": d, "stratum": s, "metric": m, "relative_spread_percent": v}
                            for d in ("wmh", "lits") for s in ("overall", "Q1")
                            for m, v in (("dice", 1.0), ("hd95", 40.0 if s == "Q1" else 10.0))])
    ax = figures.plot_overall_vs_small(spreads, metrics=["dice", "hd95"])
    assert ax.get_yscale() == "linear"
    labels = {t.get_text() for t in ax.texts}
    assert {"1.0", "10.0", "40.0"} <= labels
    assert any(re.search("mean over 2 datasets", t.get_text()) for t in ax.get_legend().get_texts())
    assert {"WMH", "LiTS"} <= {t.get_text() for t in ax.get_legend().get_texts()}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    from helpers.base.plots import pyplot

    pyplot().close("all")


def test_finding_box_updates_in_place_once_the_rows_exist(tmp_path, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, display_id=None: shown.append((display_id, obj.data)))
    monkeypatch.setattr(IPython.display, "update_display",
                        lambda obj, display_id=None: shown.append((display_id, obj.data)))

    class Ctx:
        results = tmp_path
        scope = "wmh"

        class section:
            name = "reversals"

    box = findings.show_finding(Ctx)
    assert "were not computed" in shown[0][1]
    write_csv(_rows(), tmp_path / page_file("reversals"))
    box.update()
    assert shown[1][0] == shown[0][0] == "finding-reversals-wmh"
    assert sentence(_rows().to_dict("records")[0]) in shown[1][1]


def test_executed_pages_of_a_dataset_carry_its_name_in_the_title(tmp_path):
    import nbformat
    from nbformat.v4 import new_markdown_cell, new_notebook

    from helpers.runner.execution import title_with_scope

    path = tmp_path / "page.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("# Size stratification\n\ntext")]), path)
    assert title_with_scope(path, "LiTS")
    assert nbformat.read(path, as_version=4).cells[0].source == "# LiTS: Size stratification\n\ntext"
    assert not title_with_scope(path, "LiTS")  # once only


def test_browser_check_flags_narrow_and_blank_figures_and_knows_the_conclusion_pages(tmp_path):
    import importlib.util
    import pathlib

    from PIL import Image

    spec = importlib.util.spec_from_file_location(
        "browser_check", pathlib.Path(__file__).with_name("browser_check.py"))
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    Image.new("RGB", (200, 100), "white").save(tmp_path / "blank.png")
    drawn = Image.new("RGB", (400, 100), "white")
    drawn.putpixel((10, 10), (0, 0, 0))
    drawn.save(tmp_path / "drawn.png")
    assert check.figure_problems(tmp_path / "blank.png") == ["200 px wide (< 300)", "blank (one colour)"]
    assert check.figure_problems(tmp_path / "drawn.png") == []
    assert check.is_conclusion_page("book/executed/lits/05_reversals.html")
    assert not check.is_conclusion_page("book/executed/lits/03_evaluation.html")


def test_whole_number_float_columns_read_as_integers_and_show_table_is_markdown():
    frame = pd.DataFrame({"leader_rank_in_metric": [1.0, 3.0], "kendall_tau": [0.333333, 1.0],
                          "order_dice": ["unet > resunet", "resunet > unet"], "order_changed": [False, True]})
    table, note = tables.readable(frame)
    assert list(table["Dice leader's rank"]) == ["1", "3"]
    assert list(table["Kendall's tau"]) == ["0.333", "1.000"]
    assert list(table["order by Dice"]) == ["U-Net > Residual U-Net", "Residual U-Net > U-Net"]
    assert list(table["order changed"]) == ["no", "yes"]
    shown = tables.show_table(frame)
    assert shown.data.startswith("| Dice leader's rank | Kendall's tau |")
    long = tables.show_table(pd.DataFrame({"case_id": range(30)}), csv_name="x.csv")
    assert ":::{dropdown}" in long.data and "`x.csv`" in long.data


def test_the_runner_writes_the_pages_the_intro_and_methods_include(tmp_path):
    from helpers.analysis.claims import CLAIMS_FILE
    from helpers.base.paths import Workspace
    from helpers.runner import book

    ws = Workspace.at(tmp_path / "ws")
    (ws.executed("wmh")).mkdir(parents=True)
    (ws.executed("wmh") / "05_reversals.ipynb").write_text("{}")
    write_csv(_rows(), ws.results() / CLAIMS_FILE)
    profile = {"profile": "t", "seed": 0, "datasets": {"wmh": {}}}
    written = book.write_generated_pages(profile, ws)
    assert written == [book.generated_path(ws, "findings"), book.generated_path(ws, "methods")]
    assert written[0] == ws.root / "book" / "executed" / "findings.md"
    found = written[0].read_text(encoding="utf-8")
    assert "- **Ranking reversals**: 2 claim rows (1 supported, 1 cannot be assessed); see " \
           "{doc}`/book/executed/wmh/05_reversals`." in found
    assert written[1].read_text(encoding="utf-8").startswith("## This run's choices")


def test_paper_values_are_shown_once_per_model():
    frame = pd.DataFrame({"dataset": ["wmh", "wmh", "lits", "lits"], "model": ["unet", "resunet"] * 2,
                          "hd95": [1.0, 2.0, 3.0, 4.0], "paper_hd95": [5.0, 6.0, 5.0, 6.0]})
    ours, paper = tables.split_paper_columns(frame)
    assert list(ours.columns) == ["dataset", "model", "hd95"]
    assert paper.to_dict("list") == {"model": ["unet", "resunet"], "hd95": [5.0, 6.0]}
