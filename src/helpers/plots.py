"""One place for figure styling. Plot functions across the package take ``ax=None`` and return the axes;
they call :func:`get_axes` so that every figure shares size, fonts and model colours."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402

RC = {
    "figure.dpi": 100,
    "savefig.dpi": 110,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "image.cmap": "gray",
}
plt.rcParams.update(RC)

#: Fixed colours per model family so a model looks the same in every figure.
MODEL_COLORS = {
    "unet": "#4c72b0",
    "resunet": "#55a868",
    "attention_unet": "#c44e52",
    "hybrid_transformer": "#8172b2",
    # the small-data study's models
    "deeplabv3plus": "#dd8452",
    "segformer": "#937860",
    "sam": "#da8bc3",
    "medsam": "#8c8c8c",
    "medsam_unet": "#ccb974",
}
_FALLBACK = ["#64b5cd", "#b47cc7", "#c4ad66", "#77bedb", "#4878d0", "#ee854a"]


def model_color(model: str, index: int = 0) -> str:
    """The colour of ``model`` (a fixed colour for the study's four families, else a palette entry)."""
    return MODEL_COLORS.get(model, _FALLBACK[index % len(_FALLBACK)])


def get_axes(ax=None, *, figsize=(5.0, 3.5)):
    """Return ``(fig, ax)``: the given axes and its figure, or a new figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def show(fig, path, *, dpi: int = 110):
    """Save ``fig`` as PNG at ``path`` (atomically), close it, and return the saved file for display.

    Notebooks end a figure cell with ``show(fig, ctx.figures / "name.png")``: the page shows exactly the file
    that the study writes to ``figures/``, once (figures are never also rendered inline)."""
    from IPython.display import Image

    from .io import save_figure

    saved = save_figure(fig, path, dpi=dpi)
    plt.close(fig)
    return Image(filename=str(saved))
