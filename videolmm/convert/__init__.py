"""``videolmm convert``: original checkpoints → directories videolmm (and, where a stock class
fits, transformers) loads.

One module per source layout (:mod:`.llava_next_video`, :mod:`.llava_video_qwen2`,
:mod:`.llava_hound`), a shared streaming shard reader/writer (:mod:`.shards`), the key plan
(:mod:`.plan`) and the conversion manifest (:mod:`.manifest`). Nothing heavy is imported here.
"""

from __future__ import annotations

__all__: list[str] = []
