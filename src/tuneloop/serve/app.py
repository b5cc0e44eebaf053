"""FastAPI app factory for the OpenAI-compatible server (models, chat and text completions)."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneloop.errors import TuneloopError
from tuneloop.infer.params import MAX_N, GenParams, ParamError, check_count
from tuneloop.serve.engine import Engine, Job, bridge_events
from tuneloop.serve.schemas import ChatCompletionRequest, CompletionRequest, SamplingFields

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB
DEFAULT_CHAT_MAX_TOKENS = 256
DEFAULT_COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


class APIError(Exception):
    """An error answered as OpenAI's `{"error": {message, type, param, code}}` body."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status, message, type, param, code)

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


def _error_response(err: APIError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


class BodyLimitMiddleware:
    """Refuses bodies over `limit` bytes with 413 before any JSON parsing (R25).

    Checks Content-Length first, then counts streamed chunks, so a chunked upload cannot slip
    past; the buffered body is replayed to the app.
    """

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = APIError(413, f"request body exceeds the server limit of {self.limit} bytes",
                           code="body_too_large")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    return await _error_response(too_big)(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await _error_response(too_big)(scope, receive, send)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls see the real disconnect

        await self.app(scope, replay, send)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return f"{loc}: {err['msg']}{more}", loc or None


def _gen_params(req: SamplingFields, max_tokens: int, max_tokens_field: str) -> GenParams:
    """The request's sampling parameters, checked by GenParams; a bad one is a 400 naming it."""
    try:
        check_count("n", req.n, MAX_N)
        return GenParams(max_tokens, req.temperature, req.top_p, req.seed, req.stop_tuple())
    except ParamError as exc:
        err = exc.named({"max_tokens": max_tokens_field})
        raise APIError(400, f"{err.what} ({err.fix})", param=err.name,
                       code="invalid_value") from None


def create_app(
    engine: Engine,
    *,
    model_name: str,
    chat_prompt_ids: Callable[[list[dict[str, str]]], list[int]],
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    owned_by: str = "tuneloop",
):
    """Build the app: GET /v1/models, POST /v1/chat/completions, POST /v1/completions.

    The app takes no file paths from requests (R26): the model is fixed when the server starts.
    """
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, engine.stop)

    app = FastAPI(title="tuneloop serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimitMiddleware, limit=max_body_bytes)
    created = int(time.time())
    tokenizer = engine.tokenizer

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return _error_response(APIError(exc.status_code, str(exc.detail), code=code))

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), api_key):
            raise APIError(401, "missing or invalid API key (send Authorization: Bearer KEY)",
                           type="authentication_error", code="invalid_api_key")

    async def parse(request: Request, model: type[BaseModel]) -> Any:
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise APIError(400, f"request body is not valid JSON: {exc}",
                           code="invalid_json") from None
        if not isinstance(data, dict):
            raise APIError(400, "request body must be a JSON object", code="invalid_json")
        try:
            req = model.model_validate(data)
        except ValidationError as exc:
            message, loc = _validation_message(exc)
            raise APIError(400, message, param=loc, code="invalid_value") from None
        if req.model != model_name:
            raise APIError(404, f"model {req.model!r} is not served here; this server serves "
                                f"{model_name!r} (see GET /v1/models)",
                           param="model", code="model_not_found")
        return req

    def check_length(prompt_ids: list[int], max_tokens: int) -> None:
        if not prompt_ids:
            raise APIError(400, "prompt is empty", param="prompt", code="invalid_value")
        if len(prompt_ids) + max_tokens > engine.context_length:
            raise APIError(
                400,
                f"prompt ({len(prompt_ids)} tokens) + max_tokens ({max_tokens}) exceeds the "
                f"model's context length of {engine.context_length} tokens",
                param="max_tokens", code="context_length_exceeded")

    async def run_jobs(jobs: list[Job]) -> list[tuple[list, int]]:
        futures = [asyncio.wrap_future(engine.submit(j)) for j in jobs]
        try:
            return await asyncio.gather(*futures)
        except Exception as exc:  # noqa: BLE001 - any worker failure is a 500, not a crash
            raise APIError(500, f"generation failed: {exc}", type="server_error",
                           code="generation_failed") from None

    @app.get("/v1/models")
    async def list_models(request: Request):
        check_key(request)
        return {"object": "list", "data": [
            {"id": model_name, "object": "model", "created": created, "owned_by": owned_by}]}

    @app.get("/health")
    async def health():
        # Batching counters let tests and benchmarks see that concurrent requests were merged.
        return {"status": "ok", "queued": engine.queued(), "batches_run": engine.batches_run,
                "max_batch_rows": engine.max_rows_seen}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_key(request)
        req: ChatCompletionRequest = await parse(request, ChatCompletionRequest)
        messages = [m.as_dict() for m in req.messages]
        try:
            prompt_ids = list(chat_prompt_ids(messages))
        except TuneloopError as exc:
            raise APIError(400, exc.message(), param="messages", code="invalid_messages") from None
        field = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
        max_tokens = (req.max_completion_tokens if req.max_completion_tokens is not None
                      else req.max_tokens if req.max_tokens is not None
                      else DEFAULT_CHAT_MAX_TOKENS)
        sampling = _gen_params(req, max_tokens, field)
        check_length(prompt_ids, max_tokens)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        now = int(time.time())
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return _sse(_stream(engine, prompt_ids, sampling, req.n, rid, now, model_name,
                                chat=True, include_usage=include_usage))
        [(choices, n_prompt)] = await run_jobs([Job(prompt_ids, sampling, n=req.n)])
        return JSONResponse({
            "id": rid, "object": "chat.completion", "created": now, "model": model_name,
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": c.text},
                 "logprobs": None, "finish_reason": c.finish_reason}
                for i, c in enumerate(choices)],
            "usage": _usage(n_prompt, sum(c.n_tokens for c in choices)),
        })

    @app.post("/v1/completions")
    async def completions(request: Request):
        check_key(request)
        req: CompletionRequest = await parse(request, CompletionRequest)
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        max_tokens = req.max_tokens if req.max_tokens is not None else DEFAULT_COMPLETION_MAX_TOKENS
        sampling = _gen_params(req, max_tokens, "max_tokens")
        ids = [tokenizer.encode(p) for p in prompts]
        for p in ids:
            check_length(p, max_tokens)
        rid = f"cmpl-{uuid.uuid4().hex}"
        now = int(time.time())
        if req.stream:
            if len(prompts) != 1:
                raise APIError(400, "stream=true takes a single prompt string", param="prompt",
                               code="invalid_value")
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return _sse(_stream(engine, ids[0], sampling, req.n, rid, now, model_name,
                                chat=False, include_usage=include_usage,
                                echo=prompts[0] if req.echo else None))
        results = await run_jobs([Job(p, sampling, n=req.n) for p in ids])
        out, n_prompt, n_completion = [], 0, 0
        for prompt, (choices, np_) in zip(prompts, results):
            n_prompt += np_
            for c in choices:
                n_completion += c.n_tokens
                out.append({"index": len(out), "text": (prompt if req.echo else "") + c.text,
                            "logprobs": None, "finish_reason": c.finish_reason})
        return JSONResponse({"id": rid, "object": "text_completion", "created": now,
                             "model": model_name, "choices": out,
                             "usage": _usage(n_prompt, n_completion)})

    return app


