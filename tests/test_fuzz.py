"""Property-based fuzzing (hypothesis) of the request parser and the media path (issue 15, item 12).

The property, for every generated or mutated input: the code under test returns a result or raises
a *typed* error (:class:`videolmm.errors.VideoLMMError` or the Serve layer's
:class:`~videolmm.serve.errors.ServeError`), never an untyped exception, and never hangs (each case
runs in a worker thread with a deadline).

Targets:

* ``request``: JSON bodies (generated chat requests with hostile values, arbitrary JSON values,
  and byte-mutated valid bodies) through ``parse_request`` → ``check_request`` → ``to_job``, the
  ingress's order before any media or model work;
* ``mp4`` / ``webm`` × ``keyframe`` / ``pyav``: byte-mutated clips through the core
  :class:`~videolmm.media.loader.FrameLoader` under Serve-like :class:`MediaLimits`;
* ``png``: byte-mutated images through :func:`videolmm.media.images.load_image`.

``make test`` runs a short deterministic pass (``derandomize=True``, a few dozen cases per target).
``make fuzz`` sets ``VIDEOLMM_FUZZ_SECONDS`` (default 600 there) and the same tests then keep
drawing fresh random cases until each target has had its share of the time. Each test records its
counts (cases, typed errors, untyped exceptions, hangs) in ``docs/reliability.md``. A case that
fails in code another file owns is listed in :data:`KNOWN` (with its reproducer in
``/work/notes/fuzz-findings.md``) and turns the test into an xfail naming it.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from videolmm.errors import VideoLMMError
from videolmm.serve.errors import ServeError

#: Total seconds of a ``make fuzz`` run, shared by the targets (0: the short deterministic pass).
FUZZ_SECONDS = float(os.environ.get("VIDEOLMM_FUZZ_SECONDS", "0") or 0)
#: ``make fuzz`` appends each target's counts here too (the reliability report of a partial run is
#: .artifacts/reliability.md, which other runs overwrite).
FUZZ_REPORT = os.environ.get("VIDEOLMM_FUZZ_REPORT", "")
#: A case taking longer than this is a hang.
CASE_TIMEOUT_S = float(os.environ.get("VIDEOLMM_FUZZ_CASE_TIMEOUT", "20"))
TYPED = (VideoLMMError, ServeError)
SECTION = "Fuzzing"

#: target → share of a ``make fuzz`` run's time (sums to 1).
SHARES = {
    "request": 0.25,
    "mp4-keyframe": 0.15,
    "mp4-pyav": 0.15,
    "webm-keyframe": 0.1,
    "webm-pyav": 0.1,
    "png": 0.25,
}
#: Cases per target in the short deterministic pass of ``make test``.
SHORT_EXAMPLES = {"request": 200, "png": 100}
SHORT_MEDIA_EXAMPLES = 40

#: Untyped exceptions found in code this test's owner does not own, each written up with its minimal
#: reproducer in /work/notes/fuzz-findings.md: (exception type, the innermost videolmm file of the
#: traceback) → the finding. Such a case is counted, the run goes on, and the test ends as an xfail
#: naming it (never a silent pass); any other untyped exception fails the test.
KNOWN: dict[tuple[str, str], str] = {}  # F1-F4 are fixed: every finding now replays as a regression test


# ----------------------------------------------------------------------------- running one case


@dataclass
class Tally:
    """What one target's cases did."""

    cases: int = 0
    ok: int = 0
    typed: int = 0
    untyped: list[str] = field(default_factory=list)
    known: dict[str, int] = field(default_factory=dict)
    hangs: int = 0
    seconds: float = 0.0
    slowest_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        common = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items(), key=lambda kv: -kv[1])[:4])
        return (
            f"{self.cases} cases in {self.seconds:.1f} s: {self.ok} results, {self.typed} typed errors "
            f"({common or 'none'}), {len(self.untyped)} untyped exceptions"
            + (f" (known findings: {sum(self.known.values())})" if self.known else "")
            + f", {self.hangs} hangs; slowest case {self.slowest_s:.2f} s"
        )


