"""Shared figure styling: fixed model colours, axes helper, and `show` (save, close, display the saved file)."""

import matplotlib.pyplot as plt

from helpers.base import plots


def test_model_colours_are_fixed_per_family_and_distinct():
    families = ["unet", "resunet", "attention_unet", "hybrid_transformer",
                "deeplabv3plus", "segformer", "sam", "medsam", "medsam_unet"]
    colours = [plots.model_color(m) for m in families]
    assert len(set(colours)) == len(families)
    assert plots.model_color("unet", 5) == plots.MODEL_COLORS["unet"]  # the index only matters for unknown names
    assert plots.model_color("my_model", 0) != plots.model_color("my_model", 1)


def test_get_axes_reuses_given_axes():
    fig, ax = plt.subplots()
    assert plots.get_axes(ax) == (fig, ax)
    plt.close(fig)


def test_show_saves_closes_and_returns_the_saved_png(tmp_path):
    fig, ax = plots.get_axes()
    ax.plot([0, 1], [0, 1])
    image = plots.show(fig, tmp_path / "sub" / "line.png")
    path = tmp_path / "sub" / "line.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.data == path.read_bytes()
    assert not plt.fignum_exists(fig.number)
