"""The synthetic stand-ins, written in exactly the real datasets' layouts so that the real readers read them.

This package re-exports the generators' API.
"""

from helpers.data.synthetic.common import (
    WMH_SITES, WMH_RADIUS_MM, LITS_RADIUS_MM, LITS_CONTRAST_HU, LITS_NOISE_HU, IDRID_MIN_RADIUS, write_wmh,
    write_lits, write_idrid,
)

__all__ = [
    "WMH_SITES", "WMH_RADIUS_MM", "LITS_RADIUS_MM", "LITS_CONTRAST_HU", "LITS_NOISE_HU", "IDRID_MIN_RADIUS",
    "write_wmh", "write_lits", "write_idrid",
]
