"""Video-LLaVA-7B on transformers' VideoLlava classes: :mod:`.family`."""
