"""The OpenAI-compatible HTTP front: FastAPI routes on a Serve ingress deployment.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /v1/models/{id}``,
``GET /health``, ``GET /playground`` (:mod:`~videolmm.serve.playground`). Every route but ``/health``
and the playground page requires the API key when one is configured.
Errors are OpenAI error JSON (``{"error": {"message", "type", "param", "code"}}``) with the HTTP
status of :mod:`videolmm.serve.errors`; a 503 carries ``Retry-After``. Every response carries
``x-request-id``: Serve's request id, which is also the core request's id and appears in every
log line about the request (a client's own ``x-request-id`` is used only when it is 1-64 plain
characters, :func:`~videolmm.serve.guards.request_id`). An unexpected exception never reaches a
client as text: it is logged with its traceback and the request id, and answered with a 500 that
names only the stage and the id. Without an API key, every route checks the ``Host`` header
against ``security.allowed_hosts`` (421 otherwise), against DNS rebinding.

A request flows: read the body (size limit) → validate (:mod:`~videolmm.serve.protocol`) →
:func:`~videolmm.serve.openai.to_job` → media deployment (``DecodedRequest``) → model
deployment, routed by ``multiplexed_model_id`` → response or SSE stream.
"""

# No ``from __future__ import annotations``: the deployment class is pickled by value, and FastAPI
# must see the route parameters' annotations as classes on the replica.

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import SecretStr
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, RequestCancelledError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from videolmm.media.resize import FrameResize
from videolmm.serve.config import ServeArgs
from videolmm.serve.errors import (
    ApiError,
    ServeError,
    from_core_error,
    internal,
    internal_error,
    model_not_found,
    overloaded,
    replica_failed,
    unauthorized,
)
from videolmm.serve.guards import (
    InflightBytes,
    check_content_type,
    check_host,
    check_request,
    parse_request,
    read_body,
    request_id,
)
from videolmm.serve.jobs import Generated
from videolmm.serve.metrics import IngressMetrics
from videolmm.serve.openai import StreamEvents, completion, to_job
from videolmm.serve.playground import mount_playground
from videolmm.serve.protocol import ModelCard, ModelList
from videolmm.serve.routing import DecodeRouter
from videolmm.serve.security import api_key_matches

logger = logging.getLogger("ray.serve.videolmm.ingress")

#: The status a request is counted with when its client went away mid-stream (nginx's convention).
CLIENT_CLOSED = 499


def error_response(error: ApiError) -> JSONResponse:
    """Render an :class:`ApiError` (adds ``Retry-After`` on a 503; Serve adds ``x-request-id``)."""
    headers: dict[str, str] = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after_s)))
    return JSONResponse(status_code=error.status, content=error.body(), headers=headers)


