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

A user's dataset (a plain folder of masks or an nnU-Net raw dataset, :mod:`helpers.data.generic`, evaluated by the
``evaluate`` command) is an entry of the same registry, added at run time by :func:`register_user` with
``data_source="user"``: its finder and reader are the generic layouts', it has no generator and no paper facts, and
it is evaluated only (every case is a test case). The entries of a workspace's user datasets are recorded in its
``user_datasets.json`` (:func:`register_workspace`), so that every process that opens the workspace (the command,
each section notebook) registers the same entries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from helpers.base.io import write_json
from helpers.data import synthetic
from helpers.data.layouts import (
    CaseFiles, IDRiDOptions, LiTSOptions, LoaderOptions, WMHOptions, find_idrid, find_lits, find_wmh, read_idrid,
    read_lits, read_wmh,
)
from helpers.data.generic import UserOptions, find_user, read_user
from helpers.data.preprocessing import (
    Recipe, describe_ct, describe_fundus, describe_mri, liver_region, normalize_ct, normalize_fundus, normalize_mri,
)

__all__ = ["PaperFacts", "Dataset", "REGISTRY", "DATASETS", "get", "display_name", "loader_options", "is_dataset",
           "known", "register_user", "register_workspace", "USER_DATASETS_FILE", "read_case_files",
           "is_user_dataset"]


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
    data_source : str
        ``"study"`` for the study's datasets, ``"user"`` for a user's dataset evaluated from its own folder
        (:func:`register_user`): results say which data produced them.
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
    data_source: str = "study"
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

#: The study's dataset names, in the study's order (user datasets are added to ``REGISTRY``, not here: ask
#: :func:`is_dataset` / :func:`known`).
DATASETS: tuple[str, ...] = tuple(REGISTRY)
#: The file of a workspace that records its user datasets (name -> ``register_user`` arguments).
USER_DATASETS_FILE = "user_datasets.json"


def is_dataset(name) -> bool:
    """Whether ``name`` is a registered dataset: one of the study's or a user dataset registered in this process."""
    return isinstance(name, str) and name in REGISTRY


def known() -> tuple[str, ...]:
    """Every registered dataset name: the study's, then the user datasets registered in this process."""
    return tuple(REGISTRY)


def _no_generator(root, **_):
    raise ValueError("a user dataset has no synthetic stand-in: point data_root at its folder")


def _user_find(name: str):
    def find(root, options):
        return [replace(f, dataset=name) for f in find_user(root, options)]
    return find


def _normalize_user(case) -> "np.ndarray":  # noqa: F821 - numpy arrays, documented
    image = case.image.astype("float32")
    span = float(image.max() - image.min()) if image.size else 0.0
    image = (image - image.min()) / span if span > 0 else image * 0
    return image[..., None]


def _describe_user() -> dict:
    return {"method": "min-max to [0, 1] of the image (or of the reference mask where the layout has no image)",
            "note": "a user dataset is evaluated only; nothing is trained on it"}


def register_user(name: str, *, spatial_dims: int, display: str | None = None, caption: str = "",
                  modality: str = "unknown", ignore_region: bool = False) -> Dataset:
    """Add (or replace) the entry of a user's dataset, ``data_source="user"``: the generic layouts' finder and
    reader (:mod:`helpers.data.generic`), the options type :class:`helpers.data.generic.UserOptions`, no generator,
    no paper facts. A study dataset's name cannot be taken."""
    if not isinstance(name, str) or not name or "/" in name or name.startswith((".", "_")):
        raise ValueError(f"user dataset name must be a plain folder name, got {name!r}")
    if name in DATASETS:
        raise ValueError(f"user dataset name {name!r} is a study dataset's; choose another")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    entry = Dataset(
        name=name, display=display or name, title=display or name,
        caption=caption or f"{display or name}: a user's dataset (evaluated only)", modality=modality,
        spatial_dims=spatial_dims, options=UserOptions, find=_user_find(name), read=read_user,
        generate=_no_generator,
        recipe=Recipe(name, "volume" if spatial_dims == 3 else "image", _normalize_user, _describe_user),
        target_notes=(("target_meaning", "the chosen label value(s) of the reference masks"),
                      ("data_source", "user: a user's dataset, evaluated only (every case is a test case)")),
        ignore_region=ignore_region, data_source="user")
    REGISTRY[name] = entry
    return entry


def register_workspace(root, entries: dict | None = None) -> tuple[str, ...]:
    """Register the user datasets recorded in ``<root>/user_datasets.json`` (first writing ``entries`` there,
    name -> :func:`register_user` keyword arguments, when given); returns their names."""
    path = Path(root) / USER_DATASETS_FILE
    if entries is not None:
        recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        recorded.update(entries)
        write_json(recorded, path)
    if not path.is_file():
        return ()
    recorded = json.loads(path.read_text(encoding="utf-8"))
    for name, kwargs in recorded.items():
        register_user(name, **kwargs)
    return tuple(recorded)


def get(name) -> Dataset:
    """The registry entry of ``name`` (error naming the known datasets otherwise); an entry is returned as it is,
    so a function resolves its ``dataset`` argument once, whichever it was given."""
    if isinstance(name, Dataset):
        return name
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"dataset must be one of {known()}, got {name!r}")
    return REGISTRY[name]


def read_case_files(files, *, image: bool = True):
    """Read one case listed by a finder (``helpers.data.find_cases``) through its entry; a user dataset's case
    (``data_source="user"``) without its image when ``image`` is False (evaluation needs none)."""
    spec = get(files.dataset)
    return spec.read(files, image=image) if spec.data_source == "user" else spec.read(files)


def is_user_dataset(name) -> bool:
    """Whether ``name`` is a user's dataset of the registry (evaluated only)."""
    return is_dataset(name) and REGISTRY[name].data_source == "user"


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
