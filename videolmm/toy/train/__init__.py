"""Training videolmm's tiny checkpoints on synthetic clips (CPU-sized)."""
