"""The methods paragraph of a run: every definitional choice its numbers rest on, in sentences an author can paste
into a paper, generated from the run's profile and the registries (never typed by hand, so it cannot drift from
the code).

What it states (one paragraph each): the boundary and the surface distances; the HD95 variant; ASSD (pooled) and
MASD; the tolerance of NSD and contour F1 in the unit of each dataset (mm where the images carry a spacing, px for
2D photographs without one) and what that is in voxels; the empty-mask penalty; lesions (connectivity, matching,
minimum overlap); size quartiles and their edges; the lesion set behind the primary per-lesion means; the
clean-up of predicted components; the bootstrap (resamples, interval, p-value, Holm family, minimum cases) and the
small-data study's tests; then the references (bibliography keys of ``book/references.bib``).

:func:`methods_markdown` is pure (a profile mapping in, markdown out); :func:`write_methods` writes it atomically
as ``results/methods.md``. Imports :mod:`helpers.base`, :mod:`helpers.metrics`, :mod:`helpers.data`,
:mod:`helpers.stats` and :mod:`helpers.analysis`.
"""

from __future__ import annotations

from collections.abc import Mapping

from helpers.analysis.units import LESION_SETS, MIN_LESIONS, PRIMARY_LESION_SET
from helpers.base.io import write_text
from helpers.data.datasets import DATASETS, display_name
from helpers.data.datasets import get as dataset_entry
from helpers.metrics.distances import DEFAULT_PERCENTILE, DEFAULT_TOLERANCE
from helpers.metrics.lesions import QUARTILES
from helpers.stats.bootstrap.comparisons import ALPHA, MIN_CASES

__all__ = ["METHODS_FILE", "REFERENCES", "PLAIN_CITATIONS", "distance_unit", "parameter", "methods_markdown", "write_methods"]

#: The file name of the methods paragraph in ``results/``.
METHODS_FILE = "methods.md"

#: The references the paragraph cites (keys of book/references.bib), with what each is cited for.
REFERENCES = {
    "smalllesion2026": "the small-lesion study whose claims are tested",
    "smallorgan2025": "the small-data study whose claims are tested",
    "maier-hein2024metrics": "metric definitions and their variants",
    "reinke2024pitfalls": "metric pitfalls on small structures",
    "nikolov2021surface": "surface Dice (NSD) at a tolerance",
    "efron1993bootstrap": "the bootstrap",
    "demsar2006": "Friedman and Nemenyi tests over data sets",
    "wiesenfarth2021challenger": "ranking stability under bootstrap",
}

#: How each reference reads in plain text (``results/methods.md``, to paste into a paper).
PLAIN_CITATIONS = {
    "smalllesion2026": "gene-universe-lab, 2026, clawRxiv:2604.00927",
    "smallorgan2025": "Konrad et al., 2025, arXiv:2509.05892",
    "maier-hein2024metrics": "Maier-Hein et al., 2024",
    "reinke2024pitfalls": "Reinke et al., 2024",
    "nikolov2021surface": "Nikolov et al., 2021",
    "efron1993bootstrap": "Efron and Tibshirani, 1993",
    "demsar2006": "Demšar, 2006",
    "wiesenfarth2021challenger": "Wiesenfarth et al., 2021",
}

_DEFAULT_CLEANUP = 1
_DEFAULT_BOOTSTRAP = 2000


def distance_unit(dataset: str) -> str:
    """The unit distances are reported in for ``dataset`` (the registry's ``distance_unit``: ``px`` for IDRiD's
    photographs, read without a physical spacing; ``mm`` otherwise)."""
    return dataset_entry(dataset).distance_unit


def parameter(profile: Mapping, section: str, name: str, default=None, *, dataset: str | None = None,
              study: bool = False):
    """The value of parameter ``name`` of ``section`` in ``profile``: a dataset's own override
    (``datasets.<dataset>.<section>.<name>``), else the shared one (``sections.<section>.<name>``, or
    ``study.<section>.<name>`` with ``study``), else ``default``."""
    if dataset is not None:
        own = ((profile.get("datasets") or {}).get(dataset) or {}).get(section) or {}
        if name in own:
            return own[name]
    shared = ((profile.get("study" if study else "sections") or {}).get(section) or {})
    return shared.get(name, default)


def _per_dataset(profile: Mapping, section: str, name: str, default) -> str:
    datasets = [d for d in (profile.get("datasets") or {}) if d in DATASETS]
    values = {d: parameter(profile, section, name, default, dataset=d) for d in datasets}
    if len(set(map(repr, values.values()))) <= 1:
        return f"{next(iter(values.values()), default)}"
    return ", ".join(f"{v} ({display_name(d)})" for d, v in values.items())


