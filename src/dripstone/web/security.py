"""Headers every dashboard answer carries: a Content-Security-Policy of `default-src 'self'`
(no script, style, font or frame from anywhere else, none inline), no framing by other sites,
no caching of pages that show contact data, and `Server-Timing` (the server's time until the
answer began, which a browser's developer tools show and `bench/pages.py` reads)."""

from __future__ import annotations

import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

POLICY = (
    "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
# Paths that are not the dashboard: the API (JSON), its reference pages (FastAPI's, which
# load their scripts from a CDN), and the links in recipients' emails.
NOT_DASHBOARD = ("/v1/", "/docs", "/redoc", "/openapi.json", "/healthz", "/t/")


def is_dashboard_path(path: str) -> bool:
    return not path.startswith(NOT_DASHBOARD)


class DashboardHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_dashboard_path(scope["path"]):
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                elapsed_ms = (time.perf_counter() - started) * 1000
                headers["Server-Timing"] = f"app;dur={elapsed_ms:.1f}"
                # A page may set its own, stricter policy (the sandboxed mailing preview).
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = POLICY
                    headers["X-Frame-Options"] = "DENY"
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                if not scope["path"].startswith("/static/"):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, with_headers)
