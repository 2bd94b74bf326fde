"""lmms-eval task folder: videomme_local, lmms-eval's videomme on a local file (see docs/tasks.md)."""
