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
from tuneloop.infer.decode import TokenLogprob
from tuneloop.infer.params import MAX_N, GenParams, ParamError, check_count
from tuneloop.serve.engine import Engine, Job, bridge_events
from tuneloop.serve.schemas import ChatCompletionRequest, CompletionRequest, SamplingFields

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB
DEFAULT_CHAT_MAX_TOKENS = 256
DEFAULT_COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
MAX_TOP_LOGPROBS = 20  # chat completions' top_logprobs limit (OpenAI's)
MAX_COMPLETION_LOGPROBS = 5  # /v1/completions' logprobs limit (OpenAI's)


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


class LogprobFormat:
    """Turns the Decoder's TokenLogprob entries into OpenAI's chat and completions shapes."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._text: dict[int, str] = {}

    def token(self, tok: int) -> str:
        """The text of one token (a byte-level piece of a character decodes to U+FFFD)."""
        text = self._text.get(tok)
        if text is None:
            text = self._text[tok] = self.tokenizer.decode([tok], skip_special_tokens=False)
        return text

    def chat(self, entries: list[TokenLogprob]) -> list[dict[str, Any]]:
        """`choices[i].logprobs.content`: token, logprob, bytes, top_logprobs per token."""
        def one(tok: int, lp: float) -> dict[str, Any]:
            text = self.token(tok)
            return {"token": text, "logprob": lp, "bytes": list(text.encode("utf-8"))}

        return [{**one(e.id, e.logprob), "top_logprobs": [one(t, v) for t, v in e.top]}
                for e in entries]

    def completion(self, entries: list[TokenLogprob | None], offset: int) -> dict[str, list]:
        """Legacy completions `logprobs`: tokens, token_logprobs, top_logprobs, text_offset.

        `top_logprobs[i]` maps token text to log-probability (the top k plus the token itself);
        `None` entries (the first prompt token) have neither.
        """
        out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                                "text_offset": []}
        for e in entries:
            if e is None:
                continue
            text = self.token(e.id)
            out["tokens"].append(text)
            out["token_logprobs"].append(e.logprob)
            top: dict[str, float] = {}
            for t, v in e.top:  # two ids may share a text: keep the more likely
                top.setdefault(self.token(t), v)
            if e.top:
                top.setdefault(text, e.logprob)
            out["top_logprobs"].append(top)
            out["text_offset"].append(offset)
            offset += len(text)
        return out

    def prompt(self, ids: list[int], entries: list[TokenLogprob | None]) -> dict[str, list]:
        """Completions logprobs of an echoed prompt: the first token's are None."""
        out = self.completion([e for e in entries if e is not None],
                              len(self.token(ids[0])) if ids else 0)
        if ids:
            out["tokens"].insert(0, self.token(ids[0]))
            out["token_logprobs"].insert(0, None)
            out["top_logprobs"].insert(0, None)
            out["text_offset"].insert(0, 0)
        return out


