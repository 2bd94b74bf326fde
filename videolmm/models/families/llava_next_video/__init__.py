"""LLaVA-NeXT-Video on transformers' LlavaNextVideo classes: :mod:`.family` (the family),
:mod:`.configuration` (pool geometry, RoPE repair), :mod:`.processing` (the pooled processor)."""
