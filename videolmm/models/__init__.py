"""The core: media, samplers, prompts, families, engine. Never imports lmms-eval or Ray."""