def _check_logprobs(value: Any, name: str, limit: int) -> None:
    if value is not None and (isinstance(value, bool) or not 0 <= value <= limit):
        raise APIError(400, f"{name} must be an integer in [0, {limit}], got {value!r}",
                       param=name, code="invalid_value")


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
    fmt = LogprobFormat(tokenizer)
    vocab = len(tokenizer)

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
        _check_logprobs(req.top_logprobs, "top_logprobs", MAX_TOP_LOGPROBS)
        if req.top_logprobs is not None and not req.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs",
                           code="invalid_value")
        top = (req.top_logprobs or 0) if req.logprobs else None
        check_length(prompt_ids, max_tokens)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        now = int(time.time())
        job = Job(prompt_ids, sampling, n=req.n, logprobs=top)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return _sse(_stream(engine, job, rid, now, model_name, fmt, chat=True,
                                include_usage=include_usage))
        [(choices, n_prompt)] = await run_jobs([job])
        return JSONResponse({
            "id": rid, "object": "chat.completion", "created": now, "model": model_name,
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": c.text},
                 "logprobs": None if c.logprobs is None else {
                     "content": fmt.chat(c.logprobs), "refusal": None},
                 "finish_reason": c.finish_reason}
                for i, c in enumerate(choices)],
            "usage": _usage(n_prompt, sum(c.n_tokens for c in choices)),
        })

    @app.post("/v1/completions")
    async def completions(request: Request):
        check_key(request)
        req: CompletionRequest = await parse(request, CompletionRequest)
        _check_logprobs(req.logprobs, "logprobs", MAX_COMPLETION_LOGPROBS)
        ids, texts = prompt_forms(req.prompt)
        max_tokens = req.max_tokens if req.max_tokens is not None else DEFAULT_COMPLETION_MAX_TOKENS
        # max_tokens 0 scores the prompt only (with echo + logprobs: prompt log-probabilities)
        generate = max_tokens != 0
        sampling = _gen_params(req, max_tokens if generate else 1, "max_tokens")
        for p in ids:
            check_length(p, max_tokens)
        rid = f"cmpl-{uuid.uuid4().hex}"
        now = int(time.time())
        want_prompt = req.echo and req.logprobs is not None
        jobs = [Job(p, sampling, n=req.n, logprobs=req.logprobs, echo=want_prompt,
                    generate=generate) for p in ids]
        if req.stream:
            if len(ids) != 1:
                raise APIError(400, "stream=true takes a single prompt", param="prompt",
                               code="invalid_value")
            if not generate:
                raise APIError(400, "stream=true needs max_tokens ≥ 1", param="max_tokens",
                               code="invalid_value")
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return _sse(_stream(engine, jobs[0], rid, now, model_name, fmt, chat=False,
                                include_usage=include_usage,
                                echo=texts[0] if req.echo else None))
        results = await run_jobs(jobs)
        out, n_prompt, n_completion = [], 0, 0
        for p_ids, text, (choices, np_) in zip(ids, texts, results):
            n_prompt += np_
            for c in choices:
                n_completion += c.n_tokens
                out.append({"index": len(out), "text": (text if req.echo else "") + c.text,
                            "logprobs": completion_logprobs(req, p_ids, text, c),
                            "finish_reason": c.finish_reason})
        return JSONResponse({"id": rid, "object": "text_completion", "created": now,
                             "model": model_name, "choices": out,
                             "usage": _usage(n_prompt, n_completion)})

    def prompt_forms(prompt: Any) -> tuple[list[list[int]], list[str]]:
        """(token ids, text) per prompt, from a string, strings, token ids or token-id lists."""
        if isinstance(prompt, str) or prompt and isinstance(prompt[0], int):
            prompt = [prompt]
        ids, texts = [], []
        for i, p in enumerate(prompt):
            if isinstance(p, str):
                ids.append(tokenizer.encode(p))
                texts.append(p)
                continue
            bad = [t for t in p if not 0 <= t < vocab]
            if bad:
                raise APIError(400, f"prompt {i}: token id {bad[0]} is outside the vocabulary "
                                    f"(0..{vocab - 1})", param="prompt", code="invalid_value")
            ids.append(list(p))
            texts.append(tokenizer.decode(p, skip_special_tokens=False))
        return ids, texts

    def completion_logprobs(req: CompletionRequest, p_ids: list[int], text: str,
                            c: Any) -> dict[str, list] | None:
        if req.logprobs is None:
            return None
        gen = list(c.logprobs or [])
        if c.stop_logprob is not None:
            gen.append(c.stop_logprob)  # the end-of-turn token: scored, though not in the text
        if not req.echo:
            return fmt.completion(gen, 0)
        head = fmt.prompt(p_ids, c.prompt_logprobs or [])
        tail = fmt.completion(gen, len(text))
        return {k: head[k] + tail[k] for k in head}

    return app


async def _stream(engine: Engine, job: Job, rid: str, created: int, model: str,
                  fmt: LogprobFormat, *, chat: bool, include_usage: bool,
                  echo: str | None = None) -> AsyncIterator[str]:
    """Server-sent events: one chunk per text delta, a finish chunk per choice, then [DONE].

    With logprobs, a delta chunk carries the log-probabilities of the tokens whose text it
    releases (streaming holds back text that may become a stop string, so a chunk may carry
    several tokens, and the last tokens ride on a content-less chunk before the finish).
    """
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    job.on_event = bridge_events(loop, events)
    n = job.n
    obj = "chat.completion.chunk" if chat else "text_completion"
    offsets = [len(echo or "")] * n
    pending: dict[int, list[TokenLogprob]] = {}

    def logprobs(index: int) -> Any:
        entries = pending.pop(index, [])
        if job.logprobs is None:
            return None
        if chat:
            return {"content": fmt.chat(entries), "refusal": None}
        out = fmt.completion(entries, offsets[index])
        offsets[index] += sum(len(t) for t in out["tokens"])
        return out

    def chunk(index: int, text: str | None, finish: str | None, role: bool = False,
              lp: Any = None) -> str:
        if chat:
            delta: dict[str, Any] = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}
        else:
            choice = {"index": index, "text": text or "", "logprobs": lp,
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
        if kind == "logprobs":
            pending.setdefault(index, []).extend(payload)
        elif kind == "delta":
            yield chunk(index, payload, None, lp=logprobs(index))
        elif kind == "finish":
            finished += 1
            if pending.get(index):
                yield chunk(index, "", None, lp=logprobs(index))
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
