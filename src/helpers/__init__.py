"""Honest evaluation of medical image segmentation: the helpers behind the study's notebooks.

The folders are the layers; each imports only the folders listed before it (``tests/test_architecture.py``
holds the package to this order, CONTRIBUTING.md describes every module):

``base`` → ``compute`` → ``metrics`` → ``data`` → ``learning``, ``evaluation`` → ``stats`` →
``analysis`` → ``report`` → ``studies`` (``failure_lab``, ``small_data``) → ``runner``.

Importing the package sets no global state. The command line is ``python -m helpers.study`` (or
``python -m helpers``).
"""

__version__ = "0.1.0"
