"""mesalab: a JAX laboratory for learned optimization.

Train a learned algorithm with a base optimizer, then measure what it optimizes and whether that
objective is robustly aligned with the base objective or only pseudo-aligned under distributional shift.
"""

__version__ = "0.1.0"

from mesalab.errors import MesalabError  # noqa: E402

__all__ = ["MesalabError", "__version__"]
