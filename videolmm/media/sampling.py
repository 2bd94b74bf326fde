"""Frame samplers that reproduce the seeds' frame choice index for index.

A sampler is a pure function ``(VideoInfo, SamplingSpec) -> FrameSelection``: it sees only the frame
count and the average frame rate (what decord reports), never pixels. ``spec.reverse`` is applied
generically by :func:`videolmm.media.base.read_sampled`, so samplers ignore it.

* :func:`uniform_sampler`: LLaVA-NeXT-Video demo, Video-LLaVA, lmms-eval ``read_video``:
  ``np.linspace(0, N-1, F, dtype=int)``.
* :func:`fps_sampler`: LLaVA-Video (LLaVA-NeXT ``video_demo.py``, lmms-eval ``llava_vid.load_video``),
  including its ``frame_time`` string and its quirks.
* :func:`hound_sampler`: LLaVA-Hound's ``ffmpeg -vf "scale=336:-1,fps=2"`` frame extraction followed by
  ``np.linspace(0, n-1, 8, dtype=int)`` over the extracted files, computed without running ffmpeg
  (see :func:`ffmpeg_fps_source_indices`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np

from videolmm.errors import NoFrames
from videolmm.types import FrameSelection, SamplingSpec, VideoInfo

Sampler = Callable[[VideoInfo, SamplingSpec], FrameSelection]

#: Default target rate of the ``fps`` sampler (LLaVA-Video samples 1 frame per second).
LLAVA_VIDEO_FPS = 1.0
#: Default target rate of the ``hound`` sampler (LLaVA-Hound's ``fps=2`` filter).
HOUND_FPS = 2.0
_MAX_DENOMINATOR = 1_000_000


def _check_info(info: VideoInfo, spec: SamplingSpec) -> None:
    """Reject inputs no sampler can work with (a media layer bug or an empty video)."""
    if info.num_frames <= 0:
        raise NoFrames(info.source, "the video has no frames to sample")
    if spec.num_frames < 0:
        raise ValueError(f"{info.source}: num_frames must be >= 0, got {spec.num_frames}")


def _check_fps(info: VideoInfo) -> None:
    """Rate-based samplers need a positive frame rate."""
    if not info.fps > 0:
        raise NoFrames(info.source, f"the decoder reports no usable frame rate ({info.fps!r})")


def _seconds(indices: Sequence[int], fps: float) -> tuple[float, ...]:
    """True timestamps ``i / fps`` of frame indices (0.0 when the rate is unknown)."""
    return tuple(i / fps if fps > 0 else 0.0 for i in indices)


def uniform_indices(num_frames: int, count: int) -> list[int]:
    """``np.linspace(0, N-1, F, dtype=int)`` as a list: the seeds' uniform choice (keeps both ends).

    Args:
        num_frames: N, frames in the source (> 0).
        count: F, frames to pick (duplicates appear when F > N).

    Returns:
        F indices in ascending order.
    """
    return [int(i) for i in np.linspace(0, num_frames - 1, count, dtype=int)]


def uniform_sampler(info: VideoInfo, spec: SamplingSpec) -> FrameSelection:
    """LLaVA-NeXT-Video / Video-LLaVA / lmms-eval: ``linspace(0, N-1, F, dtype=int)``.

    Args:
        info: the video's frame count and rate.
        spec: ``num_frames`` is F; ``fps`` and ``force_sample`` are ignored.

    Returns:
        The selection; timestamps are ``i / fps``; ``video_time`` is ``N / fps``.
    """
    _check_info(info, spec)
    indices = uniform_indices(info.num_frames, spec.num_frames)
    return FrameSelection(
        indices=tuple(indices),
        timestamps=_seconds(indices, info.fps),
        frame_time=None,
        video_time=info.duration,
    )


def fps_sampler(info: VideoInfo, spec: SamplingSpec) -> FrameSelection:
    """LLaVA-Video's ``load_video``: every ``round(avg_fps / fps)``-th frame, capped to ``num_frames``.

    Reproduces the seed exactly, quirks included:

    * step ``s = round(avg_fps / fps)`` (Python's round, half to even), at least 1;
    * ``frame_idx = range(0, N, s)`` and ``frame_time = i / s`` (only approximately seconds; wrong
      by the factor ``fps`` when ``fps != 1``);
    * when that gives more than ``num_frames`` indices, or ``force_sample`` is set:
      ``linspace(0, N-1, num_frames, dtype=int)`` with ``frame_time = i / avg_fps``;
    * ``frame_time`` is ``",".join(f"{t:.2f}s")``; ``video_time = N / avg_fps``.

    Args:
        info: the video's frame count and average rate (decord's ``get_avg_fps``).
        spec: ``num_frames`` (``max_frames_num``), ``fps`` (default 1.0), ``force_sample``.

    Returns:
        The selection; ``timestamps`` are true seconds ``i / avg_fps`` (unlike ``frame_time``).
    """
    _check_info(info, spec)
    _check_fps(info)
    avg_fps = info.fps
    target = LLAVA_VIDEO_FPS if spec.fps is None else spec.fps
    if not target > 0:
        raise ValueError(f"{info.source}: sampling fps must be positive, got {target}")
    step = max(1, round(avg_fps / target))
    indices = list(range(0, info.num_frames, step))
    frame_time = [i / step for i in indices]
    if len(indices) > spec.num_frames or spec.force_sample:
        indices = uniform_indices(info.num_frames, spec.num_frames)
        frame_time = [i / avg_fps for i in indices]
    return FrameSelection(
        indices=tuple(indices),
        timestamps=_seconds(indices, avg_fps),
        frame_time=",".join(f"{t:.2f}s" for t in frame_time),
        video_time=info.num_frames / avg_fps,
    )


def as_rational(rate: float | Fraction) -> Fraction:
    """An exact frame rate from a float (``29.97002997…`` → ``30000/1001``, ``25.0`` → ``25``)."""
    if isinstance(rate, Fraction):
        return rate
    simple = Fraction(rate).limit_denominator(_MAX_DENOMINATOR)
    # a positive rate below 1/_MAX_DENOMINATOR (a header claiming years) must not round to 0
    return simple if simple > 0 or not rate > 0 else Fraction(rate)


def ffmpeg_fps_output_count(num_frames: int, src_fps: float | Fraction, out_fps: float | Fraction = 2) -> int:
    """How many frames ``ffmpeg -vf fps=R`` (``round=near``, ``eof_action=round``) emits.

    The filter receives EOF at the end of the last frame, ``t_end = N / src_fps`` (FFmpeg's CLI sends
    the last frame's pts plus its duration), rounds it to the output grid with the same
    round-half-away-from-zero rule and emits one frame per output tick before it:
    ``M = floor(N * R / src_fps + 1/2)``. Clips shorter than ``1 / (2R)`` seconds give 0 frames.

    Args:
        num_frames: N, frames in a constant-frame-rate source whose first frame is at t = 0.
        src_fps: the source frame rate.
        out_fps: R, the filter's rate.

    Returns:
        M, the number of output frames.
    """
    ratio = Fraction(num_frames) * as_rational(out_fps) / as_rational(src_fps)
    return math.floor(ratio + Fraction(1, 2))


def ffmpeg_fps_source_indices(num_frames: int, src_fps: float | Fraction, out_fps: float | Fraction = 2) -> list[int]:
    """Which source frame ffmpeg's ``fps`` filter emits in each output slot (defaults of FFmpeg ≥ 4.1).

    The filter converts every input pts to the output time base with round-half-away-from-zero
    (``round=near``): frame ``j`` lands on tick ``q_j = floor(j * R / src_fps + 1/2)``. Output tick ``k``
    (starting at ``q_0 = 0``) repeats the newest frame with ``q_j <= k``; frames that share a tick are
    dropped except the last. Solving ``q_j <= k`` for ``j`` gives

        ``src(k) = min(N - 1, ceil((k + 1/2) * src_fps / R) - 1)``, for ``k < M``

    with ``M`` from :func:`ffmpeg_fps_output_count`. So slot ``k`` shows the last frame *before*
    ``(k + 1/2) / R`` seconds (slot 0 of a 30 fps clip at R=2 is frame 7, not frame 0). Exact
    rational arithmetic keeps the ties (24 or 60 fps at R=2) right. Verified in the tests against
    the real libavfilter ``fps`` filter driven through PyAV.

    Args:
        num_frames: N, frames in a constant-frame-rate source starting at t = 0.
        src_fps: the source frame rate (a float is read as the nearest simple fraction).
        out_fps: R, the filter's rate.

    Returns:
        M source indices, one per output frame, non-decreasing.
    """
    src, out = as_rational(src_fps), as_rational(out_fps)
    if num_frames <= 0 or src <= 0 or out <= 0:
        raise ValueError(f"need N > 0 and positive rates, got N={num_frames}, src_fps={src_fps}, out_fps={out_fps}")
    count = ffmpeg_fps_output_count(num_frames, src, out)
    return [_fps_source_index(k, num_frames, src, out) for k in range(count)]


def _fps_source_index(slot: int, num_frames: int, src: Fraction, out: Fraction) -> int:
    """``src(k)`` of :func:`ffmpeg_fps_source_indices` for one output slot."""
    return min(num_frames - 1, math.ceil((slot + Fraction(1, 2)) * src / out) - 1)


def hound_sampler(info: VideoInfo, spec: SamplingSpec) -> FrameSelection:
    """LLaVA-Hound: ffmpeg ``fps=2`` extraction, then ``linspace(0, n-1, F, dtype=int)`` over the files.

    ``scale=336:-1`` does not change which frames are kept, so the source index of every extracted
    file follows from :func:`ffmpeg_fps_source_indices`; the seed then sorts the files and takes
    ``np.linspace(0, n - 1, num_frames, dtype=int)`` of them.

    Args:
        info: the video's frame count and average rate (assumed constant, first frame at t = 0).
        spec: ``num_frames`` (8 in the seed) and ``fps`` (default 2.0).

    Returns:
        The selection; timestamps are the source frames' seconds ``i / fps``.

    Raises:
        NoFrames: the clip is so short that the fps filter emits no frame at all.
    """
    _check_info(info, spec)
    _check_fps(info)
    target = HOUND_FPS if spec.fps is None else spec.fps
    if not target > 0:
        raise ValueError(f"{info.source}: sampling fps must be positive, got {target}")
    src, out = as_rational(info.fps), as_rational(target)
    count = ffmpeg_fps_output_count(info.num_frames, src, out)
    if count <= 0:
        raise NoFrames(
            info.source,
            f"ffmpeg fps={target:g} extracts no frame from a {info.duration:.3f} s clip "
            f"({info.num_frames} frames at {info.fps:g} fps)",
        )
    # only the slots the seed keeps are computed: O(F), even when a header claims hours of video
    indices = [_fps_source_index(k, info.num_frames, src, out) for k in uniform_indices(count, spec.num_frames)]
    return FrameSelection(
        indices=tuple(indices),
        timestamps=_seconds(indices, info.fps),
        frame_time=None,
        video_time=info.duration,
    )


#: The built-in samplers by registry name.
BUILTIN_SAMPLERS: dict[str, Sampler] = {
    "uniform": uniform_sampler,
    "fps": fps_sampler,
    "hound": hound_sampler,
}

__all__ = [
    "BUILTIN_SAMPLERS",
    "HOUND_FPS",
    "LLAVA_VIDEO_FPS",
    "Sampler",
    "as_rational",
    "ffmpeg_fps_output_count",
    "ffmpeg_fps_source_indices",
    "fps_sampler",
    "hound_sampler",
    "uniform_indices",
    "uniform_sampler",
]
