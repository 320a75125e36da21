"""The page renderer: Jinja2 templates with autoescaping on, and what every page can use
(the signed-in user, their CSRF token, the navigation, asset URLs that change with the file)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from dripstone.users.service import Action
from dripstone.web.auth import CSRF_FIELD

templates = Jinja2Templates(directory=str(resources.files("dripstone.web") / "templates"))
templates.env.autoescape = True
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True

# (path, label, action needed to see it)
NAVIGATION = (
    ("/", "Overview", Action.READ),
    ("/subscribers", "Subscribers", Action.READ),
    ("/imports", "Import", Action.EDIT_CONTENT),
    ("/lists", "Lists", Action.READ),
    ("/mailings", "Mailings", Action.READ),
    ("/sends", "Sends", Action.READ),
    ("/drips", "Drip campaigns", Action.READ),
    ("/settings", "Settings", Action.MANAGE_USERS),
)


@cache
def asset_url(name: str) -> str:
    """`/static/NAME?v=HASH`: browsers may keep a file forever, and fetch it again once changed."""
    content = (resources.files("dripstone.web") / "static" / name).read_bytes()
    return f"/static/{name}?v={hashlib.sha256(content).hexdigest()[:12]}"


@cache
def vendor_url(package: str) -> str:
    manifest = json.loads(
        (resources.files("dripstone.web") / "static" / "vendor" / "manifest.json").read_text()
    )
    return f"/static/vendor/{manifest[package]['served_as']}"


def _current(request: Request, path: str) -> bool:
    here = request.url.path
    return here == "/" if path == "/" else here == path or here.startswith(path + "/")


def number(value: int | float | None) -> str:
    return "—" if value is None else f"{value:,}"


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f} %"


def when(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters["number"] = number
templates.env.filters["percent"] = percent
templates.env.filters["when"] = when
templates.env.globals["asset_url"] = asset_url
templates.env.globals["vendor_url"] = vendor_url
templates.env.globals["csrf_field"] = CSRF_FIELD
templates.env.globals["Action"] = Action


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """Render a page for whoever is signed in (`request.state.viewer`, if anyone)."""
    viewer = getattr(request.state, "viewer", None)
    navigation = [
        (path, label, _current(request, path))
        for path, label, action in NAVIGATION
        if viewer is not None and viewer.may(action)
    ]
    full = {"viewer": viewer, "navigation": navigation, **(context or {})}
    return templates.TemplateResponse(request, name, full, status_code=status_code)
