"""lmms-eval model discovery (entry-point group ``lmms_eval.models``).

Returns :class:`ModelManifest` objects with *string* class paths, so discovery imports
neither torch nor the core. lmms-eval loads entry-point manifests with ``overwrite=True``
after its built-ins, so an id that collides with a built-in would silently replace it; our
ids are chosen not to (``tests/test_lmms_eval.py`` checks every one against the
pinned release).
"""

from __future__ import annotations

from typing import Any

#: lmms-eval model id → class path. ``videolmm`` is generic (family detected from the
#: checkpoint, or ``family=NAME``), the others fix their family.
MODEL_IDS: dict[str, str] = {
    "videolmm": "videolmm.eval.model.VideoLMM",
    "llava_next_video": "videolmm.eval.model.LlavaNextVideo",
    "llava_video_qwen2": "videolmm.eval.model.LlavaVideoQwen2",
    "llava_hound": "videolmm.eval.model.LlavaHound",
}

#: lmms-eval *chat* model id → class path: tasks that give chat messages (``doc_to_messages``).
#: Separate ids, so the simple ids keep running loglikelihood tasks (see :mod:`videolmm.eval.chat`).
CHAT_MODEL_IDS: dict[str, str] = {
    "videolmm_chat": "videolmm.eval.chat.VideoLMMChat",
    "llava_next_video_chat": "videolmm.eval.chat.LlavaNextVideoChat",
    "llava_video_qwen2_chat": "videolmm.eval.chat.LlavaVideoQwen2Chat",
    "llava_hound_chat": "videolmm.eval.chat.LlavaHoundChat",
}


def manifests() -> list[Any]:
    """Entry-point payload: one ``ModelManifest`` per model id.

    Also installs the task-folder bridge (:mod:`videolmm.eval.task_bridge`), since this is
    the one piece of videolmm that lmms-eval runs before it indexes tasks; the bridge waits for
    ``lmms_eval.tasks`` to be imported (which imports torch) instead of importing it here.
    """
    from lmms_eval.models.registry_v2 import ModelManifest

    from videolmm.eval import task_bridge

    task_bridge.install_when_imported()
    simple = [ModelManifest(model_id=mid, simple_class_path=path) for mid, path in MODEL_IDS.items()]
    chat = [ModelManifest(model_id=mid, chat_class_path=path) for mid, path in CHAT_MODEL_IDS.items()]
    return simple + chat