@serve.deployment(name="OpenAIIngress")
@serve.ingress()
class OpenAIIngress:
    """OpenAI routes over the media and model deployments.

    Args:
        args: the app's configuration.
        media: handle to :class:`~videolmm.serve.deployments.MediaDecoder`; None when the model replica
            decodes (``decode_in: model_replica``).
        model: handle to :class:`~videolmm.serve.deployments.ModelServer`.
        api_key: the bearer key every route but ``/health`` requires; None for none.
    """

    def __init__(
        self, args: ServeArgs, media: DeploymentHandle | None, model: DeploymentHandle, api_key: SecretStr | None
    ) -> None:
        self.args = args
        # By reference whatever Ray's default is: under RAY_SERVE_THROUGHPUT_OPTIMIZED (gRPC between
        # deployments, by value) Serve would resolve the MediaDecoder's response here and send the frames
        # on again; by reference the model replica reads them from the object store (one crossing).
        self.media = media.options(_by_reference=True) if media is not None else None
        self.model = model
        self.api_key = api_key
        self.created = int(time.time())
        self._cards: dict[str, ModelCard] | None = None
        self.metrics = IngressMetrics()
        self.inflight = InflightBytes(args.limits.max_inflight_bytes, args.ingress_deployment.retry_after_s)
        #: small or no media skip the MediaDecoder hop (``inline_decode_max_bytes``)
        self.router = DecodeRouter(
            args.decode_in if media is not None else "model_replica",
            args.inline_decode_max_bytes,
            args.security.media_roots,
        )
        #: model id -> the frame resize the MediaDecoder runs first (``media_resize``), asked once
        self._resizes: dict[str, FrameResize | None] | None = None
        #: model id -> why its last request found it unavailable (a failed load); cleared by a success
        self.unavailable: dict[str, str] = {}

    # ---------------------------------------------------------------------------- app

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve calls this on the replica after ``__init__``: the routes close over this instance."""
        app = FastAPI(title="videolmm", openapi_url=None, docs_url=None, redoc_url=None)

        @app.exception_handler(ServeError)
        async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
            return error_response(exc.error)

        @app.exception_handler(StarletteHTTPException)
        async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
            path = request.url.path[:200]
            error = ApiError(exc.status_code, f"{request.method} {path}: {exc.detail}", code=code)
            return error_response(error)

        if self.api_key is None:  # a keyless server answers only its own names (DNS rebinding)

            @app.middleware("http")
            async def _host_check(request: Request, call_next: Any) -> Response:
                try:
                    check_host(request.headers.get("host"), self.args.security.allowed_hosts)
                except ServeError as exc:
                    return error_response(exc.error)
                return await call_next(request)

        @app.get("/health")
        async def health() -> dict[str, Any]:
            if self.unavailable:  # still 200: the other models serve; the listed ones answer 503
                return {"status": "degraded", "unavailable": dict(self.unavailable)}
            return {"status": "ok"}

        mount_playground(app, self.args.limits)  # GET /playground: a page without secrets, served without the key

        @app.get("/v1/models")
        async def list_models(request: Request) -> JSONResponse:
            self.authorize(request)
            cards = await self.model_cards()
            return JSONResponse(ModelList(data=list(cards.values())).model_dump(exclude_none=True))

        @app.get("/v1/models/{model_id:path}")
        async def get_model(model_id: str, request: Request) -> JSONResponse:
            self.authorize(request)
            if self.args.model(model_id) is None:
                raise model_not_found(model_id, [m.model_id for m in self.args.models])
            return JSONResponse((await self.model_cards())[model_id].model_dump(exclude_none=True))

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Response:
            return await self.chat(request)

        return app

    async def model_cards(self) -> dict[str, ModelCard]:
        """``/v1/models`` entries in vLLM's style (``root``, ``max_model_len``) plus family and default
        frames, asked once from the model deployment (settings resolved without weights); while it
        cannot answer, the plain cards (not cached)."""
        if self._cards is not None:
            return self._cards
        try:
            described = await self.model.describe_models.remote()
        except Exception:  # the listing must not fail with the model replica: plain cards this time
            logger.warning("describe_models failed; listing plain model cards", exc_info=True)
            described = None
        cards = {
            m.model_id: ModelCard(id=m.model_id, created=self.created, **(described or {}).get(m.model_id, {}))
            for m in self.args.models
        }
        if described is not None:
            self._cards = cards
        return cards

    async def frame_resizes(self) -> dict[str, FrameResize | None]:
        """Per model, the resize the MediaDecoder runs on sampled frames (``media_resize``), asked once
        from the model deployment (processors loaded without weights); while it cannot answer, none
        (frames at their decoded size: the same answer, more bytes) and asked again next time."""
        if self._resizes is not None:
            return self._resizes
        try:
            resizes = await self.model.frame_resizes.remote()
        except Exception:  # the request still works, with frames at their decoded size
            logger.warning("frame_resizes failed; sending frames at their decoded size", exc_info=True)
            return {}
        self._resizes = resizes
        return resizes

    # ---------------------------------------------------------------------------- routes

    def authorize(self, request: Request) -> None:
        """Raise 401 unless the request carries the configured bearer key."""
        if not api_key_matches(request.headers.get("authorization"), self.api_key):
            raise unauthorized()

    async def chat(self, request: Request) -> Response:
        """``POST /v1/chat/completions``."""
        start = time.perf_counter()
        rid = request_id(request.headers.get("x-request-id"))
        model_id, status, streaming = "-", 500, False
        hold = self.inflight.hold()
        try:
            self.authorize(request)
            check_content_type(request.headers.get("content-type"))
            req = parse_request(await read_body(request, self.args.limits.max_request_bytes, hold))
            check_request(req, self.args.limits)
            model = self.args.model(req.model)
            if model is None:  # tagged "-": a client must not create metric series with made-up names
                raise model_not_found(req.model, [m.model_id for m in self.args.models])
            model_id = model.model_id
            job = to_job(req, request_id=rid, model=model, limits=self.args.limits)
            handle = self.model.options(multiplexed_model_id=model.model_id)
            # The media stage's response goes into the model call unawaited: Serve resolves it for the
            # model replica, so the decoded frames cross processes once (media → model), not through
            # here; a refusal arrives there as an ApiError and comes back as the model call's result.
            # A request with no or small local media goes to the model replica as it is (it decodes).
            route = self.router.route(job)
            work: Any = job
            if not route.inline and self.media is not None:
                if self.args.media_resize and job.videos:
                    job = replace(job, resize=(await self.frame_resizes()).get(model_id))
                work = self.media.decode.remote(job)
                handle = handle.options(_by_reference=True)  # see __init__: the frames skip this replica
            response_id, created = f"chatcmpl-{rid}", int(time.time())
            if req.stream:
                events = StreamEvents(job, response_id, created, req.include_usage, decoded_in=route.where)
                stream = handle.options(stream=True).generate_stream.remote(work)
                try:
                    first = await self._call(stream.__anext__(), "model server", rid)
                    if not isinstance(first, str):  # a refusal or failure before any text: a plain error
                        _raise_if_failed(first, rid)
                except BaseException:
                    stream.cancel()
                    raise
                status, streaming = 200, True
                self._note_availability(model_id, None)
                body = self._stream(stream, first, events, rid=rid, model_id=model_id, start=start)
                return StreamingResponse(body, media_type="text/event-stream")
            generated = await self._call(handle.generate.remote(work), "model server", rid)
            result = _raise_if_failed(generated, rid).result
            status = 200
            self._note_availability(model_id, None)
            body = completion(
                result, job, completion_id=response_id, created=created, batch_size=generated.batch_size,
                decoded_in=route.where,
            )  # fmt: skip
            return JSONResponse(body.model_dump(exclude_none=True))
        except ServeError as exc:
            status = exc.error.status
            self._note_availability(model_id, exc.error)
            return error_response(exc.error)
        except ClientDisconnect:  # gone while sending its body: nobody reads this answer
            status = CLIENT_CLOSED
            logger.info("rid=%s client went away while sending the body", rid)
            return error_response(ApiError(CLIENT_CLOSED, "the client closed the connection", code="client_closed"))
        except (asyncio.CancelledError, RequestCancelledError):  # the client went away: not a server error
            status = CLIENT_CLOSED
            logger.info("rid=%s client went away before the answer", rid)
            raise
        except Exception:  # a bug: the traceback goes to the log under the request id, never to the client
            logger.exception("rid=%s ingress failed", rid)
            return error_response(internal_error(rid, "the ingress"))
        finally:
            hold.close()
            if not streaming:  # a stream records itself when it ends
                self._record(rid, model_id, status, start)

    def _note_availability(self, model_id: str, error: ApiError | None) -> None:
        """Remember a model that answered 503 ``model_unavailable`` (for ``/health``); forget it on success."""
        if error is not None and error.code == "model_unavailable":
            self.unavailable[model_id] = error.message
        elif error is None:
            self.unavailable.pop(model_id, None)

    async def _stream(
        self, stream: Any, first: Any, events: StreamEvents, *, rid: str, model_id: str, start: float
    ) -> AsyncIterator[str]:
        """The SSE body: chunks leave as the model replica's deltas arrive.

        A client that goes away cancels this generator (Serve propagates the disconnect); the
        model call is then cancelled, which cancels the request in the scheduler and frees its slot.
        """
        status, chunks = 200, 0
        try:
            yield events.role()
            event = first
            while isinstance(event, str):
                if event:
                    chunks += 1
                    yield events.content(event)
                try:
                    event = await self._call(stream.__anext__(), "model server", rid)
                except StopAsyncIteration:
                    raise ServeError(internal("model server: the stream ended without a result")) from None
            _raise_if_failed(event, rid)
            for line in events.finish(event.result, event.batch_size):
                yield line
        except ServeError as exc:  # after the 200 went out: an error event, as OpenAI sends it
            status = exc.error.status
            logger.warning("rid=%s stream failed after %d chunks: %s", rid, chunks, exc.error.message)
            for line in events.error(exc.error):
                yield line
        except (asyncio.CancelledError, GeneratorExit, RequestCancelledError):
            status = CLIENT_CLOSED
            stream.cancel()
            logger.info("rid=%s client went away after %d chunks; generation cancelled", rid, chunks)
            raise
        except Exception:  # a bug: logged with its traceback; the client sees only the request id
            status = 500
            stream.cancel()
            logger.exception("rid=%s stream failed after %d chunks", rid, chunks)
            for line in events.error(internal_error(rid, "the ingress")):
                yield line
        finally:
            self._record(rid, model_id, status, start)

    def _record(self, rid: str, model_id: str, status: int, start: float) -> None:
        elapsed = time.perf_counter() - start
        self.metrics.record(model_id, status, elapsed)
        logger.info("rid=%s model=%s status=%d %.3f s", rid, model_id, status, elapsed)

    async def _call(self, response: Any, what: str, rid: str) -> Any:
        """Await a deployment call: backpressure or a dead replica → 503 with Retry-After, a bug → 500."""
        try:
            return await response
        except BackPressureError as exc:
            logger.info("rid=%s %s backpressure: %s", rid, what, exc)
            raise ServeError(overloaded(exc.retry_after_s, what)) from exc
        except DeploymentUnavailableError as exc:
            raise ServeError(overloaded(None, what)) from exc
        except RequestCancelledError:
            raise
        except RayActorError as exc:  # the replica died with the request on it; Serve replaces the replica
            logger.warning("rid=%s %s replica failed: %s", rid, what, type(exc).__name__)
            raise ServeError(replica_failed(what, type(exc).__name__)) from exc
        except Exception as exc:  # RayTaskError (a bug, an untyped library error): its text holds a traceback,
            # pids, node addresses and paths, so it goes to the log under the request id, never to the client
            logger.exception("rid=%s %s failed", rid, what)
            raise ServeError(internal_error(rid, f"the {what}")) from exc


def _raise_if_failed(generated: Any, rid: str) -> Generated:
    """The model call's :class:`Generated` if it succeeded; raise the request's error otherwise."""
    if isinstance(generated, ApiError):
        raise ServeError(generated)
    if not isinstance(generated, Generated):
        raise ServeError(internal(f"model server: unexpected answer {type(generated).__name__}"))
    if not generated.result.ok:
        error = from_core_error(generated.result.error or "unknown error", rid)
        if error.status >= 500:  # the core's text stays in the log
            logger.error("rid=%s generation failed: %s", rid, generated.result.error)
        raise ServeError(error)
    return generated


__all__ = ["OpenAIIngress", "check_content_type", "error_response", "parse_request", "read_body"]
