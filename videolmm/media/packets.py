"""A video stream's packet index, read by demuxing only, and the decoding work it implies.

Frame ``n`` is the ``n``-th packet in presentation (pts) order, the order decord and PyAV's decoder
output count frames in. The ``keyframe`` decoder (:mod:`videolmm.media.keyframe`) seeks with this
index; :func:`decode_bound` gives the frames in the keyframe-to-frame runs for a set of indices,
what its decode counts are judged against.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from videolmm.errors import MediaUnreadable
from videolmm.media.deadline import check_deadline

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream


@dataclass(frozen=True)
class PacketIndex:
    """A video stream's frames in presentation order, from demuxing only.

    Attributes:
        pts: ``(N,)`` int64, presentation timestamp of frame ``n`` (sorted ascending, unique when
            :attr:`exact`).
        keyframes: sorted frame positions (into :attr:`pts`) of the keyframes; ``keyframes[0]`` is 0
            when the stream is decodable from its start.
        exact: True when every packet had a pts, the pts are unique and ``N`` matches the frame count
            the decoders report; only then is seeking used.
    """

    pts: np.ndarray
    keyframes: tuple[int, ...]
    exact: bool

    @property
    def num_frames(self) -> int:
        """N, the number of frames (packets with a payload)."""
        return int(self.pts.shape[0])

    def keyframe_before(self, position: int) -> int:
        """The position of the last keyframe at or before frame ``position`` (0 when there is none)."""
        k = bisect.bisect_right(self.keyframes, position) - 1
        return self.keyframes[k] if k >= 0 else 0


def decode_bound(keyframes: Sequence[int], indices: Sequence[int]) -> int:
    """Frames that must be decoded to get ``indices``: the union of the runs keyframe → wanted frame.

    For each wanted frame ``t`` with preceding keyframe ``k``, frames ``k..t`` (presentation order)
    must be decoded; runs that share a GOP are counted once.

    Args:
        keyframes: sorted keyframe positions (:attr:`PacketIndex.keyframes`).
        indices: wanted frame positions, any order, duplicates allowed.

    Returns:
        The number of distinct frames in the union of the runs.
    """
    total, covered_to = 0, -1  # frames < covered_to + 1 are already counted
    for t in sorted(set(int(i) for i in indices)):
        k = bisect.bisect_right(keyframes, t) - 1
        start = keyframes[k] if k >= 0 else 0
        start = max(start, covered_to + 1)
        if t >= start:
            total += t - start + 1
            covered_to = t
    return total


def read_packet_index(av: Any, container: InputContainer, stream: VideoStream, label: str) -> PacketIndex:
    """Demux every packet of ``stream`` (no decoding) and build its :class:`PacketIndex`.

    Args:
        av: the imported ``av`` module.
        container: an open input container, positioned anywhere (it is left at the end).
        stream: the video stream to index.
        label: source name for errors.

    Returns:
        The index; ``exact`` is False when pts are missing or repeated (the caller decodes
        sequentially then).
    """
    pts_list: list[int] = []
    key_pts: list[int] = []
    missing = False
    try:
        for packet in container.demux(stream):
            check_deadline(label)
            if packet.size <= 0:
                continue  # the demuxer's flush packet
            if packet.pts is None:
                missing = True
                pts_list.append(len(pts_list))
                continue
            pts_list.append(int(packet.pts))
            if packet.is_keyframe:
                key_pts.append(int(packet.pts))
    except (av.error.FFmpegError, EOFError) as exc:
        raise MediaUnreadable(label, f"demuxing failed while indexing packets ({exc})") from exc
    pts = np.sort(np.asarray(pts_list, dtype=np.int64))
    unique = pts.size == 0 or bool(np.all(np.diff(pts) > 0))
    keyframes = tuple(sorted({int(np.searchsorted(pts, p)) for p in key_pts})) if unique and not missing else (0,)
    return PacketIndex(pts=pts, keyframes=keyframes, exact=unique and not missing and bool(keyframes))


__all__ = ["PacketIndex", "decode_bound", "read_packet_index"]
