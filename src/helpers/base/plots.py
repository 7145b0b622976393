"""One place for figure styling. Plot functions across the package take ``ax=None`` and return the axes;
they call :func:`get_axes` (one axes) or :func:`subplots` (a grid) so that every figure shares size, fonts and
model colours.

Importing this module has no side effect and does not import matplotlib: the style (:data:`RC`) is applied to
matplotlib's settings when the first figure is made through this module (:func:`apply_style`), and the backend
is whatever the environment chose (the runner sets ``MPLBACKEND=Agg`` for executed notebooks and workers).
"""

from __future__ import annotations

from helpers.base.io import save_figure

__all__ = [
    "RC", "MODEL_COLORS", "model_color", "pyplot", "apply_style", "get_axes", "subplots", "colormap", "show",
]

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


def pyplot():
    """``matplotlib.pyplot`` with the package style applied (:func:`apply_style`).

    matplotlib is imported here, on the first figure, not when a module of the package is imported: the core
    (metrics, lesions, evaluation) never needs it.
    """
    import matplotlib.pyplot as plt  # heavy and only needed to draw: imported on the first figure

    apply_style(plt)
    return plt


def apply_style(plt=None) -> None:
    """Apply :data:`RC` to matplotlib's settings (idempotent). Every figure made through :func:`get_axes`,
    :func:`subplots` or :func:`pyplot` gets it; text and axes created afterwards inherit it, as before."""
    if plt is None:
        plt = pyplot()
        return
    if any(plt.rcParams[key] != value for key, value in RC.items()):
        plt.rcParams.update(RC)


def get_axes(ax=None, *, figsize=(5.0, 3.5)):
    """Return ``(fig, ax)``: the given axes and its figure, or a new styled figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = pyplot().subplots(figsize=figsize)
    return fig, ax


def subplots(*args, **kwargs):
    """``matplotlib.pyplot.subplots`` with the package style applied: ``(fig, axes)``."""
    return pyplot().subplots(*args, **kwargs)


def colormap(name: str):
    """The matplotlib colormap ``name`` (e.g. ``"viridis"``, ``"tab10"``)."""
    import matplotlib  # heavy and only needed to draw: imported on the first figure

    return matplotlib.colormaps[name]


def show(fig, path, *, dpi: int = 110):
    """Save ``fig`` as PNG at ``path`` (atomically), close it, and return the saved file for display.

    Notebooks end a figure cell with ``show(fig, ctx.figures / "name.png")``: the page shows exactly the file
    that the study writes to ``figures/``, once (figures are never also rendered inline)."""
    from IPython.display import Image  # IPython only where a notebook displays the figure

    saved = save_figure(fig, path, dpi=dpi)
    pyplot().close(fig)
    return Image(filename=str(saved))