async def _stream(engine: Engine, prompt_ids: list[int], sampling: GenParams, n: int, rid: str,
                  created: int, model: str, *, chat: bool, include_usage: bool,
                  echo: str | None = None) -> AsyncIterator[str]:
    """Server-sent events: one chunk per text delta, a finish chunk per choice, then [DONE]."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    job = Job(prompt_ids, sampling, n=n, on_event=bridge_events(loop, events))
    obj = "chat.completion.chunk" if chat else "text_completion"

    def chunk(index: int, text: str | None, finish: str | None, role: bool = False) -> str:
        if chat:
            delta: dict[str, Any] = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": index, "text": text or "", "logprobs": None,
                      "finish_reason": finish}
        body = {"id": rid, "object": obj, "created": created, "model": model,
                "choices": [choice]}
        return f"data: {json.dumps(body)}\n\n"

    engine.submit(job)
    for i in range(n):
        if chat:
            yield chunk(i, "", None, role=True)
        elif echo:
            yield chunk(i, echo, None)
    finished = 0
    while finished < n:
        kind, index, payload = await events.get()
        if kind == "delta":
            yield chunk(index, payload, None)
        elif kind == "finish":
            finished += 1
            yield chunk(index, None if chat else "", payload)
        else:  # worker error: tell the client in-band, then end the stream
            err = {"error": {"message": payload, "type": "server_error", "param": None,
                             "code": "generation_failed"}}
            yield f"data: {json.dumps(err)}\n\n"
            break
    if include_usage:
        try:
            choices, n_prompt = await asyncio.wrap_future(job.future)
        except Exception:  # noqa: BLE001
            choices, n_prompt = None, 0  # the error was already sent in-band
        if choices is not None:
            body = {"id": rid, "object": obj, "created": created, "model": model, "choices": [],
                    "usage": _usage(n_prompt, sum(c.n_tokens for c in choices))}
            yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"
