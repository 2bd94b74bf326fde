"""Media: open a source, sample frames, cache them. Pure Python + PyAV/decord; no torch, no transformers.

* :mod:`~videolmm.media.base`: the ``VideoDecoder`` / ``OpenedVideo`` protocols, ``OpenedVideoBase``
  (subclass it in a plugin decoder) and the source helpers;
* :mod:`~videolmm.media.probe`: PyAV header probing shared by the container decoders;
* decoders: :mod:`~videolmm.media.decord`, :mod:`~videolmm.media.pyav`, :mod:`~videolmm.media.torchcodec`,
  :mod:`~videolmm.media.keyframe` (with :mod:`~videolmm.media.packets`), :mod:`~videolmm.media.frames`;
* :mod:`~videolmm.media.images` (still images), :mod:`~videolmm.media.sampling` (samplers),
  :mod:`~videolmm.media.cache` (the on-disk frame cache);
* :mod:`~videolmm.media.loader`: ``FrameLoader``, which composes decoder + sampler + cache + limits.

Importing this package imports nothing; every decoding library is imported lazily.
"""
