"""Statistics: the one ranking, hypothesis tests for small N, and every resampling (bootstrap). Imports
:mod:`helpers.base` and the metric registry.
"""