def methods_markdown(profile: Mapping, *, citations: str = "myst") -> str:
    """The methods paragraph of the run described by ``profile`` (a loaded profile mapping) as markdown;
    ``citations="myst"`` cites with MyST roles (the book), ``"text"`` in plain author-year text (a paper)."""
    if citations not in ("myst", "text"):
        raise ValueError(f"citations must be 'myst' or 'text', got {citations!r}")
    datasets = [d for d in (profile.get("datasets") or {}) if d in DATASETS]
    names = ", ".join(display_name(d) for d in datasets) or "none"
    units = "; ".join(f"{display_name(d)}: {distance_unit(d)}" for d in datasets)
    tol = f"{DEFAULT_TOLERANCE:g}"
    cleanup = _per_dataset(profile, "training", "min_component_voxels", _DEFAULT_CLEANUP)
    min_lesions = _per_dataset(profile, "stratification", "min_lesions", MIN_LESIONS)
    n_boot = _per_dataset(profile, "bootstrap", "n_bootstrap", _DEFAULT_BOOTSTRAP)
    alpha = _per_dataset(profile, "bootstrap", "alpha", ALPHA)
    min_cases = _per_dataset(profile, "bootstrap", "min_cases", MIN_CASES)
    small = (profile.get("study") or {}).get("small_data")
    percentile = f"{DEFAULT_PERCENTILE:g}"
    other_sets = ", ".join(f"`{s}`" for s in LESION_SETS if s != PRIMARY_LESION_SET)
    paragraphs = [
        "# Methods of this run",
        f"*Generated from profile `{profile.get('profile', '?')}` (seed {profile.get('seed', 0)}) and the metric "
        f"registry; datasets: {names}.*",
        "**Boundaries and distances.** The boundary of a mask is the set of its foreground voxels with at least one "
        "face-connected background neighbour (outside the image counts as background). Surface distances are "
        "Euclidean distances between voxel centres, scaled by the voxel spacing, from each boundary voxel of one "
        "mask to the nearest boundary voxel of the other; they are reported in each dataset's unit "
        f"({units or 'none'}: a photograph without a physical spacing is measured in pixels, never in mm).",
        f"**HD95** is the larger of the two directed {percentile}th percentiles of the surface distances (linear "
        "interpolation), as in MONAI and the WMH challenge; the 95th percentile of the two directed sets pooled "
        "(MedPy's `hd95`) is reported as a sensitivity column. **ASSD** pools both directed sets and divides by the "
        "total number of boundary voxels; **MASD**, the mean of the two directed means, is reported beside it "
        "{cite:p}`maier-hein2024metrics`.",
        f"**Tolerance.** NSD {{cite:p}}`nikolov2021surface` and contour F1 count a boundary voxel as correct when its "
        f"distance to the other boundary is at most {tol} in the dataset's unit ({tol} mm with a spacing, "
        f"{tol} px without one): one in-plane voxel at a 1 mm in-plane spacing, and fewer or more voxels at other "
        "spacings. Tolerances of 1, 2 and 3 voxels are reported as variants.",
        "**Empty masks.** Both masks empty: overlap metrics 1, distances 0. One mask empty: overlap metrics 0 and "
        "every distance set to a penalty, the diagonal of the image's field of view in the dataset's unit; every "
        "aggregate counts how many values hold the penalty.",
        "**Lesions.** A lesion is a connected component of the reference mask with full connectivity (8 neighbours "
        "in 2D, 26 in 3D); predicted components use the same connectivity. A reference lesion is detected when at "
        "least 1 of its voxels is predicted (minimum overlap 1 voxel); predicted voxels are attributed to the "
        "overlapping lesion whose region of influence they lie in, and a predicted component overlapping no "
        "reference lesion is a false positive.",
        f"**Size quartiles.** A lesion's size is its area fraction of the image (for volumes, its largest axial "
        f"cross-section over the slice area). The quartile edges ({', '.join(QUARTILES)}, Q1 the smallest) are the "
        "quartiles of the test set's reference lesions of each dataset (a lesion on an edge goes to the lower "
        "quartile); each dataset's edges are written to `results/<dataset>/quartile_edges.json` and shown in its "
        "stratification chapter.",
        f"**Lesion set.** Per-lesion means of the primary tables use the `{PRIMARY_LESION_SET}` set: the reference "
        f"lesions detected by every model, so that each model is measured on the same lesions; {other_sets} are "
        f"reported as sensitivity analyses. A lesion-level mean over fewer than {min_lesions} lesions is shown "
        "but not ranked.",
        f"**Clean-up.** Predicted components smaller than {cleanup} voxel(s) are removed, the same rule for every "
        "model; a clean-up sensitivity analysis re-evaluates the predictions at other thresholds.",
        f"**Bootstrap and tests.** Test cases are resampled with replacement ({n_boot} paired resamples, the same "
        "resamples for every model, lesions kept with their case) {cite:p}`efron1993bootstrap`; intervals are "
        "percentile intervals; a difference's p-value is a paired sign-flip test over cases, Holm-adjusted within "
        f"each dataset and lesion set at a family-wise level of {alpha}; a verdict needs at least {min_cases} "
        "test cases. The claims table adjusts its p-values with Holm within each study.",
    ]
    if small is not None:
        paragraphs.append(
            "**Small-data study.** Models are compared over images with the Friedman test (Iman-Davenport "
            "correction) and, when it rejects, the Nemenyi post-hoc test {cite:p}`demsar2006`; bootstrap intervals "
            f"of macro Dice use {small.get('n_bootstrap', _DEFAULT_BOOTSTRAP)} resamples and rank stability is "
            "read from bootstrap rank distributions {cite:p}`wiesenfarth2021challenger`; leave-one-out and 3-fold "
            f"cross-validation ({len(small.get('cv_seeds', [0]))} seed(s)) are compared "
            "{cite:p}`smallorgan2025`.")
    paragraphs.append("**Sources.** " + "; ".join(f"{{cite:t}}`{key}` ({what})" for key, what in REFERENCES.items())
                      + ".")
    text = "\n\n".join(paragraphs) + "\n"
    if citations == "text":
        for key, plain in PLAIN_CITATIONS.items():
            text = text.replace(f"{{cite:p}}`{key}`", f"({plain})").replace(f"{{cite:t}}`{key}`", plain)
    return text


def write_methods(ws, profile: Mapping):
    """Write :func:`methods_markdown` of ``profile`` as ``results/methods.md`` of workspace ``ws`` (atomically);
    returns the file."""
    return write_text(ws.results() / METHODS_FILE, methods_markdown(profile, citations="text"))
