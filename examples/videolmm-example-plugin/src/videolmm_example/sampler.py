"""The ``segment_middle`` sampler: Video-ChatGPT's frame choice.

Video-ChatGPT (``video_chatgpt/eval/model_utils.py``, ``get_seq_frames``) splits the N frames of
a video into F equal segments and takes the middle frame of each:

* ``F = min(N, num_frames)`` (its ``load_video`` never asks for more frames than exist);
* ``seg = (N - 1) / F``;
* segment ``i`` spans ``start = round(seg * i)`` to ``end = round(seg * (i + 1))``
  (``np.round``: half to even, which Python's ``round`` matches for floats);
* its frame is ``(start + end) // 2``.

Unlike ``uniform`` (``linspace(0, N-1, F)``), it never picks the very first or last frame.
A sampler is a pure function of the frame count and rate; ``spec.reverse`` is applied by
videolmm's media layer, so it is ignored here.
"""

from __future__ import annotations

from videolmm.errors import NoFrames
from videolmm.types import FrameSelection, SamplingSpec, VideoInfo

#: Registry name of the sampler.
NAME = "segment_middle"


def segment_middle_indices(num_frames: int, count: int) -> list[int]:
    """Middle frame of each of ``min(count, num_frames)`` equal segments of ``num_frames`` frames.

    Args:
        num_frames: N, frames in the source (> 0).
        count: F, frames wanted (>= 1).

    Returns:
        ``min(F, N)`` ascending frame indices.

    Raises:
        ValueError: ``num_frames`` or ``count`` is not positive.

    Example:
        >>> segment_middle_indices(16, 4)
        [2, 6, 9, 13]
    """
    if num_frames < 1 or count < 1:
        raise ValueError(f"need num_frames >= 1 and count >= 1, got num_frames={num_frames}, count={count}")
    count = min(count, num_frames)
    seg = float(num_frames - 1) / count
    return [(round(seg * i) + round(seg * (i + 1))) // 2 for i in range(count)]


def segment_middle_sampler(info: VideoInfo, spec: SamplingSpec) -> FrameSelection:
    """Video-ChatGPT's ``get_seq_frames`` as a videolmm sampler.

    Args:
        info: the video's frame count and average rate.
        spec: ``num_frames`` is F; ``fps`` and ``force_sample`` are ignored.

    Returns:
        The selection; timestamps are ``index / fps``; ``video_time`` is ``N / fps``.

    Raises:
        NoFrames: the video has no frames.
    """
    if info.num_frames < 1:
        raise NoFrames(info.source, "the video has no frames to sample")
    indices = segment_middle_indices(info.num_frames, spec.num_frames)
    return FrameSelection(
        indices=tuple(indices),
        timestamps=tuple(i / info.fps if info.fps > 0 else 0.0 for i in indices),
        frame_time=None,
        video_time=info.duration,
    )


__all__ = ["NAME", "segment_middle_indices", "segment_middle_sampler"]
