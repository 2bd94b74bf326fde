"""lmms-eval's request pieces as the core's: visuals split into videos and images, gen_kwargs as settings,
chat messages (``doc_to_messages``) as a conversation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from videolmm.errors import ConfigError
from videolmm.eval.until import task_stop
from videolmm.media.images import IMAGE_SUFFIXES as IMAGE_EXTENSIONS
from videolmm.types import GenerationSettings, Turn


def split_visuals(visuals: Sequence[Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Split a task's ``doc_to_visual`` output into (videos, images).

    Strings and paths are videos unless they end in an image extension; directories are
    frame folders (videos); PIL images and arrays are images.
    """
    videos: list[Any] = []
    images: list[Any] = []
    for v in visuals:
        if isinstance(v, (str, os.PathLike)):
            (images if str(v).lower().endswith(IMAGE_EXTENSIONS) else videos).append(str(v))
        elif isinstance(v, (bytes, bytearray)):
            videos.append(bytes(v))
        elif hasattr(v, "convert") or hasattr(v, "shape"):
            images.append(v)
        else:
            raise ConfigError(f"unsupported visual of type {type(v).__name__} from doc_to_visual")
    return tuple(videos), tuple(images)


def generation_from_kwargs(gen_kwargs: dict[str, Any], default_max_new_tokens: int) -> GenerationSettings:
    """Map lmms-eval's ``gen_kwargs`` to :class:`GenerationSettings` (greedy unless sampling).

    Only a task's own ``until`` becomes stop strings; the ``["\\n\\n"]`` lmms-eval injects into tasks
    that set none is dropped (:mod:`videolmm.eval.until`), as the seeds' wrappers do.
    """
    until = task_stop(gen_kwargs)
    temperature = float(gen_kwargs.get("temperature") or 0.0)
    if gen_kwargs.get("do_sample") is False:
        temperature = 0.0
    top_p = gen_kwargs.get("top_p")
    return GenerationSettings(
        max_new_tokens=int(gen_kwargs.get("max_new_tokens") or default_max_new_tokens),
        temperature=temperature,
        top_p=float(top_p) if top_p is not None else None,
        num_beams=int(gen_kwargs.get("num_beams") or 1),
        stop=tuple(until),
    )


@dataclass(frozen=True)
class Conversation:
    """A task's chat messages (``doc_to_messages``) as the core's request pieces.

    Attributes:
        question: the text of the last user message (the one to answer).
        videos: every video of the conversation, in message order.
        images: every image of the conversation, in message order.
        turns: the earlier user and assistant messages (empty for a single user message).
        system_prompt: the system messages' text joined by newlines, or None when there is none.
    """

    question: str
    videos: tuple[Any, ...]
    images: tuple[Any, ...]
    turns: tuple[Turn, ...] = ()
    system_prompt: str | None = None


def _content_items(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, dict):
        content = [content]
    return [item.model_dump() if hasattr(item, "model_dump") else dict(item) for item in content]


def messages_to_conversation(messages: Any) -> Conversation:
    """Map lmms-eval's chat messages to the core's pieces, as the Serve API maps OpenAI's.

    Args:
        messages: a list of ``{"role", "content"}`` dicts (or lmms-eval's ``ChatMessages``); content a
            string or a list of ``{"type": "text", "text"}``, ``{"type": "image", "url"}`` and
            ``{"type": "video", "url"}`` items, the url a path, bytes or a PIL image.

    Returns:
        The conversation: media before the text of the message that carries it, as the seeds place it.

    Raises:
        ConfigError: naming the message, for audio, clipped videos (``video_start``/``video_end``),
            media in an assistant message, or a history that does not alternate and end with a user message.
    """
    items = getattr(messages, "messages", messages)
    system: list[str] = []
    flat: list[tuple[str, str, list[Any], list[Any]]] = []  # role, text, videos, images
    for i, message in enumerate(items):
        message = message.model_dump() if hasattr(message, "model_dump") else dict(message)
        role = message.get("role")
        texts, videos, images = [], [], []
        for item in _content_items(message.get("content")):
            kind, url = item.get("type"), item.get("url")
            if kind == "text":
                texts.append(item.get("text") or "")
            elif kind in ("video", "image") and isinstance(url, dict):
                raise ConfigError(f"messages[{i}]: a {kind} with video_start/video_end is not supported")
            elif kind == "video":
                (videos if not str(url).lower().endswith(IMAGE_EXTENSIONS) else images).append(
                    str(url) if isinstance(url, (str, os.PathLike)) else url
                )
            elif kind == "image":
                images.append(str(url) if isinstance(url, (str, os.PathLike)) else url)
            else:
                raise ConfigError(f"messages[{i}]: content of type {kind!r} is not supported (text, image, video)")
        if role == "system":
            if videos or images or flat:
                raise ConfigError(f"messages[{i}]: a system message must be text, before the conversation")
            system.append("\n".join(texts))
        elif role in ("user", "assistant"):
            if role == "assistant" and (videos or images):
                raise ConfigError(f"messages[{i}]: an assistant message cannot carry images or videos")
            expected = "user" if not flat or flat[-1][0] == "assistant" else "assistant"
            if role != expected:
                article = "an" if expected == "assistant" else "a"
                raise ConfigError(f"messages[{i}]: expected {article} {expected} message (roles must alternate)")
            flat.append((role, "\n".join(texts), videos, images))
        else:
            raise ConfigError(f"messages[{i}]: role {role!r} is not supported")
    if not flat or flat[-1][0] != "user":
        raise ConfigError("the messages must end with a user message (the question to answer)")
    turns = tuple(Turn(role, text, len(v), len(im)) for role, text, v, im in flat[:-1])  # type: ignore[arg-type]
    return Conversation(
        question=flat[-1][1],
        videos=tuple(v for *_, vs, _ in flat for v in vs),
        images=tuple(im for *_, ims in flat for im in ims),
        turns=turns,
        system_prompt="\n".join(system) if system else None,
    )


__all__ = ["IMAGE_EXTENSIONS", "Conversation", "generation_from_kwargs", "messages_to_conversation", "split_visuals"]