class Untyped(AssertionError):
    """An input made the code under test raise something that is not a videolmm error."""


class Hang(AssertionError):
    """An input kept the code under test busy past :data:`CASE_TIMEOUT_S`."""


def run_case(tally: Tally, fn: Callable[[], Any]) -> None:
    """Run ``fn`` in a worker thread with a deadline and classify what it did (raise on a violation)."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - classifying every exception is the point
            outcome["exc"] = exc
            outcome["tb"] = traceback.format_exc()

    start = time.monotonic()
    worker = threading.Thread(target=work, daemon=True, name="fuzz-case")
    worker.start()
    worker.join(CASE_TIMEOUT_S)
    elapsed = time.monotonic() - start
    tally.cases += 1
    tally.seconds += elapsed
    tally.slowest_s = max(tally.slowest_s, elapsed)
    if worker.is_alive():
        tally.hangs += 1
        raise Hang(f"still running after {CASE_TIMEOUT_S:g} s")
    exc = outcome.get("exc")
    if exc is None:
        tally.ok += 1
    elif isinstance(exc, TYPED):
        tally.typed += 1
        name = f"HTTP {exc.error.status}" if isinstance(exc, ServeError) else type(exc).__name__
        tally.errors[name] = tally.errors.get(name, 0) + 1
    else:
        tally.untyped.append(f"{type(exc).__name__}: {str(exc)[:120]}")
        note = KNOWN.get((type(exc).__name__, _innermost_videolmm_file(exc)))
        if note is not None:
            tally.known[note] = tally.known.get(note, 0) + 1
            return
        raise Untyped(f"untyped {type(exc).__name__}: {exc}\n{outcome['tb']}")


def _innermost_videolmm_file(exc: BaseException) -> str:
    """``videolmm/...py`` of the deepest traceback frame inside the package ('' when none)."""
    found = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        path = frame.filename.replace(os.sep, "/")
        if "/videolmm/" in path and "/site-packages/" not in path:
            found = "videolmm/" + path.rsplit("/videolmm/", 1)[1]
    return found


def fuzz(target: str, test: Callable[..., None], tally: Tally, reliability, what: str) -> None:
    """Run a ``@given`` test: once (short pass), or in rounds until the target's share of the time is spent."""
    try:
        if FUZZ_SECONDS <= 0:
            test()
        else:
            end = time.monotonic() + FUZZ_SECONDS * SHARES[target]
            while time.monotonic() < end:
                test()
    finally:
        reliability(
            SECTION,
            f"{target}: {what}",
            "core" if target != "request" else "API parser",
            "a result or a typed videolmm error for every case; no untyped exception, no hang",
            tally.summary() + (f"; first untyped: {tally.untyped[0]}" if tally.untyped else ""),
        )
        if FUZZ_REPORT:
            with open(FUZZ_REPORT, "a", encoding="utf-8") as out:
                out.write(f"{target}: {tally.summary()}; untyped: {sorted(set(tally.untyped))[:5]}\n")
    if tally.known:
        pytest.xfail("; ".join(f"{n} case(s): {note}" for note, n in tally.known.items()))


def _settings(short_examples: int) -> settings:
    if FUZZ_SECONDS <= 0:
        return settings(
            max_examples=short_examples,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time in make test
            deadline=None,
            database=None,
            print_blob=True,
            suppress_health_check=list(HealthCheck),
        )
    return settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))


# ----------------------------------------------------------------------------- byte mutations

