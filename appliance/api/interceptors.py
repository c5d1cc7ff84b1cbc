"""The gRPC guard in front of every service: authentication (bearer token -> Principal),
the role check per method, the per-caller rate limit, and request metrics (count by method and
status code, latency). The Principal is handed to the servicers
through a context variable, for their per-topic checks (`current_principal()`).

Health is always open. With no token table (local, loopback use or --insecure) every call
passes as an anonymous admin. Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from appliance import metrics
from appliance.auth import OPEN_SERVICES, Principal, RateLimiter, TokenTable
from appliance.store.store import CALL_DEADLINE

ANONYMOUS = Principal("anonymous", "admin")
OWN_SERVICES = "api.queue."  # the prefix of atp's own services (proto/queue.proto's package)
_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "atp_principal", default=ANONYMOUS
)
_rate_check: contextvars.ContextVar[Callable[[], bool]] = contextvars.ContextVar(
    "atp_rate_check", default=lambda: True
)


def current_principal() -> Principal:
    return _principal.get()


def topic_owner() -> str:
    """Whose count of topics a new topic goes to (max_topics_per_token): the caller's token
    name, or "" (max_topics alone) for an admin token and with no token table at all."""
    principal = _principal.get()
    return "" if principal is ANONYMOUS or principal.role == "admin" else principal.name


def rate_check() -> Callable[[], bool]:
    """The current stream's per-message rate limit: call it once per message a stream handler
    treats as one call (False: over the caller's limit, refuse that message as a unary call
    would be refused)."""
    return _rate_check.get()


class Guard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self, tokens: TokenTable, limiter: RateLimiter, strangers: RateLimiter | None = None
    ) -> None:
        self.tokens = tokens
        self.limiter = limiter
        # Calls refused for want of a valid token, per peer host (token guessing, floods).
        self.strangers = strangers or RateLimiter(0, 1)
        # Wrapped handlers by (method, principal) when the call is let through: built once,
        # not per call (the principals come from a fixed table).
        self._wrapped: dict[tuple[str, Principal], grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        service, _, method = details.method.lstrip("/").rpartition("/")
        if handler is None or service in OPEN_SERVICES:
            return handler
        principal, refusal = self._authorize(dict(details.invocation_metadata or ()), method)
        if (
            handler.stream_stream is not None
            and refusal is None
            and service.startswith(OWN_SERVICES)
        ):
            limiter = self.limiter if self.limiter.rate > 0 else None
            return _wrap_stream(handler, method, principal, limiter, bool(self.tokens))
        if handler.unary_unary is None:  # streaming (server reflection): the token check only
            return handler if refusal is None else _refuse_stream(handler, refusal, self.strangers)
        if refusal is not None:
            return _wrap(handler, method, principal, refusal, self.strangers, bool(self.tokens))
        wrapped = self._wrapped.get((details.method, principal))
        if wrapped is None:
            limiter = self.limiter if self.limiter.rate > 0 else None
            wrapped = _wrap(handler, method, principal, None, limiter, bool(self.tokens))
            self._wrapped[(details.method, principal)] = wrapped
        return wrapped

    def _authorize(
        self, metadata: dict[str, Any], method: str
    ) -> tuple[Principal, tuple[grpc.StatusCode, str] | None]:
        principal = ANONYMOUS
        if self.tokens:
            header = str(metadata.get("authorization", ""))
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                return ANONYMOUS, (
                    grpc.StatusCode.UNAUTHENTICATED,
                    "missing 'authorization: Bearer <token>'",
                )
            found = self.tokens.lookup(token.strip())
            if found is None:
                return ANONYMOUS, (grpc.StatusCode.UNAUTHENTICATED, "unknown token")
            principal = found
            if not principal.may_call(method):
                return principal, (
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"token {principal.name!r} ({principal.role}) may not call {method}",
                )
        return principal, None


class Undecodable:
    """What a request that is not a valid protobuf message (corrupt wire format, invalid UTF-8
    in a string) deserializes to, so the guard answers INVALID_ARGUMENT instead of gRPC's
    UNKNOWN with a traceback logged at error level."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as exc:
            return Undecodable(str(exc))

    return parse


