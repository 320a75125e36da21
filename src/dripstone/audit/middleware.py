"""Records every change made through the API or the dashboard in the audit log.

A change is a POST, PUT, PATCH or DELETE under an API base path answered 2xx (and not one of
the 200 answers Paubox gives to a refused request, `{"errors": ...}`). The endpoint's own
transaction has committed by the time its answer starts; the event is then written in a
transaction of its own, and only after that is the answer let through to the client. So an
answer a client received always has its event; a change whose event could not be written
(the process ended, or the database refused in between) is logged as an error instead.

A dashboard change is any POST (or PUT) outside the API by a signed-in user (its route puts the user
in the request's state under `ACTOR`) answered 2xx or 3xx (forms redirect when they succeed).
A POST refused for the user's role (403) is recorded too: who tried what."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from asgi_correlation_id import correlation_id
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dripstone import db
from dripstone.audit import service
from dripstone.http import CALLER, Caller

log = logging.getLogger("dripstone.audit")

CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_PREFIXES = ("/v1/orca/{username}", "/v1/marketing")
ACTOR = "dripstone_actor"  # a dashboard request's user, as a `service.Actor`
NOT_DASHBOARD = ("/v1/", "/t/", "/static/")
# Forms post; the drip builder puts its graph.
DASHBOARD_CHANGES = frozenset({"POST", "PUT"})


class AuditTrail:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in CHANGES:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(("/v1/orca/", "/v1/marketing/")):
            await self._held(scope, receive, send, _is_api_change, _record)
        elif scope["method"] in DASHBOARD_CHANGES and not path.startswith(NOT_DASHBOARD):
            await self._held(scope, receive, send, _is_dashboard_change, _record_dashboard)
        else:
            await self.app(scope, receive, send)

    async def _held(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        recorded: Callable[[int], bool],
        write: Callable[[Scope, dict[str, Any], int, list[Message]], None],
    ) -> None:
        """Answers `recorded` by status are held back until their event is written."""
        # The endpoint's Request keeps the caller in this dict: the same one, shared.
        state: dict[str, Any] = scope.setdefault("state", {})
        held: list[Message] = []
        status = 0

        async def holding(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            if not recorded(status):
                for earlier in held:
                    await send(earlier)
                held.clear()
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await run_in_threadpool(write, scope, state, status, held)
                for answer in held:
                    await send(answer)
                held.clear()

        await self.app(scope, receive, holding)


def _is_api_change(status: int) -> bool:
    return 200 <= status < 300


def _is_dashboard_change(status: int) -> bool:
    return 200 <= status < 400 or status == 403


def _record_dashboard(
    scope: Scope, state: dict[str, Any], status: int, _answer: list[Message]
) -> None:
    actor: service.Actor | None = state.get(ACTOR)
    route: BaseRoute | None = scope.get("route")
    if actor is None or route is None:
        return
    action = f"{scope['method']} {getattr(route, 'path', '')}"
    _write(actor, action, status, dict(scope.get("path_params", {})))


def _record(scope: Scope, state: dict[str, Any], status: int, answer: list[Message]) -> None:
    caller: Caller | None = state.get(CALLER)
    body = b"".join(m.get("body", b"") for m in answer if m["type"] == "http.response.body")
    returned = _answer_of(body)
    route: BaseRoute | None = scope.get("route")
    if caller is None or route is None or returned is _REFUSED:
        return
    template = getattr(route, "path", "")
    for prefix in API_PREFIXES:
        template = template.removeprefix(prefix)
    named: dict[str, Any] = {
        name: value for name, value in scope.get("path_params", {}).items() if name != "username"
    }
    named.update(_query_ids(scope.get("query_string", b"")))
    for name, value in (returned or {}).items():
        named.setdefault(name, value)
    actor = service.Actor(caller.account_id, "api_key", caller.key_id, caller.key_prefix)
    _write(actor, f"{scope['method']} {template}", status, named)


def _write(actor: service.Actor, action: str, status: int, named: dict[str, Any]) -> None:
    change = service.Change(
        actor=actor,
        action=action,
        status=status,
        object_ids=named,
        request_id=correlation_id.get(),
    )
    try:
        service.record(db.database(), change)
    except Exception:
        log.exception("audit event not recorded", extra={"action": change.action})


_REFUSED: dict[str, Any] = {}


def _answer_of(body: bytes) -> dict[str, Any] | None:
    """The ids an answer returned; `_REFUSED` for Paubox's 200 `{"errors": ...}`."""
    if not body:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    if "errors" in parsed and "data" not in parsed:
        return _REFUSED
    data = parsed.get("data")
    if isinstance(data, list):
        return {"ids": [item.get("id") for item in data if isinstance(item, dict)]}
    if isinstance(data, dict):
        return {
            name: value
            for name, value in data.items()
            if name in ("id", "jid") or name.endswith("_id")
        }
    return None


def _query_ids(query_string: bytes) -> dict[str, str | list[str]]:
    """Ids named in the query (`subscriber_ids=a,b`, `subscription_list_id=c`)."""
    found: dict[str, str | list[str]] = {}
    for name, value in parse_qsl(query_string.decode("latin-1")):
        if name.endswith("_ids"):
            found[name] = [part.strip() for part in value.split(",")]
        elif name.endswith("_id"):
            found[name] = value.strip()
    return found