INTERESTING = [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x01", b"\x80\x00\x00\x00"]


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with 1-6 edits, positions biased toward the header where the structure is."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        size = len(data)
        if size == 0:
            break
        pos = draw(st.one_of(st.integers(0, min(size, 512) - 1), st.integers(0, size - 1)))
        op = draw(st.sampled_from(["flip", "byte", "word", "insert", "delete", "truncate", "repeat"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif op == "word":
            data[pos : pos + 4] = draw(st.sampled_from(INTERESTING))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[pos:]
        else:  # repeat a chunk (duplicated boxes, packets)
            chunk = data[pos : pos + draw(st.integers(1, 256))]
            data[pos:pos] = chunk
    return bytes(data)


# ----------------------------------------------------------------------------- the request parser

ROLES = st.sampled_from(["user", "assistant", "system", "developer", "tool", "function", "", "USER", "bot"])
URLS = st.one_of(
    st.sampled_from(
        [
            "data:video/mp4;base64,AAAA",
            "data:image/png;base64,iVBORw0KGgo=",
            "data:video/mp4;base64,@@",
            "data:,",
            "file:///etc/passwd",
            "file:///tmp/../../etc/shadow",
            "http://169.254.169.254/latest/meta-data/",
            "https://[64:ff9b::7f00:1]/x.mp4",
            "ftp://example.com/a.mp4",
            "",
            "\x00",
        ]
    ),
    st.text(max_size=40),
)
ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**66), max_value=2**66),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 1e-310, 1e308, 2**63, "8", None, True]),
)


@st.composite
def content_part(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["text", "image_url", "video_url", "input_audio", "bogus", "raw"]))
    if kind == "text":
        return {"type": "text", "text": draw(st.one_of(st.text(max_size=60), ANY_JSON))}
    if kind in ("image_url", "video_url"):
        inner = draw(st.one_of(st.fixed_dictionaries({"url": URLS}), URLS, ANY_JSON))
        return {"type": kind, kind: inner}
    if kind == "raw":
        return draw(ANY_JSON)
    return {"type": kind, **draw(st.dictionaries(st.text(max_size=8), ANY_JSON, max_size=2))}


@st.composite
def message(draw: st.DrawFn) -> Any:
    content = draw(st.one_of(st.text(max_size=80), st.lists(content_part(), max_size=4), ANY_JSON))
    out: dict[str, Any] = {"role": draw(ROLES), "content": content}
    if draw(st.booleans()):
        out.update(draw(st.dictionaries(st.sampled_from(["name", "tool_calls", "extra"]), ANY_JSON, max_size=2)))
    return out


OPTIONAL_FIELDS = {
    "max_tokens": NUMBERS,
    "max_completion_tokens": NUMBERS,
    "temperature": NUMBERS,
    "top_p": NUMBERS,
    "seed": NUMBERS,
    "n": NUMBERS,
    "stream": st.one_of(st.booleans(), ANY_JSON),
    "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": st.booleans()}), ANY_JSON),
    "stop": st.one_of(st.text(max_size=80), st.lists(st.text(max_size=80), max_size=6), ANY_JSON),
    "media_io_kwargs": st.one_of(
        st.fixed_dictionaries({"video": st.dictionaries(st.sampled_from(["num_frames", "fps", "x"]), NUMBERS)}),
        ANY_JSON,
    ),
    "mm_processor_kwargs": st.one_of(
        st.dictionaries(st.sampled_from(["num_frames", "fps", "max_pixels"]), NUMBERS), ANY_JSON
    ),
    "response_format": ANY_JSON,
    "tools": ANY_JSON,
    "logprobs": ANY_JSON,
    "user": ANY_JSON,
}


@st.composite
def chat_body(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": draw(st.one_of(st.just("fuzz-model"), st.text(max_size=20), ANY_JSON)),
        "messages": draw(st.one_of(st.lists(message(), min_size=0, max_size=5), ANY_JSON)),
    }
    for name in draw(st.lists(st.sampled_from(sorted(OPTIONAL_FIELDS)), max_size=5, unique=True)):
        body[name] = draw(OPTIONAL_FIELDS[name])
    if draw(st.integers(0, 9)) == 0:
        del body[draw(st.sampled_from(["model", "messages"]))]
    return body


VALID_BODY = json.dumps(
    {
        "model": "fuzz-model",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}},
                    {"type": "text", "text": "What colour is the square?"},
                ],
            },
        ],
        "max_tokens": 8,
        "stop": ["\n"],
        "media_io_kwargs": {"video": {"num_frames": 4}},
    }
).encode()


