"""Input validators shared by every module: one check per kind of argument, one wording of its error.

Each function validates one argument at a public entry point and returns it in canonical form (a tuple of
floats, an int, a float). It raises ``TypeError`` for a value of the wrong type and ``ValueError`` for a value of
the right type but out of range; the message names the argument (``name``) and the bad value. Nothing is
repaired silently: a mask is never thresholded, a spacing never padded.

Conventions as in :mod:`helpers.metrics`: masks are 2D ``(y, x)`` or 3D ``(z, y, x)`` boolean arrays, spacing
one positive float per numpy axis in millimetres (``None`` = 1 per axis), connectivity as scikit-image (an
integer 1..ndim, ``None`` = ndim). The statistics' arguments (:mod:`helpers.stats`) have their checks here too: a
NaN policy (:func:`check_nan_policy`), a seed (:func:`as_rng`), a probability level (:func:`as_level`) and a count
(:func:`as_count`), a ranking direction (:func:`as_direction`), a random generator given as such
(:func:`as_generator`), a table's required columns (:func:`check_columns`) and a vector of finite numbers, alone
(:func:`as_vector`) or paired with a second one over the same units (:func:`as_paired_vectors`). This module
imports numpy only (a table is recognised by its ``columns``, not by importing pandas).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np

__all__ = [
    "as_mask", "as_mask_pair", "as_ignore", "as_spacing", "as_connectivity", "as_nonnegative", "as_positive",
    "as_int", "as_tolerance", "as_tolerances", "as_percentile", "as_penalty", "check_nan_policy", "as_rng",
    "as_level", "as_count", "as_direction", "as_generator", "check_columns", "as_vector", "as_paired_vectors",
]

_REAL = (numbers.Real, np.floating, np.integer)
_NAN_POLICIES = ("raise", "omit")


def _is_real(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, _REAL)


def as_mask(mask, name: str = "mask") -> np.ndarray:
    """A 2D or 3D non-empty boolean numpy array (no silent thresholding), returned unchanged."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of dtype bool, got {type(mask).__name__}")
    if mask.dtype != np.bool_:
        raise TypeError(f"{name} must have dtype bool, got dtype {mask.dtype}")
    if mask.ndim not in (2, 3):
        raise ValueError(f"{name} must be 2D (y, x) or 3D (z, y, x), got {mask.ndim}D with shape {mask.shape}")
    if mask.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {mask.shape}")
    return mask


def as_mask_pair(ref, pred, names: tuple[str, str] = ("ref", "pred")) -> tuple[np.ndarray, np.ndarray]:
    """Two masks (:func:`as_mask`) of the same shape: reference, then prediction."""
    ref = as_mask(ref, names[0])
    pred = as_mask(pred, names[1])
    if ref.shape != pred.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {names[0]} {ref.shape} and "
                         f"{names[1]} {pred.shape}")
    return ref, pred


def as_ignore(ignore, shape: tuple[int, ...], name: str = "ignore") -> np.ndarray | None:
    """None, or a mask (:func:`as_mask`) of the masks' ``shape``."""
    if ignore is None:
        return None
    ignore = as_mask(ignore, name)
    if ignore.shape != tuple(shape):
        raise ValueError(f"{name} must have the masks' shape {tuple(shape)}, got {ignore.shape}")
    return ignore


def as_spacing(spacing, ndim: int, name: str = "spacing") -> tuple[float, ...]:
    """None (1 per axis) or ``ndim`` finite positive numbers in numpy axis order, as a tuple of floats (mm)."""
    if spacing is None:
        return (1.0,) * ndim
    if isinstance(spacing, (str, bytes)) or not hasattr(spacing, "__len__"):
        raise TypeError(f"{name} must be a sequence of {ndim} positive numbers or None, got {spacing!r}")
    values = tuple(spacing)
    if len(values) != ndim:
        raise ValueError(f"{name} must have one value per axis ({ndim}), got {len(values)} values: {spacing!r}")
    out = []
    for value in values:
        if not _is_real(value):
            raise TypeError(f"{name} values must be real numbers, got {value!r} in {spacing!r}")
        value = float(value)
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} values must be finite and > 0, got {value!r} in {spacing!r}")
        out.append(value)
    return tuple(out)


def as_connectivity(connectivity, ndim: int, name: str = "connectivity") -> int:
    """An integer 1..ndim (scikit-image's orthogonal steps), ``None`` meaning ndim (full connectivity)."""
    if connectivity is None:
        return ndim
    if isinstance(connectivity, bool) or not isinstance(connectivity, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer in 1..{ndim} or None, got {connectivity!r}")
    if not 1 <= int(connectivity) <= ndim:
        raise ValueError(f"{name} must be in 1..{ndim} for a {ndim}D mask, got {connectivity!r}")
    return int(connectivity)


def as_nonnegative(value, name: str, *, unit: str) -> float:
    """A finite real number >= 0 (a tolerance, a distance, a severity) as float; errors name ``name`` and ``unit``."""
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number ({unit}), got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r} ({unit})")
    return value


