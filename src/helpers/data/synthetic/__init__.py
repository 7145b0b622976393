"""The synthetic stand-ins, written in exactly the real datasets' layouts so that the real readers read them.

Its modules: ``common`` (shared shapes and helpers), then one generator per layout: ``wmh``, ``lits``, ``idrid``.
This package re-exports the generators' API.
"""

from helpers.data.synthetic.wmh import WMH_SITES, WMH_RADIUS_MM, write_wmh
from helpers.data.synthetic.lits import LITS_RADIUS_MM, LITS_CONTRAST_HU, LITS_NOISE_HU, write_lits
from helpers.data.synthetic.idrid import IDRID_MIN_RADIUS, write_idrid

__all__ = [
    "WMH_SITES", "WMH_RADIUS_MM", "LITS_RADIUS_MM", "LITS_CONTRAST_HU", "LITS_NOISE_HU", "IDRID_MIN_RADIUS",
    "write_wmh", "write_lits", "write_idrid",
]
