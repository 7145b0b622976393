"""Tests of helpers.base.checks: one validator per kind of argument, errors naming the argument and the bad value.
(The import rules of the package are tests/test_architecture.py's.)"""

from __future__ import annotations


import numpy as np
import pytest

from helpers.base import checks



def test_mask_and_pair():
    good = np.zeros((3, 3), bool)
    assert checks.as_mask(good) is good
    with pytest.raises(TypeError, match="pred must have dtype bool, got dtype uint8"):
        checks.as_mask(good.astype(np.uint8), "pred")
    with pytest.raises(TypeError, match="mask must be a numpy.ndarray of dtype bool, got list"):
        checks.as_mask([[True]])
    with pytest.raises(ValueError, match=r"must be 2D \(y, x\) or 3D \(z, y, x\), got 1D"):
        checks.as_mask(np.zeros(3, bool))
    with pytest.raises(ValueError, match="must not be empty"):
        checks.as_mask(np.zeros((0, 3), bool))
    with pytest.raises(ValueError, match=r"ref and pred must have the same shape, got ref \(3, 3\) and pred \(3, 4\)"):
        checks.as_mask_pair(good, np.zeros((3, 4), bool))
    with pytest.raises(ValueError, match=r"ignore must have the masks' shape \(3, 3\), got \(2, 2\)"):
        checks.as_ignore(np.zeros((2, 2), bool), (3, 3))
    assert checks.as_ignore(None, (3, 3)) is None


def test_spacing():
    assert checks.as_spacing(None, 3) == (1.0, 1.0, 1.0)
    assert checks.as_spacing((3, np.float32(0.5)), 2) == (3.0, 0.5)
    with pytest.raises(ValueError, match=r"spacing must have one value per axis \(2\), got 3 values"):
        checks.as_spacing((1, 1, 1), 2)
    with pytest.raises(ValueError, match="spacing values must be finite and > 0, got 0.0"):
        checks.as_spacing((1, 0), 2)
    with pytest.raises(TypeError, match="voxel_mm values must be real numbers, got True"):
        checks.as_spacing((1, True), 2, "voxel_mm")
    with pytest.raises(TypeError, match="spacing must be a sequence"):
        checks.as_spacing("1,1", 2)


def test_connectivity_and_numbers():
    assert checks.as_connectivity(None, 3) == 3 and checks.as_connectivity(np.int64(1), 2) == 1
    with pytest.raises(ValueError, match="connectivity must be in 1..2 for a 2D mask, got 3"):
        checks.as_connectivity(3, 2)
    with pytest.raises(TypeError, match="connectivity must be an integer in 1..2 or None, got 1.5"):
        checks.as_connectivity(1.5, 2)
    assert checks.as_tolerance(0) == 0.0
    with pytest.raises(ValueError, match=r"tolerance must be finite and >= 0, got -1.0 \(mm"):
        checks.as_tolerance(-1)
    assert checks.as_tolerances(None) == () and checks.as_tolerances([1, 2]) == (1.0, 2.0)
    with pytest.raises(TypeError, match="tolerances must be a sequence of numbers"):
        checks.as_tolerances(2.0)
    with pytest.raises(ValueError, match="radius must be finite and > 0, got 0.0"):
        checks.as_positive(0, "radius")
    assert checks.as_positive(0, "gap", allow_zero=True) == 0.0
    with pytest.raises(TypeError, match="n_cuts must be an integer >= 1, got True"):
        checks.as_int(True, "n_cuts", 1)
    with pytest.raises(ValueError, match="percentile must be in \\[0, 100\\], got 101.0"):
        checks.as_percentile(101)
    assert checks.as_penalty(None, default=5.0) == 5.0 and checks.as_penalty(2, default=5.0) == 2.0
    with pytest.raises(ValueError, match="penalty must be finite and > 0, got 0.0"):
        checks.as_penalty(0, default=5.0)


