"""Per-batch checkpoints into lmms-eval's response cache (``--use_cache``), so a killed run resumes.

lmms-eval 0.7.x's ``ResponseCache.execute`` looks every request up, calls the model *once* with
all the misses of a request type (all tasks together), and stores the responses only after that
call returns. A run killed during generation therefore keeps nothing, however many samples were
finished. (The older ``cache_hook.add_partial`` that models call is a no-op in 0.7.x.)

:class:`ResponseCheckpoint` closes that gap from the model side: when ``generate_until`` is
called by ``ResponseCache.execute``, it finds that cache object (the caller's frame; nothing in
lmms-eval is patched) and stores each finished, deterministic sample under the very key and in
the very table ``execute`` would use, as soon as its batch ends. A kill then loses at most the
batch in progress.

Resuming needs the killed run's shard: lmms-eval writes each run into ``PATH/runs/<run id>/``
and folds a run into the shared ``PATH/cache.db`` only when the run finishes. The run id is a
fresh UUID unless ``LMMS_CACHE_RUN_ID`` (or ``SLURM_JOB_ID``/``TORCHELASTIC_RUN_ID``) is set, so
set ``LMMS_CACHE_RUN_ID`` and re-run the same command after a kill: the re-run opens the same
shard, answers the finished samples from it and computes only the rest.
"""

from __future__ import annotations

import logging
import sys
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

#: What the checkpoint uses from ``lmms_eval.caching.response_cache`` (checked before use).
_MODULE_NAMES = (
    "ResponseCache",
    "compute_cache_key",
    "extract_gen_kwargs",
    "is_deterministic",
    "_extract_content_hash",
)
_CACHE_ATTRS = ("_store", "_is_valid_response", "_extract_cacheable", "_task_fingerprints", "_model_fingerprint_hash")
_SEARCH_DEPTH = 6  # frames above generate_until that may hold ResponseCache.execute


class ResponseCheckpoint:
    """Stores finished samples in the ``ResponseCache`` that called the model.

    Args:
        cache: the ``lmms_eval.caching.response_cache.ResponseCache`` instance.
        reqtype: the request type being run (``generate_until``).
        module: ``lmms_eval.caching.response_cache`` (its key functions).
    """

    def __init__(self, cache: Any, reqtype: str, module: Any) -> None:
        self.cache = cache
        self.reqtype = reqtype
        self.module = module
        self.stored = 0

    @classmethod
    def from_caller(cls, reqtype: str, frame: FrameType | None = None) -> ResponseCheckpoint | None:
        """The checkpoint for the ``ResponseCache.execute`` call running this model call, if any.

        Args:
            reqtype: the model method's request type.
            frame: where to start looking (default: the caller of the caller).

        Returns:
            None when the model was not called through a response cache (no ``--use_cache``), or
            when the installed lmms-eval lacks what the checkpoint needs (logged once per call).
        """
        module = sys.modules.get("lmms_eval.caching.response_cache")
        if module is None:
            return None
        current = frame or sys._getframe(2)
        for _ in range(_SEARCH_DEPTH):
            if current is None:
                return None
            cache = current.f_locals.get("self")
            if current.f_code.co_name == "execute" and isinstance(cache, getattr(module, "ResponseCache", ())):
                missing = [n for n in _MODULE_NAMES if not hasattr(module, n)]
                missing += [a for a in _CACHE_ATTRS if not hasattr(cache, a)]
                if missing:
                    logger.warning("lmms-eval's response cache lacks %s: no per-batch checkpoints", missing)
                    return None
                return cls(cache, reqtype, module)
            current = current.f_back
        return None

    def key(self, instance: Any) -> str | None:
        """The cache key ``ResponseCache.execute`` uses for ``instance``; None when not cached (sampling)."""
        m, cache = self.module, self.cache
        gen_kwargs = m.extract_gen_kwargs(instance)
        if not m.is_deterministic(self.reqtype, gen_kwargs):
            return None
        return m.compute_cache_key(
            request_type=self.reqtype,
            task_name=instance.task_name,
            doc_id=instance.doc_id,
            gen_kwargs=gen_kwargs,
            idx=instance.idx,
            content_hash=m._extract_content_hash(instance),
            task_fingerprint=cache._task_fingerprints.get(instance.task_name, ""),
            model_fingerprint_hash=cache._model_fingerprint_hash,
            eval_version=getattr(cache, "_eval_version", ""),
        )

    def store(self, instance: Any, response: Any) -> bool:
        """Store one finished response (committed at once); True when stored.

        Responses lmms-eval would not cache (sampling, empty) are skipped the same way.
        """
        key = self.key(instance)
        if key is None or not self.cache._is_valid_response(response, self.reqtype):
            return False
        gen_kwargs = self.module.extract_gen_kwargs(instance)
        payload = self.cache._extract_cacheable(response)
        self.cache._store(key, self.reqtype, instance.task_name, instance.doc_id, instance.idx, gen_kwargs, payload)
        self.stored += 1
        return True


__all__ = ["ResponseCheckpoint"]