@st.composite
def plausible_body(draw: st.DrawFn) -> dict[str, Any]:
    """A request a client could mean (mostly accepted), with small values drawn near the limits."""
    parts: list[Any] = [
        {"type": kind, kind: {"url": url}}
        for kind, url in draw(
            st.lists(
                st.tuples(st.sampled_from(["video_url", "image_url"]), st.just("data:video/mp4;base64,AAAA")),
                max_size=3,
            )
        )
    ]
    parts.append({"type": "text", "text": draw(st.text(min_size=1, max_size=40))})
    messages: list[Any] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(st.text(max_size=20))})
    if draw(st.booleans()):
        messages += [{"role": "user", "content": "hi"}, {"role": "assistant", "content": draw(st.text(max_size=20))}]
    messages.append({"role": "user", "content": parts if draw(st.booleans()) else parts[-1]["text"]})
    body: dict[str, Any] = {"model": "fuzz-model", "messages": messages}
    if draw(st.booleans()):
        body["max_tokens"] = draw(st.integers(-1, 5000))
    if draw(st.booleans()):
        body["temperature"] = draw(st.floats(-0.5, 2.5))
    if draw(st.booleans()):
        body["stop"] = draw(st.lists(st.text(min_size=1, max_size=70), max_size=5))
    if draw(st.booleans()):
        body["media_io_kwargs"] = {
            "video": draw(
                st.fixed_dictionaries(
                    {}, optional={"num_frames": st.integers(-2, 200), "fps": st.floats(0, 300, allow_nan=False)}
                )
            )
        }
    return body


BODIES = st.one_of(
    plausible_body().map(lambda b: json.dumps(b).encode()),
    chat_body().map(lambda b: json.dumps(b).encode()),
    ANY_JSON.map(lambda v: json.dumps(v).encode()),
    mutated(VALID_BODY),
    st.binary(max_size=64),
    st.sampled_from([b"[" * 100_000, b"{" * 5000, b'{"model": 1e999}', b"NaN", b'{"a": ' + b"9" * 5000 + b"}"]),
)


def test_fuzz_request_parser(reliability) -> None:
    from videolmm.serve.config import LimitsConfig, ModelConfig
    from videolmm.serve.guards import check_request
    from videolmm.serve.ingress import parse_request
    from videolmm.serve.openai import to_job

    limits = LimitsConfig()
    model = ModelConfig(model_id="fuzz-model", pretrained="/nonexistent/fuzz-checkpoint")
    tally = Tally()

    def pipeline(body: bytes) -> Any:
        req = parse_request(body)
        check_request(req, limits)
        return to_job(req, request_id="fuzz", model=model, limits=limits)

    @_settings(SHORT_EXAMPLES["request"])
    @given(BODIES)
    def test(body: bytes) -> None:
        run_case(tally, lambda: pipeline(body))

    fuzz(
        "request", test, tally, reliability, "generated and mutated JSON bodies → parse_request, check_request, to_job"
    )
    assert tally.typed > 0 and tally.ok > 0  # the strategies reach both outcomes


# ----------------------------------------------------------------------------- the media path


