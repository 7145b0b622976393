"""The registry of the study's datasets: one frozen entry per dataset, the one place its facts live.

An entry binds what the rest of the package needs to know about a dataset: its names (``title`` for tables,
``caption`` for the book), ``modality`` and ``kind``, the real layout's finder and reader
(:mod:`helpers.data.layouts`), the type of its loader options, the synthetic generator written in that layout
(:mod:`helpers.data.synthetic`), its preprocessing recipe (:mod:`helpers.data.preprocessing`) and the paper's facts
about it (Section 4.5). Code that differs by dataset looks the entry up (:func:`get`) instead of branching on the
dataset's name.

Adding a dataset: write its finder and reader in :mod:`helpers.data.layouts` (with a :class:`LoaderOptions` subclass
for what defines its target), its generator in :mod:`helpers.data.synthetic`, then one :class:`Dataset` entry in
``REGISTRY`` below; tables, reports, the runner and the book learn of it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from helpers.data import synthetic
from helpers.data.layouts import (
    CaseFiles, IDRiDOptions, LiTSOptions, LoaderOptions, WMHOptions, find_idrid, find_lits, find_wmh, read_idrid,
    read_lits, read_wmh,
)
from helpers.data.preprocessing import (
    Recipe, describe_ct, describe_fundus, describe_mri, liver_region, normalize_ct, normalize_fundus, normalize_mri,
)

__all__ = ["PaperFacts", "Dataset", "REGISTRY", "DATASETS", "get", "display_name", "loader_options"]


@dataclass(frozen=True)
class PaperFacts:
    """What the paper reports about its copy of a dataset (Section 4.5, the dataset summary)."""

    name: str
    test_cases: int
    lesions: int
    q1_upper_percent: float


@dataclass(frozen=True)
class Dataset:
    """One dataset of the study.

    Attributes
    ----------
    name : str
        Registry key, used in folder names and profiles (``"wmh"``).
    display : str
        The name a reader sees on every page, table of contents and banner (``"WMH"``, ``"LiTS"``, ``"IDRiD"``):
        never the key upper-cased.
    title : str
        Short title for tables (``"WMH Challenge"``).
    caption : str
        The book's part caption (what, where, imaging).
    modality : str
        ``"MRI"``, ``"CT"`` or ``"Fundus"``.
    spatial_dims : int
        Dimensionality of a case's grid: 3 (volumes) or 2 (photographs).
    options : type
        The :class:`helpers.data.layouts.LoaderOptions` subclass defining the lesion target.
    find : callable
        ``find(root, options) -> list of CaseFiles`` for the real layout.
    read : callable
        ``read(files) -> Case``.
    generate : callable
        ``generate(root, *, seed, **sizes) -> dict``: the synthetic stand-in in the real layout.
    recipe : helpers.data.preprocessing.Recipe
        How its cases become training samples.
    target_notes : tuple of (key, text)
        What the dataset report (:func:`helpers.data.describe_cases`) says about the target and ignore region.
    ignore_region : bool
        Whether cases may carry an ignore mask (the report then lists the cases that do).
    lesion_types : bool
        Whether the reader reports lesions per lesion type (the report then sums them).
    paper : PaperFacts or None
        What the paper reports about it (``None``: a dataset the paper does not use).
    distance_unit : str
        The unit its distances are reported in: ``"mm"`` where cases carry a physical spacing, ``"px"`` for
        photographs read without one (IDRiD), so a figure or table never labels pixels as millimetres.
    """

    name: str
    display: str
    title: str
    caption: str
    modality: str
    spatial_dims: int
    options: type
    find: Callable[..., list]
    read: Callable[[CaseFiles], object]
    generate: Callable[..., dict]
    recipe: Recipe
    paper: PaperFacts | None = None
    target_notes: tuple[tuple[str, str], ...] = ()
    ignore_region: bool = False
    lesion_types: bool = False
    distance_unit: str = "mm"

    def loader_options(self, mapping=None) -> LoaderOptions:
        """This dataset's loader options from a profile's mapping (``None``: defaults), validated; an
        options object of the right type passes through."""
        if isinstance(mapping, LoaderOptions):
            if not isinstance(mapping, self.options):
                raise TypeError(f"loader options of dataset {self.name!r} must be {self.options.__name__}, "
                                f"got {type(mapping).__name__}")
            return mapping
        return self.options.from_mapping(mapping, dataset=self.name)


REGISTRY: dict[str, Dataset] = {
    entry.name: entry
    for entry in (
        Dataset(
            name="wmh", display="WMH", title="WMH Challenge", caption="WMH: white matter hyperintensities (brain MRI)",
            modality="MRI", spatial_dims=3, options=WMHOptions, find=find_wmh, read=read_wmh,
            generate=synthetic.write_wmh,
            recipe=Recipe("wmh", "volume", normalize_mri, describe_mri, options=("z_clip",)),
            paper=PaperFacts("WMH Challenge", test_cases=60, lesions=1964, q1_upper_percent=1.4),
            target_notes=(("ignore_meaning", "label 2 ('other pathology'): neither truth nor false positive"),),
            ignore_region=True,
        ),
        Dataset(
            name="lits", display="LiTS", title="LiTS", caption="LiTS: liver tumours (abdominal CT)",
            modality="CT", spatial_dims=3, options=LiTSOptions, find=find_lits, read=read_lits,
            generate=synthetic.write_lits,
            recipe=Recipe("lits", "volume", normalize_ct, describe_ct, options=("ct_window",),
                          region_of_interest=liver_region),
            paper=PaperFacts("LiTS-derived focal lesion subset", test_cases=70, lesions=2118, q1_upper_percent=1.6),
            target_notes=(("target_meaning", "label 2 (tumour); volumes without tumour have an empty target"),),
        ),
        Dataset(
            name="idrid", display="IDRiD", title="IDRiD", caption="IDRiD: retinal lesions (fundus photographs)",
            modality="Fundus", spatial_dims=2, options=IDRiDOptions, find=find_idrid, read=read_idrid,
            generate=synthetic.write_idrid,
            recipe=Recipe("idrid", "image", normalize_fundus, describe_fundus),
            paper=PaperFacts("IDRiD lesion benchmark", test_cases=81, lesions=1760, q1_upper_percent=1.5),
            target_notes=(("absent_meaning",
                           "a missing mask file means no lesion of that type in the image (empty mask)"),),
            lesion_types=True, distance_unit="px",
        ),
    )
}

#: The registered dataset names, in the study's order.
DATASETS: tuple[str, ...] = tuple(REGISTRY)


def get(name) -> Dataset:
    """The registry entry of ``name`` (error naming the known datasets otherwise); an entry is returned as it is,
    so a function resolves its ``dataset`` argument once, whichever it was given."""
    if isinstance(name, Dataset):
        return name
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    return REGISTRY[name]


def display_name(name: str) -> str:
    """The name a reader sees for dataset ``name``: the registry's display name (``"lits"`` -> ``"LiTS"``), and any
    other dataset (a user's, evaluated from its own folder) by the name it was given."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"dataset name must be a non-empty string, got {name!r}")
    return REGISTRY[name].display if name in REGISTRY else name


def loader_options(name: str, mapping=None) -> LoaderOptions:
    """The validated loader options of dataset ``name`` from a profile's mapping (``None``: the defaults),
    e.g. ``loader_options("idrid", {"lesion_types": ["MA", "HE"]})``. An unknown option raises a TypeError
    naming it and the allowed ones; a bad value a ValueError naming the option and the allowed values."""
    return get(name).loader_options(mapping)
