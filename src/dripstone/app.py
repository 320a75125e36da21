"""Builds the FastAPI application: routers under both base paths, auth, the error envelope."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dripstone import db
from dripstone.accounts import service as accounts
from dripstone.analytics.api import router as analytics_router
from dripstone.audit.api import router as audit_router
from dripstone.audit.middleware import AuditTrail
from dripstone.config import Settings, load_settings
from dripstone.delivery.pipeline import configure_pipeline
from dripstone.drips.api import router as drips_router
from dripstone.errors import DripstoneError
from dripstone.idempotency import service as idempotency
from dripstone.jobs import service as jobs_service
from dripstone.jobs import tasks as jobs_tasks
from dripstone.jobs.api import router as jobs_router
from dripstone.jobs.queue import configure_queue, create_consumer
from dripstone.jobs.ticker import Ticker
from dripstone.jsontext import unreadable
from dripstone.leases import Heartbeat
from dripstone.logs import configure_logging
from dripstone.mailings.api import router as mailings_router
from dripstone.subscribers.api import router as subscribers_router
from dripstone.subscribers.importing import configure_imports
from dripstone.tracking import api as tracking_api
from dripstone.tracking import writer as tracking_writer
from dripstone.tracking.api import router as tracking_router
from dripstone.users import service as users
from dripstone.web import errors as web_errors
from dripstone.web import imports as web_imports
from dripstone.web.app import include_dashboard
from dripstone.web.security import is_dashboard_path

log = logging.getLogger("dripstone.http")

DOMAIN_ROUTERS = (
    subscribers_router,
    mailings_router,
    drips_router,
    jobs_router,
    analytics_router,
    audit_router,
)
BODY_UNREADABLE = "There was an error parsing the body"
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "in_progress",
    413: "payload_too_large",
    422: "invalid",
    429: "rate_limited",
}


def configure_runtime(settings: Settings) -> None:
    """Point this process at the configured database and queue."""
    db.configure(settings.resolved_database_url)
    configure_queue(settings.resolved_queue_url, settings.queue_name)
    jobs_service.set_limits(
        jobs_service.JobLimits(
            batch_size=settings.job_batch_size,
            lease_seconds=settings.job_lease_seconds,
            max_attempts=settings.job_max_attempts,
        )
    )
    configure_pipeline(settings)
    configure_imports(settings.data_dir)


def create_app(settings: Settings | None = None, *, run_consumer: bool = False) -> FastAPI:
    """The API. With `run_consumer`, a queue consumer runs inside it (embedded mode)."""
    settings = settings or load_settings()
    configure_runtime(settings)
    import dripstone.tasks  # noqa: F401  (registers every task and job step)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        consumer, ticker, heartbeat = None, None, None
        # Before the first sign-in: an unknown address is refused as slowly as a wrong password.
        users.prepare_unknown_user_hash()
        tracking_writer.start(db.database())
        if run_consumer:
            jobs_tasks.optimize_database.call_local()
            jobs_service.recover_jobs(db.database())
            heartbeat = Heartbeat(settings.delivery_claim_seconds)
            heartbeat.start()
            consumer = create_consumer(settings.queue_workers, embedded=True)
            consumer.start()
            ticker = Ticker()
            ticker.start()
        try:
            yield
        finally:
            if ticker is not None:
                ticker.stop()
            if consumer is not None:
                consumer.stop(graceful=True)
            if heartbeat is not None:  # after the consumer: its last tasks keep their claims
                heartbeat.stop()
            await tracking_writer.stop()  # the server has answered its last request

    app = FastAPI(
        title="Dripstone",
        version="0.1.0",
        summary="Self-hosted email marketing with drip campaigns; the Paubox Marketing API.",
        lifespan=lifespan,
    )
    app.add_middleware(AuditTrail)  # inside IdempotentPosts: a replay changes nothing again
    app.add_middleware(IdempotentPosts)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        max_import_bytes=settings.max_import_bytes,
    )
    app.add_middleware(RequestLog)
    app.add_middleware(CorrelationIdMiddleware, header_name="X-Request-Id")
    _add_error_handlers(app)

    async def _username_in_path(
        username: str = Path(max_length=64, description="the account's API username"),
    ) -> None:
        """Checked against the key's account by the authentication dependency."""

    # First: recipients' hits are most of the requests after a send, and routes are tried in
    # order.
    app.include_router(tracking_router)
    orca = APIRouter(prefix="/v1/orca/{username}")
    marketing = APIRouter(prefix="/v1/marketing")
    for router in DOMAIN_ROUTERS:
        orca.include_router(router, dependencies=[Depends(_username_in_path)])
        marketing.include_router(router)
    app.include_router(orca)
    app.include_router(marketing)

    include_dashboard(app, settings)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: answers when the process serves requests."""
        return {"status": "ok"}

    return app


def envelope(status: int, message: str, code: str | None = None, **details: Any) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={
            "error": message,
            "code": code or STATUS_CODES.get(status, "error"),
            "details": details,
        },
    )


def _field_path(loc: tuple[int | str, ...]) -> str:
    if loc == ("body",):
        return "body"  # the body as a whole: missing, not an object, or refused by a validator
    path = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _message(error: Mapping[str, Any]) -> str:
    """Pydantic's message, without the "Value error, " it puts before our validators' own."""
    message: str = error["msg"]
    return message.removeprefix("Value error, ") if error["type"] == "value_error" else message


def _describe(error: Mapping[str, str]) -> str:
    return f"{error['field']}: {error['message']}" if error["field"] else error["message"]


def embedded_app() -> FastAPI:
    """The app `dripstone serve` runs in each server process: API plus queue consumer."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings, run_consumer=True)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DripstoneError)
    async def _domain(request: Request, exc: DripstoneError) -> Response:
        if is_dashboard_path(request.url.path):
            return web_errors.error_page(request, exc.status, exc.message)
        return envelope(exc.status, exc.message, exc.code, **exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"field": _field_path(tuple(e["loc"])), "message": _message(e), "type": e["type"]}
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in errors):
            return envelope(400, "the request body is not valid JSON", "malformed_json")
        first = errors[0]
        message = _describe(first)
        if is_dashboard_path(request.url.path):
            return web_errors.error_page(request, 400, message)
        route = request.scope.get("route")
        quirk = (getattr(route, "openapi_extra", None) or {}).get("x-validation-errors")
        if quirk == "errors-list":
            return JSONResponse({"errors": [_describe(e) for e in errors]}, status_code=200)
        if quirk == "errors-string":
            return JSONResponse({"errors": message}, status_code=200)
        in_body = any(e["loc"][0] == "body" for e in exc.errors() if e["loc"])
        status, code = (422, "validation_failed") if in_body else (400, "invalid_parameter")
        return envelope(status, message, code, field=first["field"], errors=errors)

    @app.exception_handler(IntegrityError)
    async def _integrity(_request: Request, exc: IntegrityError) -> JSONResponse:
        # The services check uniqueness first; a concurrent write (or a check that compares
        # differently from the index) still lands here. Anything else is a bug: a 500.
        if not _is_unique_violation(exc):
            raise exc
        log.warning("unique constraint violated", extra={"request_id": correlation_id.get()})
        return envelope(
            422, "this conflicts with an existing record; try another value", "conflict"
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and request.url.path.startswith(tracking_api.PREFIX):
            return tracking_api.not_found_page()
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if is_dashboard_path(request.url.path):
            return web_errors.error_page(request, exc.status_code, message)
        if exc.status_code == 400 and message == BODY_UNREADABLE:
            # FastAPI's answer to a JSON body json.loads raised on, other than a syntax error.
            cause = exc.__cause__
            reason = (
                "not valid JSON (UTF-8)"
                if cause is None or isinstance(cause, UnicodeDecodeError)
                else unreadable(cause)
            )
            return envelope(400, f"the request body is {reason}", "malformed_json")
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint; API paths start with /v1/marketing/ or /v1/orca/USERNAME/"
        return envelope(exc.status_code, message)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        request_id = correlation_id.get()
        response = envelope(
            500,
            "internal error; the server log has the details under this request id",
            "internal_error",
            request_id=request_id,
        )
        # The middleware cannot add its header to a response built after it gave up.
        if request_id:
            response.headers["X-Request-Id"] = request_id
        return response


def _is_unique_violation(exc: IntegrityError) -> bool:
    original = exc.orig
    return getattr(original, "sqlstate", None) == "23505" or getattr(
        original, "sqlite_errorname", None
    ) in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")


class RequestLog:
    """One log line per answered request (plain ASGI: no task and no streams per request,
    which Starlette's function middleware costs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, noting_status)
        route = scope.get("route")
        # The route template, never the concrete path: paths and queries can hold contact data.
        log.info(
            "request",
            extra={
                "method": scope["method"],
                "route": getattr(route, "path", "unmatched"),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "request_id": correlation_id.get(),
            },
        )


class BodySizeLimit:
    """Answers 413 for request bodies over `max_bytes`, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_import_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_import_bytes = max_import_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._too_large(scope, receive, send, limit)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        # No declared length (chunked): buffer up to the limit, then replay.
        body = await _whole_body(receive, limit)
        if body is None:
            await self._too_large(scope, receive, send, limit)
            return
        await self.app(scope, _replaying(body, receive), send)

    def _limit(self, scope: Scope) -> int:
        """CSV uploads may be far larger than any JSON body."""
        path = scope["path"]
        if scope["method"] == "POST" and (
            path.endswith(("/subscribers_import", "/subscribers_uploads"))
            or path == web_imports.UPLOAD_PATH
        ):
            return self.max_import_bytes
        return self.max_bytes

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response: Response
        if is_dashboard_path(scope["path"]):
            message = f"The file is over the limit of {limit:,} bytes; split it and try again."
            response = web_errors.error_page(Request(scope), 413, message)
        else:
            response = envelope(413, f"request body over the limit of {limit} bytes", field="body")
        await response(scope, receive, send)


class IdempotentPosts:
    """A POST with an `Idempotency-Key` header that was answered within the last 24 hours
    gets that answer again, and does nothing again. The key belongs to the API key's account;
    the same key with another path, query or body is refused (422), and while the first
    request runs a second one waits its turn with a 409. Answers of 401, 429 and 5xx are not
    kept, so a retry runs again."""

    KEY = re.compile(r"[\x21-\x7e]{1,255}")
    NOT_KEPT = (401, 429)
    REFUSALS = {
        idempotency.Claim.OTHER_REQUEST: (
            422,
            "already used for a different request in the last 24 hours",
        ),
        idempotency.Claim.IN_PROGRESS: (
            409,
            "the first request with this key is still running; retry later",
        ),
    }

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else None
        key = headers.get("idempotency-key") if headers and scope["method"] == "POST" else None
        if headers is None or key is None:
            await self.app(scope, receive, send)
            return
        if not self.KEY.fullmatch(key):
            refusal = envelope(
                400,
                "Idempotency-Key: 1 to 255 visible ASCII characters",
                "invalid_parameter",
                field="Idempotency-Key",
            )
            await refusal(scope, receive, send)
            return
        account_id = await run_in_threadpool(_account_of, headers.get("authorization"))
        if account_id is None:  # the route answers 401
            await self.app(scope, receive, send)
            return
        body = await _whole_body(receive) or b""
        fingerprint = hashlib.sha256(
            b"\0".join((scope["path"].encode(), scope["query_string"], body))
        ).hexdigest()
        database = db.database()
        claim, answer = await run_in_threadpool(
            idempotency.claim, database, account_id, key, fingerprint
        )
        if claim is idempotency.Claim.FIRST:
            await self._first(scope, receive, send, body, (database, account_id, key))
            return
        if claim is idempotency.Claim.REPLAY and answer is not None:
            response = Response(answer.body, answer.status_code, media_type=answer.content_type)
            response.headers["Idempotent-Replayed"] = "true"
        else:
            status, message = self.REFUSALS[claim]
            response = envelope(status, f"Idempotency-Key: {message}", field="Idempotency-Key")
        await response(scope, receive, send)

    async def _first(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        claimed: tuple[db.Database, int, str],
    ) -> None:
        status, content_type, chunks = 500, None, bytearray()

        async def keeping(message: Message) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                content_type = Headers(raw=message["headers"]).get("content-type")
            elif message["type"] == "http.response.body":
                chunks.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, _replaying(body, receive), keeping)
        except BaseException:
            await run_in_threadpool(idempotency.forget, *claimed)
            raise
        if status >= 500 or status in self.NOT_KEPT:
            await run_in_threadpool(idempotency.forget, *claimed)
        else:
            answer = idempotency.Answer(status, content_type, bytes(chunks))
            await run_in_threadpool(idempotency.keep, *claimed, answer)


def _account_of(authorization: str | None) -> int | None:
    secret = accounts.key_in_header(authorization)
    if secret is None:
        return None
    with db.database().read_sessions() as session:
        account = accounts.authenticate(session, secret)
    return None if account is None else account.id


async def _whole_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """The request body read to its end; None once it grows past `limit`."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body.extend(message.get("body", b""))
        if limit is not None and len(body) > limit:
            return None
        if not message.get("more_body", False):
            break
    return bytes(body)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the app `body`, already read, then listens on (for disconnects)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
