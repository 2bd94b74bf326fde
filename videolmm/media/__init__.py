"""Media: open a source, sample frames, cache them. Pure Python + PyAV/decord; no torch, no transformers."""