async def _refuse(
    context: grpc.aio.ServicerContext, refusal: tuple[grpc.StatusCode, str], strangers: RateLimiter
) -> None:
    """Abort with the refusal; a caller without a valid token who calls too often from one
    peer host gets RESOURCE_EXHAUSTED instead (token guessing, floods)."""
    code, message = refusal
    if code == grpc.StatusCode.UNAUTHENTICATED and not strangers.allow(_peer_host(context)):
        code = grpc.StatusCode.RESOURCE_EXHAUSTED
        message = "too many calls without a valid token from this address; slow down"
    await context.abort(code, message)


def _peer_host(context: grpc.aio.ServicerContext) -> str:
    """'ipv4:127.0.0.1:5000' -> 'ipv4:127.0.0.1' (the port changes with every connection)."""
    return str(context.peer()).rpartition(":")[0]


def _refuse_stream(
    handler: grpc.RpcMethodHandler, refusal: tuple[grpc.StatusCode, str], strangers: RateLimiter
) -> grpc.RpcMethodHandler:
    async def refuse(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        await _refuse(context, refusal, strangers)
        yield  # pragma: no cover - makes this an async generator, as a stream handler is

    return grpc.stream_stream_rpc_method_handler(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _wrap_stream(
    handler: grpc.RpcMethodHandler,
    method: str,
    principal: Principal,
    limiter: RateLimiter | None,
    keyed_by_token: bool,
) -> grpc.RpcMethodHandler:
    """A stream handler run as `principal`, with the rate limit offered per message
    (`rate_check()`): a stream is one call for the token check, many for the limit."""
    inner = handler.stream_stream

    async def guarded(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        # grpc.aio runs each call in its own task, so these settings end with the call.
        _principal.set(principal)
        if limiter is not None:
            key = principal.name if keyed_by_token else context.peer().rpartition(":")[0]
            _rate_check.set(lambda: limiter.allow(key))
        replies = inner(_Decoded(requests, context, method), context)
        if inspect.isasyncgen(replies):
            async for reply in replies:
                yield reply
        else:  # a handler that writes with context.write
            await replies

    return grpc.stream_stream_rpc_method_handler(
        guarded,
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


class _Decoded:
    """A stream's requests; one that is not a valid message ends the call INVALID_ARGUMENT.
    An iterator object, not an async generator: a read cancelled by the handler (a stream
    closing) must leave the stream readable, and a cancelled generator would be finished."""

    def __init__(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext, method: str
    ) -> None:
        self._requests = requests
        self._context = context
        self._method = method

    def __aiter__(self) -> _Decoded:
        return self

    async def __anext__(self) -> Any:
        request = await self._requests.__anext__()
        if isinstance(request, Undecodable):
            await self._context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a message of the stream is not a valid {self._method} message: {request.reason}",
            )
        return request


def _wrap(
    handler: grpc.RpcMethodHandler,
    method: str,
    principal: Principal,
    refusal: tuple[grpc.StatusCode, str] | None,
    limiter: RateLimiter | None,
    keyed_by_token: bool,
) -> grpc.RpcMethodHandler:
    """The handler, preceded by the refusal (if any; `limiter` then limits the callers without
    a valid token by peer host) and the rate limit (per token, or per peer host when no tokens
    are configured)."""
    inner = handler.unary_unary

    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            if refusal is not None:
                assert limiter is not None
                await _refuse(context, refusal, limiter)
            if limiter is not None:
                key = principal.name if keyed_by_token else _peer_host(context)
                if not limiter.allow(key):
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limit exceeded")
            if isinstance(request, Undecodable):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the request is not a valid {method} message: {request.reason}",
                )
            token = _principal.set(principal)
            remaining = context.time_remaining()
            deadline = CALL_DEADLINE.set(
                None if remaining is None else asyncio.get_running_loop().time() + remaining
            )
            try:
                return await inner(request, context)
            finally:
                CALL_DEADLINE.reset(deadline)
                _principal.reset(token)
        finally:
            code = context.code() or grpc.StatusCode.OK
            metrics.GRPC_REQUESTS.labels(method, getattr(code, "name", str(code))).inc()
            metrics.GRPC_LATENCY.labels(method).observe(time.perf_counter() - started)

    return grpc.unary_unary_rpc_method_handler(
        guarded,
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )
