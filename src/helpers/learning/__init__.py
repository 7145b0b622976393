"""Learning: the lesion study's model families and the one training protocol (loop, checkpoints, early
stopping, test predictions, the train and predict grids). Imports :mod:`helpers.base`, :mod:`helpers.compute`,
:mod:`helpers.metrics` and :mod:`helpers.data`.
"""
