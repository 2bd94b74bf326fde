"""lmms-eval task folder: LLaVA-Hound's official and caption-grounded QA suites (see docs/tasks.md)."""