def test_statistics_arguments():
    # the branches the statistics' callers (tests/test_inference.py, tests/test_bootstrap.py) do not reach
    rng = np.random.default_rng(1)
    assert checks.as_rng(rng) is rng
    assert checks.as_rng(np.int64(3)).integers(0, 10**6) == np.random.default_rng(3).integers(0, 10**6)
    with pytest.raises(ValueError, match="seed must be non-negative, got -1"):
        checks.as_rng(-1)
    with pytest.raises(TypeError, match="seed must be an int or a numpy.random.Generator, got bool: True"):
        checks.as_rng(True)
    assert checks.as_level(np.float32(0.5), "alpha") == 0.5
    with pytest.raises(TypeError, match="alpha must be a float in \\(0, 1\\), got True"):
        checks.as_level(True, "alpha")
    with pytest.raises(ValueError, match="confidence must be in \\(0, 1\\), got 1"):
        checks.as_level(1, "confidence")
    assert checks.as_count(np.int64(0), "k", minimum=0) == 0
    with pytest.raises(TypeError, match="k must be an int, got float: 2.0"):
        checks.as_count(2.0, "k")
    with pytest.raises(TypeError, match="k must be an int, got bool: True"):
        checks.as_count(True, "k")
    assert checks.check_nan_policy("omit") is None
    with pytest.raises(ValueError, match="nan_policy must be one of \\('raise', 'omit'\\), got 'drop'"):
        checks.check_nan_policy("drop")


def test_direction_generator_and_table_columns():
    import pandas as pd

    assert checks.as_direction(np.bool_(True)) is True and checks.as_direction(False) is False
    with pytest.raises(TypeError, match="higher_is_better must be True or False, got 1"):
        checks.as_direction(1)
    rng = np.random.default_rng(0)
    assert checks.as_generator(rng) is rng
    with pytest.raises(TypeError, match=r"rng must be a numpy.random.Generator \(numpy.random.default_rng\(seed\)\), "
                                        r"got 3"):
        checks.as_generator(3)
    table = pd.DataFrame({"model": ["a"], "value": [1.0]})
    checks.check_columns(table, ["model", "value"], "scores")
    with pytest.raises(ValueError, match=r"scores lacks columns \['metric'\]; has \['model', 'value'\]"):
        checks.check_columns(table, ["model", "metric"], "scores")
    with pytest.raises(TypeError, match="scores must be a pandas DataFrame, got dict"):
        checks.check_columns({"model": ["a"]}, ["model"], "scores")


def test_level_below_and_vectors():
    import pandas as pd

    assert checks.as_level(0.05, "alpha", below=0.5) == 0.05
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 0.5\), got 0.5"):
        checks.as_level(0.5, "alpha", below=0.5)
    with pytest.raises(TypeError, match=r"alpha must be a float in \(0, 0.5\), got '0.05'"):
        checks.as_level("0.05", "alpha", below=0.5)
    vector = checks.as_vector(pd.Series([1, 2, 3], index=[7, 8, 9]), "a")
    assert vector.dtype == np.float64 and vector.tolist() == [1.0, 2.0, 3.0]
    source = np.array([0.5, 0.25])
    assert checks.as_vector(source, "a") is not source  # a new array: the caller's data is never modified
    with pytest.raises(ValueError, match=r"b must be finite, got 1 non-finite value\(s\) at position 2: nan"):
        checks.as_vector([0.1, 0.2, float("nan")], "b")
    with pytest.raises(ValueError, match=r"a must be finite, got 2 non-finite value\(s\) at position 0: inf, "
                                         r"position 3: nan"):
        checks.as_vector(np.array([np.inf, 0.0, 1.0, np.nan]), "a")
    with pytest.raises(TypeError, match="a must hold real numbers, got dtype bool"):
        checks.as_vector([True, False], "a")
    with pytest.raises(TypeError, match="a must hold real numbers, got dtype object"):
        checks.as_vector([0.1, None], "a")
    with pytest.raises(TypeError, match="a must be a 1-D sequence of real numbers, got 0.5"):
        checks.as_vector(0.5, "a")
    with pytest.raises(TypeError, match="a must be a 1-D sequence of real numbers, got '0.5'"):
        checks.as_vector("0.5", "a")
    with pytest.raises(ValueError, match=r"a must be 1-D, got shape \(2, 2\)"):
        checks.as_vector(np.zeros((2, 2)), "a")
    with pytest.raises(ValueError, match=r"a must have at least 1 value\(s\), got 0"):
        checks.as_vector([], "a")
    a, b = checks.as_paired_vectors([1, 2], np.array([3.0, 4.0]), ("dice_a", "dice_b"))
    assert a.tolist() == [1.0, 2.0] and b.tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match=r"dice_a and dice_b must have the same length \(one value per paired "
                                         r"unit\), got dice_a 2 and dice_b 3"):
        checks.as_paired_vectors([1, 2], [1, 2, 3], ("dice_a", "dice_b"))
    with pytest.raises(ValueError, match=r"y must be finite, got 1 non-finite value\(s\) at position 1: nan"):
        checks.as_paired_vectors([1, 2], [1, np.nan], ("x", "y"))
