"""lmms-eval *chat* model classes: tasks that give messages (``doc_to_messages``) run on the same core.

lmms-eval 0.7 has two kinds of model class. A simple one receives ``(context, gen_kwargs,
doc_to_visual, doc_id, task, split)``; a chat one receives ``(context, doc_to_messages, gen_kwargs,
doc_id, task, split)`` and runs every task through ``ConfigurableMessagesTask`` — tasks defined
only with ``doc_to_messages`` need one, and a task with ``doc_to_visual``/``doc_to_text`` gets its
messages built by lmms-eval from those. The classes here differ from the simple ones
(:mod:`videolmm.eval.model`) only in how an ``Instance`` becomes a core ``Request``
(:func:`videolmm.eval.requests.messages_to_conversation`); decoding, prefetch, the scheduler,
checkpoints and failure handling are the simple classes' own.

They are registered under their own ids (``llava_next_video_chat``, ...: see
:mod:`videolmm.eval.manifests`), not as the ``chat_class_path`` of the simple ids: lmms-eval picks
the chat class whenever an id has one, and a chat model cannot run ``multiple_choice`` /
``loglikelihood`` tasks at all (``ConfigurableMessagesTask`` builds generation requests only), so
``--model llava_next_video --tasks videolmm_demo_mc`` keeps working without ``--force_simple``.
"""

from __future__ import annotations

from lmms_eval.api.instance import Instance

from videolmm.eval.model import LlavaHound, LlavaNextVideo, LlavaVideoQwen2, VideoLMM
from videolmm.eval.requests import messages_to_conversation
from videolmm.models.engine import DecodedRequest, error_text
from videolmm.types import Request


class ChatMixin:
    """Turns a chat ``Instance`` (``doc_to_messages``) into a core request."""

    is_simple = False

    def _to_request(self, instance: Instance, *, continuation: str | None = None) -> Request | DecodedRequest:
        context, doc_to_messages, gen_kwargs, doc_id, task, split = instance.args
        rid = f"{task}/{split}/{doc_id}"
        if continuation is not None:  # lmms-eval never asks a chat class for loglikelihoods
            refused = "loglikelihood requests need the simple class (a non-chat id)"
            return DecodedRequest(Request(question=str(context), request_id=rid), error=refused)
        try:
            messages = doc_to_messages
            if callable(doc_to_messages):
                messages = doc_to_messages(self.task_dict[task][split][doc_id])  # type: ignore[attr-defined]
            conv = messages_to_conversation(messages)
        except Exception as exc:  # a broken doc or an unsupported message fails this sample only
            return DecodedRequest(Request(question=str(context), request_id=rid), error=error_text(exc))
        return Request(
            question=conv.question,
            videos=conv.videos,
            images=conv.images,
            generation=self._generation(dict(gen_kwargs or {})),  # type: ignore[attr-defined]
            request_id=rid,
            system_prompt=conv.system_prompt,
            turns=conv.turns,
        )


class VideoLMMChat(ChatMixin, VideoLMM):
    """Chat class of the generic ``videolmm`` id (``videolmm_chat``)."""


class LlavaNextVideoChat(ChatMixin, LlavaNextVideo):
    """Chat class of ``llava_next_video`` (``llava_next_video_chat``)."""


class LlavaVideoQwen2Chat(ChatMixin, LlavaVideoQwen2):
    """Chat class of ``llava_video_qwen2`` (``llava_video_qwen2_chat``)."""


class LlavaHoundChat(ChatMixin, LlavaHound):
    """Chat class of ``llava_hound`` (``llava_hound_chat``)."""


__all__ = ["ChatMixin", "LlavaHoundChat", "LlavaNextVideoChat", "LlavaVideoQwen2Chat", "VideoLMMChat"]
