"""An example third-party videolmm plugin.

It registers, through the ``videolmm`` entry-point group (see ``pyproject.toml``):

- the sampler ``segment_middle`` (Video-ChatGPT's middle frame of F equal segments),
- the family ``llava_onevision_video`` and its template ``onevision_chat``,
- a ``resolve_family`` answer for ``model_type == "llava_onevision"`` checkpoints,
- a ``generate_batch`` wrapper that records the wall time and size of every batch.

Nothing here imports torch or transformers at import time.
"""

from __future__ import annotations

__version__ = "0.1.0"
