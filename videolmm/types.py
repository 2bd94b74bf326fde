"""Data that crosses the core's boundaries: frozen, typed, with shapes in the docstrings.

Nothing here imports torch, transformers, lmms-eval or Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np

#: Anything the media layer can open as one video: a local path, raw container bytes,
#: a directory of frame images, or an already-decoded list of images (H×W×3 uint8 arrays,
#: PIL images or image paths).
VideoSource = Union[str, Path, bytes, Sequence[Any]]


@dataclass(frozen=True)
class VideoInfo:
    """What a decoder learns from a container before decoding pixels.

    Attributes:
        source: printable name of the source (path, ``<bytes:N>`` or ``<frames:N>``).
        num_frames: number of decodable frames N (indices run 0..N-1).
        fps: average frame rate as the decoder reports it (decord's ``get_avg_fps``).
        width: frame width in pixels.
        height: frame height in pixels.
    """

    source: str
    num_frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Duration in seconds as the seeds compute it: ``N / avg_fps``."""
        return self.num_frames / self.fps if self.fps > 0 else 0.0


@dataclass(frozen=True)
class SamplingSpec:
    """How many frames to take and at which rate; every sampler reads what it needs.

    Attributes:
        num_frames: frames to return (``max_frames_num`` / ``for_get_frames_num`` in the seeds).
        fps: target sampling rate for rate-based samplers (LLaVA-Video's ``fps``,
            LLaVA-Hound's ffmpeg ``fps=2``); ignored by ``uniform``.
        force_sample: LLaVA-Video's ``force_sample``: always fall back to ``num_frames``
            uniformly spaced frames.
        reverse: return the selected frames in reverse temporal order (an ablation knob:
            a model that really watches loses direction when it is on).
    """

    num_frames: int = 8
    fps: float | None = None
    force_sample: bool = False
    reverse: bool = False


@dataclass(frozen=True)
class FrameSelection:
    """A sampler's answer: which frames to decode and how to describe them.

    Attributes:
        indices: frame indices into the source, in the order they are shown to the model.
        timestamps: seconds of each selected frame (``index / fps``), same order.
        frame_time: the seeds' textual frame-time list where the sampler defines one
            (LLaVA-Video: ``"0.00s,1.00s,..."``, including its quirks), else None.
        video_time: the duration the seed reports for the video, in seconds.
    """

    indices: tuple[int, ...]
    timestamps: tuple[float, ...]
    frame_time: str | None = None
    video_time: float | None = None


@dataclass(frozen=True, eq=False)
class Frames:
    """Decoded, sampled frames of one video, ready for a processor.

    Attributes:
        array: ``uint8`` array of shape ``(T, H, W, 3)``, RGB.
        indices: source frame index of each of the T frames.
        timestamps: seconds of each frame in the source.
        fps: the source's average frame rate.
        duration: the source's duration in seconds (``N / fps``).
        source: printable name of the source.
        num_source_frames: N, the frame count of the source.
        frame_time: the sampler's textual frame-time list, if it defines one.
        decoder: name of the decoder that produced the pixels.
        sampler: name of the sampler that chose the indices.
    """

    array: np.ndarray
    indices: tuple[int, ...]
    timestamps: tuple[float, ...]
    fps: float
    duration: float
    source: str
    num_source_frames: int
    frame_time: str | None = None
    decoder: str = ""
    sampler: str = ""

    def __post_init__(self) -> None:
        arr = self.array
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise ValueError(
                f"{self.source}: frames must be a uint8 array of shape (T, H, W, 3), "
                f"got {arr.dtype} {tuple(arr.shape)}"
            )
        if arr.shape[0] != len(self.indices):
            raise ValueError(f"{self.source}: {arr.shape[0]} frames but {len(self.indices)} indices")

    @property
    def num_frames(self) -> int:
        """T, the number of sampled frames."""
        return int(self.array.shape[0])


@dataclass(frozen=True)
class MediaSettings:
    """Decoder and sampler choice for one request (defaults come from the family).

    Attributes:
        decoder: registered decoder name (``keyframe``, ``decord``, ``pyav``, ``torchcodec``, ``frames``);
            ``keyframe`` returns decord's pixels from fewer decoded frames.
        sampler: registered sampler name (``uniform``, ``fps``, ``hound``, ...).
        sampling: the numbers the sampler reads.
        frames_sampler: the sampler for a directory of frames or a list of images, when it
            differs from ``sampler`` (LLaVA-Hound: ``uniform`` over frames it extracted at 2 fps);
            None uses ``sampler`` for every source.
    """

    decoder: str = "keyframe"
    sampler: str = "uniform"
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    frames_sampler: str | None = None

    def sampler_for(self, decoder_name: str) -> str:
        """The sampler a source read by ``decoder_name`` uses (see :attr:`frames_sampler`)."""
        if self.frames_sampler and decoder_name in SEQUENCE_DECODERS:
            return self.frames_sampler
        return self.sampler


#: Decoders of already-extracted frames (a directory, an image list): :attr:`MediaSettings.frames_sampler` applies.
SEQUENCE_DECODERS = frozenset({"frames", "images"})


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding knobs, greedy by default (the seeds' evaluation setting).

    Attributes:
        max_new_tokens: generation budget.
        temperature: 0 means greedy; > 0 samples.
        top_p: nucleus sampling mass (only used when sampling).
        num_beams: beam width.
        stop: strings that end generation; the text is cut before the first one.
        seed: RNG seed applied before sampling, for reproducible sampled outputs.
    """

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float | None = None
    num_beams: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def do_sample(self) -> bool:
        """True when the settings ask for sampling rather than greedy/beam search."""
        return self.temperature > 0


@dataclass(frozen=True)
class Turn:
    """One earlier message of a conversation (before the request's ``question``).

    The media stay on the :class:`Request` as flat tuples in prompt order; a turn says how many
    of them it carries: a user turn with ``videos=1`` takes the next video of
    ``Request.videos``. Assistant turns carry none.

    Attributes:
        role: ``user`` or ``assistant`` (the system message is ``Request.system_prompt``).
        text: the message text (for a user turn, without visual placeholders unless it holds
            exactly one per visual it carries, as :attr:`Request.question` may).
        videos: how many of the request's videos appear in this turn.
        images: how many of the request's images appear in this turn.
    """

    role: Literal["user", "assistant"]
    text: str
    videos: int = 0
    images: int = 0


@dataclass(frozen=True)
class Request:
    """One question about zero or more videos and images, optionally after earlier turns.

    Attributes:
        question: the user's text (the task's context), without visual placeholders.
        videos: video sources, in prompt order (the turns' videos first, then the question's).
        images: image sources (paths, PIL images or H×W×3 uint8 arrays), in prompt order.
        generation: decoding settings.
        media: decoder/sampler override for this request; None uses the engine's.
        continuation: for log-likelihood requests, the text whose log-probability is wanted.
        request_id: caller's id, echoed in the result and in logs.
        system_prompt: replaces the system message for this request (the engine's
            ``system_prompt`` setting, else the template's own); None keeps it.
        turns: earlier messages of the conversation, oldest first, alternating user and
            assistant from a user turn and ending with an assistant turn; the question is the
            last user turn and carries the videos and images the turns do not. Empty for a
            single question (rendered exactly as before turns existed).
    """

    question: str
    videos: tuple[VideoSource, ...] = ()
    images: tuple[Any, ...] = ()
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    media: MediaSettings | None = None
    continuation: str | None = None
    request_id: str = ""
    system_prompt: str | None = None
    turns: tuple[Turn, ...] = ()


@dataclass(frozen=True)
class Usage:
    """Token usage of one request (OpenAI's names).

    Attributes:
        prompt_tokens: tokens fed to the language model, visual placeholders included.
        completion_tokens: generated tokens, stop tokens excluded.
        visual_tokens: how many of the prompt tokens are visual placeholders.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    visual_tokens: int = 0


@dataclass(frozen=True)
class Result:
    """The outcome of one request: text (or a log-likelihood) or an error, never both.

    Attributes:
        request_id: the request's id.
        text: generated text (stop strings removed), None on error.
        error: ``"ErrorType: message"`` naming the input and the reason, None on success.
        usage: token counts.
        prompt: the rendered prompt, for inspection and logging.
        logprob: summed log-probability of the continuation (log-likelihood requests).
        is_greedy: whether greedy decoding would produce the continuation.
        timings: seconds spent per stage (``decode``, ``preprocess``, ``generate``).
        frames: per video, the sampled source indices.
        timestamps: per video, the seconds of those frames in the source (same order).
        finish_reason: ``"stop"`` (EOS or a stop string) or ``"length"`` (``max_new_tokens``); None on error.
    """

    request_id: str = ""
    text: str | None = None
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
    prompt: str = ""
    logprob: float | None = None
    is_greedy: bool | None = None
    timings: dict[str, float] = field(default_factory=dict)
    frames: tuple[tuple[int, ...], ...] = ()
    timestamps: tuple[tuple[float, ...], ...] = ()
    finish_reason: str | None = None

    @property
    def ok(self) -> bool:
        """True when the request succeeded."""
        return self.error is None


__all__ = [
    "Frames",
    "FrameSelection",
    "GenerationSettings",
    "MediaSettings",
    "Request",
    "Result",
    "SEQUENCE_DECODERS",
    "SamplingSpec",
    "Turn",
    "Usage",
    "VideoInfo",
    "VideoSource",
]
