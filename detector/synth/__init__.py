"""The synthetic declaration generator: trade profiles (facts) and one function per scheme."""

from ._generate import OUTPUT_COLUMNS, SCHEMES, generate
from ._profiles import CONTROLLED_CODES, COVER_CODES, PROFILES, RARE_EARTH_CODES, Profile

__all__ = ["generate", "SCHEMES", "OUTPUT_COLUMNS", "PROFILES", "Profile", "COVER_CODES",
           "RARE_EARTH_CODES", "CONTROLLED_CODES"]
