"""Honest evaluation of medical image segmentation: the helpers behind the study's notebooks."""

import warnings

__version__ = "0.1.0"

# MONAI, transformers and optuna import tqdm.auto, which warns in notebook kernels when ipywidgets is absent.
# Progress bars in executed notebooks are disabled anyway (helpers.progress), so this warning says nothing.
warnings.filterwarnings("ignore", message="IProgress not found")
