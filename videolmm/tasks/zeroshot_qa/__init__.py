"""lmms-eval task folder: msvd_qa, msrvtt_qa, tgif_qa and the zeroshot_qa group (see docs/tasks.md)."""
