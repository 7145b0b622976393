"""Honest evaluation of medical image segmentation: the helpers behind the study's notebooks."""

__version__ = "0.1.0"
