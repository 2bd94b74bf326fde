"""LLaVA-Hound: :mod:`.family` (the family), :mod:`.configuration` (``LlavaHoundConfig``),
:mod:`.modeling` (the model, video CLS dropped) and :mod:`.processing` (its processor)."""
