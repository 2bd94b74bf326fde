"""LLaVA-Video-Qwen2: :mod:`.family` (the family), :mod:`.configuration` (``LlavaVideoQwen2Config``
and the token math), :mod:`.modeling` (pool after the projector, newlines) and :mod:`.processing`."""
