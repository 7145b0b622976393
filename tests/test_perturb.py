"""Tests of helpers.evaluation.perturb: each operator on a disk or sphere with its hand-derived effect, cross-checks of
the morphology against scipy.ndimage, per-lesion application, edge cases and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from helpers.evaluation import perturb as P


def disk(radius, size=61, centre=None):
    c = (size // 2, size // 2) if centre is None else centre
    yy, xx = np.mgrid[:size, :size]
    return (yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= radius**2


def sphere(radius, size=31):
    c = size // 2
    zz, yy, xx = np.mgrid[:size, :size, :size]
    return (zz - c) ** 2 + (yy - c) ** 2 + (xx - c) ** 2 <= radius**2


def centroid(mask, spacing=None):
    spacing = np.ones(mask.ndim) if spacing is None else np.asarray(spacing)
    return np.argwhere(mask).mean(axis=0) * spacing


def n_components(mask):
    return ndimage.label(mask, structure=np.ones((3,) * mask.ndim))[1]


def random_masks(seed, n=5, shape=(24, 24)):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield ndimage.binary_opening(rng.random(shape) < 0.55)


# ------------------------------------------------------------------------------------------------- offset
def test_offset_axis_aligned_moves_centroid_by_d():
    # disk of radius 10 moved 3 voxels along +x: centroid moves by (0, 3), no voxel lost (far from the border)
    ref = disk(10)
    out = P.offset(ref, 3.0, direction=(0, 1))
    np.testing.assert_allclose(centroid(out) - centroid(ref), [0.0, 3.0], atol=1e-12)
    assert out.sum() == ref.sum()


def test_offset_oblique_direction_rounds_to_whole_voxels():
    # d = 2*sqrt(2) along (1, 1)/sqrt(2) is exactly (2, 2) voxels: the centroid moves by |(2, 2)| = d
    ref = disk(8)
    out = P.offset(ref, 2 * math.sqrt(2), direction=(1, 1))
    shift = centroid(out) - centroid(ref)
    np.testing.assert_allclose(shift, [2.0, 2.0], atol=1e-12)
    assert np.linalg.norm(shift) == pytest.approx(2 * math.sqrt(2))


def test_offset_sphere_3d_moves_centroid_by_d():
    ref = sphere(6)
    out = P.offset(ref, 4.0, direction=(-1, 0, 0))
    np.testing.assert_allclose(centroid(out) - centroid(ref), [-4.0, 0.0, 0.0], atol=1e-12)


def test_offset_anisotropic_spacing_converts_mm_to_voxels():
    # spacing 2 mm along y: a 4 mm shift along y is 2 voxels; the physical centroid moves by 4 mm
    ref = disk(6)
    out = P.offset(ref, 4.0, direction=(1, 0), spacing=(2.0, 1.0))
    np.testing.assert_allclose(centroid(out, (2.0, 1.0)) - centroid(ref, (2.0, 1.0)), [4.0, 0.0], atol=1e-12)


def test_translate_out_of_the_image_is_lost():
    ref = np.zeros((5, 5), dtype=bool)
    ref[2, 3:] = True  # two pixels, the right one on the border
    out = P.translate(ref, (0, 1))
    assert out.sum() == 1 and out[2, 4]
    assert not P.translate(ref, (0, 10)).any()


def test_translate_rounds_halves_to_even():
    ref = np.zeros((7, 7), dtype=bool)
    ref[3, 3] = True
    assert P.translate(ref, (0, 0.5))[3, 3]  # rint(0.5) = 0
    assert P.translate(ref, (0, 1.5))[3, 5]  # rint(1.5) = 2


# ------------------------------------------------------------------------------------------ dilate / erode
def test_dilation_by_one_grows_disk_radius_by_one():
    # the extreme pixels along the axes move out by exactly one; the area-equivalent radius grows by ~1
    ref = disk(10)
    out = P.dilate(ref, 1.0)
    rows = np.flatnonzero(out.any(axis=1))
    assert (rows.min(), rows.max()) == (30 - 11, 30 + 11)
    r_eq = lambda m: math.sqrt(m.sum() / math.pi)  # noqa: E731
    assert r_eq(out) - r_eq(ref) == pytest.approx(1.0, abs=0.1)


def test_erosion_by_one_shrinks_disk_radius_by_one():
    ref = disk(10)
    out = P.erode(ref, 1.0)
    rows = np.flatnonzero(out.any(axis=1))
    assert (rows.min(), rows.max()) == (30 - 9, 30 + 9)
    r_eq = lambda m: math.sqrt(m.sum() / math.pi)  # noqa: E731
    assert r_eq(ref) - r_eq(out) == pytest.approx(1.0, abs=0.1)


def test_dilate_erode_match_scipy_with_ball_structures():
    # radius 1 is the cross (connectivity 1), radius sqrt(2) the full 3x3 square; erosion with border_value=0
    cross = ndimage.generate_binary_structure(2, 1)
    square = ndimage.generate_binary_structure(2, 2)
    for m in random_masks(0):
        np.testing.assert_array_equal(P.dilate(m, 1.0), ndimage.binary_dilation(m, cross))
        np.testing.assert_array_equal(P.erode(m, 1.0), ndimage.binary_erosion(m, cross, border_value=0))
        np.testing.assert_array_equal(P.dilate(m, math.sqrt(2)), ndimage.binary_dilation(m, square))
        np.testing.assert_array_equal(P.erode(m, math.sqrt(2)), ndimage.binary_erosion(m, square, border_value=0))


def test_erode_anisotropic_spacing_matches_scipy_ellipse():
    # spacing (1, 2) mm, radius 2 mm: offsets with dy^2 + (2 dx)^2 <= 4 -> dy in -2..2 at dx = 0, dx = +-1 at dy = 0
    structure = np.zeros((5, 3), dtype=bool)
    structure[:, 1] = True
    structure[2, :] = True
    for m in random_masks(1):
        np.testing.assert_array_equal(
            P.erode(m, 2.0, spacing=(1.0, 2.0)), ndimage.binary_erosion(m, structure, border_value=0)
        )
        np.testing.assert_array_equal(P.dilate(m, 2.0, spacing=(1.0, 2.0)), ndimage.binary_dilation(m, structure))


def test_erosion_is_dual_of_dilation_away_from_the_border():
    for m in random_masks(2):
        m[[0, -1], :] = False
        m[:, [0, -1]] = False
        np.testing.assert_array_equal(P.erode(m, 2.5), ~P.dilate(~m, 2.5))


def test_dilation_scales_with_spacing():
    # doubling the spacing and the radius is the same operation in voxels
    for m in random_masks(3):
        np.testing.assert_array_equal(P.dilate(m, 3.0, spacing=(2.0, 2.0)), P.dilate(m, 1.5))


def test_erosion_from_the_image_border():
    full = np.ones((5, 5), dtype=bool)
    out = P.erode(full, 1.0)
    assert out.sum() == 9 and out[1:4, 1:4].all()  # outside the image is background


def test_severity_zero_is_identity():
    m = disk(5)
    for name in ("dilate", "erode", "smooth", "protrusions", "one_side", "offset"):
        np.testing.assert_array_equal(P.perturb_lesions(m, name, 0.0, seed=3), m)


# -------------------------------------------------------------------------------------------------- smooth
def test_smooth_removes_disk_smaller_than_its_blur():
    # blurred disk centre = 1 - exp(-r^2 / (2 s^2)): r = 10, s = 10 -> 0.39 < 0.5 (vanishes);
    # s = 6 -> 1 - exp(-1.39) = 0.75 (survives)
    ref = disk(10, size=101)
    assert not P.smooth(ref, 10.0).any()
    kept = P.smooth(ref, 6.0)
    assert kept[50, 50] and kept.sum() < ref.sum()


def test_smooth_rounds_a_square_corner():
    sq = np.zeros((41, 41), dtype=bool)
    sq[10:31, 10:31] = True
    out = P.smooth(sq, 3.0)
    assert not out[10, 10]  # the corner is cut
    assert out[20, 10] and out[10, 20]  # the middles of the edges stay (straight edge: value > 0.5)


# --------------------------------------------------------------------------------------------- protrusions
def test_remove_protrusions_cuts_thin_line_keeps_core():
    ref = disk(8)
    ref[30, 39:52] = True  # a one-pixel-wide protrusion of length 13 from the disk's right edge
    out = P.remove_protrusions(ref, 3.0)
    assert not out[30, 40:52].any()
    assert (out & disk(8)).sum() >= 0.95 * disk(8).sum()
    assert out.sum() < disk(8).sum() + 1


def test_remove_protrusions_keeps_coreless_lesion():
    line = np.zeros((20, 20), dtype=bool)
    line[10, 2:18] = True  # thinner than the opening everywhere: left unchanged (policy)
    np.testing.assert_array_equal(P.remove_protrusions(line, 3.0), line)


# ------------------------------------------------------------------------------------------------ fragment
@pytest.mark.parametrize("seed", range(6))
def test_fragment_one_cut_gives_two_pieces(seed):
    ref = disk(10)
    out = P.fragment(ref, 0.0, n_cuts=1, rng=np.random.default_rng(seed))
    assert n_components(ref) == 1 and n_components(out) == 2
    assert not (out & ~ref).any()


@pytest.mark.parametrize("seed", range(4))
def test_fragment_two_cuts_give_four_pieces_2d_and_3d(seed):
    assert n_components(P.fragment(disk(10), 1.0, n_cuts=2, rng=np.random.default_rng(seed))) == 4
    assert n_components(P.fragment(sphere(9), 1.0, n_cuts=2, rng=np.random.default_rng(seed))) == 4


def test_fragment_width_removes_a_band():
    # a cut of width w removes about 2 r w pixels of a disk (chord length 2r times width)
    ref = disk(20, size=81)
    thin = P.fragment(ref, 0.0, n_cuts=1, rng=np.random.default_rng(0))
    wide = P.fragment(ref, 4.0, n_cuts=1, rng=np.random.default_rng(0))
    assert (ref.sum() - wide.sum()) == pytest.approx(2 * 20 * 4, rel=0.15)
    assert wide.sum() < thin.sum()


# ----------------------------------------------------------------------------------------------- one side
def test_erode_one_side_on_disk_is_intersection_with_shifted_disk():
    # segment erosion of a convex set = its intersection with the set moved by -depth * u
    ref = disk(10)
    out = P.erode_one_side(ref, 4.0, direction=(0, 1))
    np.testing.assert_array_equal(out, ref & P.translate(ref, (0, -4)))
    cols_ref, cols_out = np.flatnonzero(ref.any(axis=0)), np.flatnonzero(out.any(axis=0))
    assert cols_out.max() == cols_ref.max() - 4 and cols_out.min() == cols_ref.min()


def test_erode_one_side_keeps_opposite_side():
    ref = sphere(8)
    out = P.erode_one_side(ref, 3.0, direction=(1, 0, 0))
    z = np.flatnonzero(ref.any(axis=(1, 2)))
    zo = np.flatnonzero(out.any(axis=(1, 2)))
    assert zo.min() == z.min() and zo.max() == z.max() - 3


# -------------------------------------------------------------------------------------------------- blobs
def test_add_blobs_adds_one_component_of_known_size_at_the_gap():
    # digital disk of radius 2: 1 + 4 (axis 1) + 4 (diagonal) + 4 (axis 2) = 13 pixels
    ref = disk(6)
    out = P.add_blobs(ref, 2.0, gap_mm=3.0, rng=np.random.default_rng(0))
    assert n_components(out) == 2
    assert (out & ref).sum() == ref.sum()
    blob = out & ~ref
    assert blob.sum() == 13
    distance = ndimage.distance_transform_edt(~ref)
    assert distance[blob].min() >= 3.0 - 1e-9


def test_add_blobs_without_room_places_none():
    full = np.ones((6, 6), dtype=bool)
    np.testing.assert_array_equal(P.add_blobs(full, 1.0, rng=np.random.default_rng(0)), full)


# ------------------------------------------------------------------------------------------ perturb_lesions
def two_disks():
    m = disk(6, size=60, centre=(15, 15)) | disk(4, size=60, centre=(40, 42))
    return m


def test_perturb_lesions_local_ops_equal_whole_mask_ops():
    # dilation and erosion commute with the union of well separated lesions
    m = two_disks()
    np.testing.assert_array_equal(P.perturb_lesions(m, "dilate", 2.0), P.dilate(m, 2.0))
    np.testing.assert_array_equal(P.perturb_lesions(m, "erode", 1.5), P.erode(m, 1.5))


def test_perturb_lesions_fraction_zero_is_identity():
    m = two_disks()
    np.testing.assert_array_equal(P.perturb_lesions(m, "offset", 3.0, fraction=0.0), m)


def test_perturb_lesions_offset_each_lesion_by_d_with_stable_direction():
    # every lesion's centroid moves by about d (rounding: at most sqrt(2)/2 off), in the same direction at
    # severities 2 and 4 (common random numbers)
    m = two_disks()
    lab, _ = ndimage.label(m)
    shifts = {}
    for d in (2.0, 4.0):
        out = P.perturb_lesions(m, "offset", d, seed=5)
        lab_out, n = ndimage.label(out)
        assert n == 2
        for i in (1, 2):
            moved = [centroid(lab_out == j) - centroid(lab == i) for j in (1, 2)]
            best = min(moved, key=np.linalg.norm)
            assert np.linalg.norm(best) == pytest.approx(d, abs=math.sqrt(2) / 2)
            shifts[(d, i)] = best
    for i in (1, 2):
        cos = shifts[(2.0, i)] @ shifts[(4.0, i)] / np.linalg.norm(shifts[(2.0, i)]) / np.linalg.norm(shifts[(4.0, i)])
        assert cos > 0.9


def test_perturb_lesions_blobs_add_one_per_lesion():
    m = two_disks()
    out = P.perturb_lesions(m, "blobs", 1.0, seed=0, options={"gap_mm": 3.0})
    assert n_components(out) == 4
    assert (out & m).sum() == m.sum()


def test_perturb_lesions_is_deterministic_and_pure():
    m = two_disks()
    copy = m.copy()
    a = P.perturb_lesions(m, "fragment", 1.0, seed=2)
    b = P.perturb_lesions(m, "fragment", 1.0, seed=2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(m, copy)


@pytest.mark.parametrize("name", sorted(P.FAILURE_MODES))
def test_every_mode_maps_empty_to_empty(name):
    empty = np.zeros((10, 12), dtype=bool)
    assert not P.perturb_lesions(empty, name, 2.0).any()


@pytest.mark.parametrize("name", sorted(P.FAILURE_MODES))
def test_every_mode_works_in_3d_with_anisotropic_spacing(name):
    ref = np.zeros((9, 30, 30), dtype=bool)
    zz, yy, xx = np.mgrid[:9, :30, :30]
    ref |= ((zz - 4) * 3.0) ** 2 + (yy - 15) ** 2 + (xx - 15) ** 2 <= 64
    ref[4, 15, 23:28] = True  # a one-voxel-wide spike, so that "protrusions" has something to remove
    out = P.perturb_lesions(ref, name, 2.0, spacing=(3.0, 1.0, 1.0), seed=1)
    assert out.shape == ref.shape and out.dtype == bool and out.any()
    assert not np.array_equal(out, ref)


# ------------------------------------------------------------------------------------------------- errors
def test_errors_name_the_argument():
    m = disk(4, size=15)
    with pytest.raises(ValueError, match="radius_mm must be finite and >= 0"):
        P.dilate(m, -1.0)
    with pytest.raises(TypeError, match="radius_mm must be a real number"):
        P.erode(m, "1")
    with pytest.raises(TypeError, match="mask must have dtype bool"):
        P.dilate(m.astype(np.uint8), 1.0)
    with pytest.raises(ValueError, match="direction must be a non-zero vector"):
        P.offset(m, 1.0, direction=(0, 0))
    with pytest.raises(ValueError, match="direction must have one value per axis"):
        P.offset(m, 1.0, direction=(0, 0, 1))
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        P.fragment(m, 1.0, rng=0)
    with pytest.raises(ValueError, match="n_cuts must be an integer >= 1"):
        P.fragment(m, 1.0, n_cuts=0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="mode must be one of"):
        P.perturb_lesions(m, "melt", 1.0)
    with pytest.raises(ValueError, match="fraction must be in"):
        P.perturb_lesions(m, "erode", 1.0, fraction=1.5)
    with pytest.raises(ValueError, match=r"options \['n_cuts'\] are not options of mode 'erode'"):
        P.perturb_lesions(m, "erode", 1.0, options={"n_cuts": 2})
    with pytest.raises(ValueError, match="spacing must have one value per axis"):
        P.dilate(m, 1.0, spacing=(1.0,))


def test_dilation_and_erosion_are_monotone_and_bracket_the_mask():
    for m in random_masks(4):
        small, large = P.dilate(m, 1.0), P.dilate(m, 2.5)
        assert not (m & ~small).any() and not (small & ~large).any()
        inner, innermost = P.erode(m, 1.0), P.erode(m, 2.5)
        assert not (inner & ~m).any() and not (innermost & ~inner).any()


def test_protrusion_removal_and_one_side_never_add_voxels():
    for m in random_masks(5):
        assert not (P.remove_protrusions(m, 3.0) & ~m).any()
        assert not (P.erode_one_side(m, 2.5, direction=(1, 2)) & ~m).any()
        assert not (P.fragment(m, 1.0, rng=np.random.default_rng(0)) & ~m).any()
