"""The synthetic declaration generator: trade profiles (facts) and one function per scheme."""

from ._generate import OUTPUT_COLUMNS, SCHEMES, generate
from ._profiles import PROFILES

__all__ = ["generate", "SCHEMES", "OUTPUT_COLUMNS", "PROFILES"]