def as_positive(value, name: str, *, allow_zero: bool = False) -> float:
    """A finite real number > 0 (>= 0 with ``allow_zero``) as float."""
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be finite and {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


def as_int(value, name: str, minimum: int) -> int:
    """An integer (not a bool) >= ``minimum``, as int."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def as_tolerance(tolerance, name: str = "tolerance") -> float:
    """A boundary tolerance: :func:`as_nonnegative` in mm (voxels without spacing)."""
    return as_nonnegative(tolerance, name, unit="mm, or voxels without spacing")


def as_tolerances(tolerances, name: str = "tolerances") -> tuple[float, ...]:
    """None (no extra tolerance) or a sequence of tolerances (:func:`as_tolerance`), as a tuple of floats."""
    if tolerances is None:
        return ()
    if isinstance(tolerances, (str, bytes)) or not isinstance(tolerances, Iterable):
        raise TypeError(f"{name} must be a sequence of numbers, got {tolerances!r}")
    return tuple(as_tolerance(t, name) for t in tolerances)


def as_percentile(percentile, name: str = "percentile") -> float:
    """A real number in [0, 100], as float."""
    if not _is_real(percentile):
        raise TypeError(f"{name} must be a real number in [0, 100], got {percentile!r}")
    percentile = float(percentile)
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"{name} must be in [0, 100], got {percentile!r}")
    return percentile


def as_penalty(penalty, *, default: float, name: str = "penalty") -> float:
    """The distance given to an undefined distance: ``default`` when None, else a finite number > 0 (mm)."""
    if penalty is None:
        return float(default)
    if not _is_real(penalty):
        raise TypeError(f"{name} must be a real number (mm) or None, got {penalty!r}")
    penalty = float(penalty)
    if not np.isfinite(penalty) or penalty <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {penalty!r}")
    return penalty


def check_nan_policy(nan_policy: str) -> None:
    """``nan_policy`` must be ``"raise"`` or ``"omit"`` (:mod:`helpers.stats.inference.wide`)."""
    if nan_policy not in _NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {_NAN_POLICIES}, got {nan_policy!r}")


def as_rng(seed) -> np.random.Generator:
    """The random generator of a ``seed``: a non-negative int (``numpy.random.default_rng(seed)``) or a
    ``numpy.random.Generator``, returned as is and consumed by the caller."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or a numpy.random.Generator, got {type(seed).__name__}: {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.default_rng(int(seed))


def as_level(value, name: str, *, below: float = 1.0) -> float:
    """A probability level strictly inside (0, 1) (``confidence``, ``alpha``), as float; with ``below``, strictly
    inside (0, below) (an equivalence test's alpha is below 0.5, so that its 1 - 2 alpha interval exists)."""
    bound = f"{below:g}"
    if not isinstance(value, (float, int, np.floating)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a float in (0, {bound}), got {value!r}")
    if not 0.0 < float(value) < below:
        raise ValueError(f"{name} must be in (0, {bound}), got {value!r}")
    return float(value)


def as_count(value, name: str, minimum: int = 1) -> int:
    """An integer (not a bool) >= ``minimum`` (``n_resamples``, ``k``, ``n_units``), as int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def as_direction(value, name: str = "higher_is_better") -> bool:
    """A ranking direction flag: ``True`` (higher is better, Dice) or ``False`` (lower is better, HD95).

    Raises
    ------
    TypeError
        If ``value`` is not a bool (``numpy.bool_`` accepted): a metric name or 0/1 is not silently read as one.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def as_generator(rng, name: str = "rng"):
    """A ``numpy.random.Generator`` given as such (the caller draws from it; a seed is not accepted here, so a
    sequence of calls shares one stream)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{name} must be a numpy.random.Generator (numpy.random.default_rng(seed)), got {rng!r}")
    return rng


def check_columns(table, columns: Iterable[str], name: str) -> None:
    """``table`` is a pandas DataFrame with ``columns``: else TypeError or ValueError naming ``name`` and what it
    has."""
    if type(table).__name__ != "DataFrame" or not hasattr(table, "columns"):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; has {list(table.columns)}")


def as_vector(values, name: str, *, minimum: int = 1) -> np.ndarray:
    """A 1-D vector of at least ``minimum`` finite real numbers (a list, a tuple, a numpy array, a pandas Series), as
    a new float64 array. Nothing is dropped: a NaN or an infinity is an error naming ``name``, its position (0-based,
    in the given order) and its value; so are a bool or non-numeric vector and one of the wrong shape."""
    if values is None or isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"{name} must be a 1-D sequence of real numbers, got {values!r}")
    try:
        array = np.asarray(values)
    except ValueError as error:  # ragged nesting
        raise ValueError(f"{name} must be a 1-D sequence of real numbers, got {values!r} ({error})") from None
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.integer)
                                       or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}: {values!r}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size < minimum:
        raise ValueError(f"{name} must have at least {minimum} value(s), got {array.size}")
    array = array.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        where = ", ".join(f"position {i}: {float(array[i])!r}" for i in bad[:5]) + (" ..." if bad.size > 5 else "")
        raise ValueError(f"{name} must be finite, got {bad.size} non-finite value(s) at {where}")
    return array


def as_paired_vectors(a, b, names: tuple[str, str] = ("a", "b"), *,
                      minimum: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Two vectors (:func:`as_vector`) of the same length, position i of both being the same unit (case): first,
    then second, as float64 arrays."""
    a = as_vector(a, names[0], minimum=minimum)
    b = as_vector(b, names[1], minimum=minimum)
    if a.size != b.size:
        raise ValueError(f"{names[0]} and {names[1]} must have the same length (one value per paired unit), got "
                         f"{names[0]} {a.size} and {names[1]} {b.size}")
    return a, b
