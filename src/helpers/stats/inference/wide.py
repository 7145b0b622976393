"""The units x models table every test of :mod:`helpers.stats` reads: one metric, from a long or a wide table.

Imports: numpy, pandas and :mod:`helpers.base.checks`, whose statistics checks (:func:`as_rng`, :func:`as_level`,
:func:`as_count`, :func:`check_nan_policy`) this module re-exports for :mod:`helpers.stats.inference`.

Conventions
-----------
Inputs
    Either a *tidy* (long) table with one row per evaluation unit and model -- columns ``model``, a unit
    column (``case_id`` by default; a fold or seed identifier works the same way) and ``value`` -- or a *wide*
    table / 2-D array with one row per unit and one column per model (:func:`as_wide`). One metric at a time: a
    long table whose ``metric`` column holds more than one metric is rejected. Duplicate (unit, model) rows are
    rejected, never averaged.
Missing values
    ``nan_policy="raise"`` (default for paired and multi-model procedures) rejects NaN values;
    ``nan_policy="omit"`` drops them and reports how many: per model for per-model summaries, per pair for
    paired comparisons, and whole units (listwise, :func:`complete_units`) for procedures over all models at
    once (Friedman, Nemenyi, rank bootstrap). Every returned table carries ``n``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.base.checks import as_count, as_level, as_rng, check_nan_policy

__all__ = ["as_rng", "as_level", "as_count", "check_nan_policy", "as_wide", "complete_units"]


def _wide_from_long(data: pd.DataFrame, *, unit: str, model: str, value: str) -> pd.DataFrame:
    """Units x models from a long table (one metric, no duplicate (unit, model) row), first-seen order."""
    if "metric" in data.columns and data["metric"].nunique(dropna=False) > 1:
        found = sorted(map(str, data["metric"].unique()))
        raise ValueError(f"data holds several metrics {found}; select one metric before calling")
    duplicated = data.duplicated([unit, model])
    if duplicated.any():
        first = data.loc[duplicated, [unit, model]].iloc[0].tolist()
        raise ValueError(f"data has duplicate ({unit}, {model}) rows, e.g. {first}; aggregate them explicitly")
    try:
        values = pd.to_numeric(data[value], errors="raise")
    except (TypeError, ValueError) as error:
        raise ValueError(f"column {value!r} must be numeric: {error}") from None
    long = data.assign(**{value: values.astype(float)})
    wide = long.pivot(index=unit, columns=model, values=value)
    return wide.reindex(index=pd.unique(long[unit]), columns=pd.unique(long[model]))


def _wide_from_frame(data: pd.DataFrame, *, unit: str, model: str, value: str) -> pd.DataFrame:
    """A wide table (one numeric column per model) as floats."""
    if isinstance(data.columns, pd.MultiIndex) or data.shape[1] == 0:
        raise ValueError(
            f"data must be a long table with columns ({unit!r}, {model!r}, {value!r}) or a wide table "
            f"with one column per model; got columns {list(data.columns)}"
        )
    try:
        return data.apply(pd.to_numeric, errors="raise").astype(float)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"wide data must be numeric (or pass a long table with columns {unit!r}, {model!r}, "
            f"{value!r}): {error}"
        ) from None


def _wide_from_array(data, *, models) -> pd.DataFrame:
    """A 2-D array (units x models) as a float table, columns named by ``models`` or ``model_<j>``."""
    array = np.asarray(data)
    if array.ndim != 2:
        raise ValueError(f"data must be 2-D (units x models), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"data must be numeric, got dtype {array.dtype}")
    names = [f"model_{j}" for j in range(array.shape[1])] if models is None else [str(m) for m in models]
    if len(names) != array.shape[1]:
        raise ValueError(f"models has {len(names)} names but data has {array.shape[1]} columns")
    return pd.DataFrame(array.astype(float), columns=names)


def as_wide(
    data,
    *,
    unit: str = "case_id",
    model: str = "model",
    value: str = "value",
    models=None,
    nan_policy: str = "raise",
) -> pd.DataFrame:
    """Return the units x models matrix of one metric as a float DataFrame.

    Parameters
    ----------
    data : pandas.DataFrame or array_like
        A long table with columns ``unit``, ``model`` and ``value`` (one row per unit and model; if it has a
        ``metric`` column, that column must hold a single metric), or a wide DataFrame (index = units,
        columns = models), or a 2-D array (rows = units, columns = models, named by ``models`` or
        ``"model_0", "model_1", ...``).
    unit, model, value : str
        Column names of the long format.
    models : sequence of str, optional
        Column order (and subset) to return; for a 2-D array, the names of its columns.
    nan_policy : {"raise", "omit"}
        ``"raise"``: a NaN value (or a unit lacking a model, in the long format) is an error. ``"omit"``:
        keep NaN in the matrix; the caller drops what it must and counts it.

    Returns
    -------
    pandas.DataFrame
        Float matrix, index named ``unit``, columns named ``model``. Units keep their first-seen order.

    Raises
    ------
    ValueError
        Duplicate (unit, model) rows, more than one metric, fewer than one unit or model, non-numeric values,
        or NaN under ``nan_policy="raise"``.
    """
    check_nan_policy(nan_policy)
    if isinstance(data, pd.DataFrame) and {model, value}.issubset(data.columns) and unit in data.columns:
        wide = _wide_from_long(data, unit=unit, model=model, value=value)
    elif isinstance(data, pd.DataFrame):
        wide = _wide_from_frame(data, unit=unit, model=model, value=value)
    else:
        wide = _wide_from_array(data, models=models)
        models = None
    if models is not None:
        models = list(models)
        missing = [m for m in models if m not in wide.columns]
        if missing:
            raise ValueError(f"models {missing} not found in data (models present: {list(wide.columns)})")
        wide = wide[models]
    if wide.shape[0] < 1 or wide.shape[1] < 1:
        raise ValueError(f"data must have at least one unit and one model, got shape {wide.shape}")
    if wide.columns.duplicated().any():
        raise ValueError(f"duplicate model columns: {list(wide.columns[wide.columns.duplicated()])}")
    if nan_policy == "raise" and wide.isna().to_numpy().any():
        row, col = np.argwhere(wide.isna().to_numpy())[0]
        raise ValueError(
            f"data has missing values (e.g. {unit}={wide.index[row]!r}, {model}={wide.columns[col]!r}); "
            "pass nan_policy='omit' to drop them and count them"
        )
    wide.index.name = unit
    wide.columns.name = model
    return wide


def complete_units(wide: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The units (rows) with a value for every model, and how many incomplete units were dropped (listwise)."""
    complete = wide.notna().all(axis=1)
    return wide.loc[complete], int((~complete).sum())
