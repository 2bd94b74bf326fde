"""videolmm: evaluate and serve LLaVA-family video LMMs faithfully."""

__version__ = "0.1.0"