def _webm(size: int = 64, frames: int = 8) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1  # libvpx's automatic threads fail to open late in a long run
        stream.codec_context.bit_rate = 1_000_000
        stream.codec_context.time_base = Fraction(1, 8)
        for i in range(frames):
            image = np.zeros((size, size, 3), np.uint8)
            image[:, : (i + 1) * size // frames] = (200, 30, 30)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def _png(size: int = 24) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(size * size * 3, dtype=np.uint8).reshape(size, size, 3)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def seeds(clips: dict[str, Path]) -> dict[str, bytes]:
    # the WebM seed is _webm()'s output kept as a file: once other tests' media corpora have been written
    # in the same process, libvpx refuses to open (avcodec_open2 EINVAL), so the seed is not re-encoded here
    webm = Path(__file__).parent / "fuzz" / "seed-64px-8f.webm"
    return {"mp4": clips["red_right"].read_bytes(), "webm": webm.read_bytes(), "png": _png()}


@pytest.fixture(scope="module")
def loader() -> Any:
    from videolmm.media.loader import FrameLoader, MediaLimits
    from videolmm.plugin.manager import get_plugin_manager, get_registry

    limits = MediaLimits(
        max_duration_s=600.0,
        max_frame_pixels=3840 * 2160,
        max_source_fps=240.0,
        max_source_frames=100_000,
        max_decode_frames=2_000,
        max_decoded_bytes=512 << 20,
        decode_timeout_s=CASE_TIMEOUT_S / 2,
    )
    return FrameLoader(get_registry(get_plugin_manager()), limits=limits)


@pytest.mark.parametrize("container", ["mp4", "webm"])
@pytest.mark.parametrize("decoder", ["keyframe", "pyav"])
def test_fuzz_video_bytes(container: str, decoder: str, seeds: dict[str, bytes], loader: Any, reliability) -> None:
    from videolmm.types import MediaSettings, SamplingSpec

    media = MediaSettings(decoder=decoder, sampler="uniform", sampling=SamplingSpec(num_frames=4))
    seed = seeds[container]
    frames = loader.load(seed, media)  # the unmutated seed decodes: the mutations start from a real file
    assert frames.array.shape[0] == 4
    tally = Tally()

    @_settings(SHORT_MEDIA_EXAMPLES)
    @given(mutated(seed))
    def test(data: bytes) -> None:
        run_case(tally, lambda: loader.load(data, media))

    fuzz(
        f"{container}-{decoder}",
        test,
        tally,
        reliability,
        f"mutated {container.upper()} bytes → FrameLoader ({decoder} decoder, uniform 4 frames)",
    )


def test_fuzz_image_bytes(seeds: dict[str, bytes], reliability) -> None:
    from videolmm.media.images import load_image

    assert load_image(seeds["png"]).shape == (24, 24, 3)
    tally = Tally()

    @_settings(SHORT_EXAMPLES["png"])
    @given(mutated(seeds["png"]))
    def test(data: bytes) -> None:
        run_case(tally, lambda: load_image(data))

    fuzz("png", test, tally, reliability, "mutated PNG bytes → load_image")


# ----------------------------------------------------------------------------- the findings, replayed

#: finding → (seed, how the fuzzer's minimal case changed it, the loader it goes through)
FINDINGS = {
    "F1": ("png", lambda b: b[:136] + b"\x00" + b[136:], "image"),
    "F2": ("webm", lambda b: b.replace(b"00:00:01", b"\xff\xff\xff\xff0:01", 1), "pyav"),
    "F3": ("webm", lambda b: b.replace(b"V_VP8", b"V^VP8", 1), "pyav"),
    # the fuzzer's minimal case itself (a second, 65-pixel-wide keyframe header spliced in before the
    # 64-pixel one; the seed's track UIDs are random, so it is kept as a file, not as an edit)
    "F4": ("webm", lambda _: (Path(__file__).parent / "fuzz" / "f4-size-change.webm").read_bytes(), "pyav"),
}


@pytest.mark.parametrize("finding", sorted(FINDINGS))
def test_fuzz_findings_replayed(finding: str, seeds: dict[str, bytes], loader: Any, reliability) -> None:
    """Each minimal case the fuzzer found, replayed: an xfail naming the finding until its owner maps it
    to a typed error, then a regression test (F1-F4 are fixed; their ``KNOWN`` entries are gone)."""
    from videolmm.media.images import load_image
    from videolmm.types import MediaSettings, SamplingSpec

    container, change, path = FINDINGS[finding]
    data = change(seeds[container])
    assert data != seeds[container]
    media = MediaSettings(decoder="pyav", sampler="uniform", sampling=SamplingSpec(num_frames=4))
    tally = Tally()
    run_case(tally, (lambda: load_image(data)) if path == "image" else (lambda: loader.load(data, media)))
    observed = tally.summary() + (f"; untyped: {tally.untyped[0]}" if tally.untyped else "")
    reliability(
        SECTION,
        f"fuzz finding {finding} replayed (mutated {container.upper()} → {path})",
        "core",
        "a typed videolmm error",
        observed,
    )
    if tally.known:
        pytest.xfail(next(iter(tally.known)))
    assert tally.typed + tally.ok == 1
