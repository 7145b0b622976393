"""Report: every analysis and statistics figure of the book, drawn from the analysis tables (each takes
``ax=None`` and returns the axes). Imports :mod:`helpers.base`, :mod:`helpers.metrics`, :mod:`helpers.stats`
and :mod:`helpers.analysis`.
"""
