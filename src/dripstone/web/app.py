"""Mounts the dashboard on the app: its routes, its static files, its headers and the pages
it shows instead of the API's JSON errors."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from dripstone.config import Settings
from dripstone.web import (
    drip_builder,
    drip_insights,
    drips,
    imports,
    lists,
    mailings,
    overview,
    sends,
    signin,
    subscriber,
    subscribers,
)
from dripstone.web import settings as settings_pages
from dripstone.web.auth import SignInRequired
from dripstone.web.errors import sign_in_redirect
from dripstone.web.security import DashboardHeaders

ROUTERS = (
    signin.router,
    overview.router,
    subscribers.router,  # before `subscriber`: /subscribers/bulk is not a subscriber's id
    subscriber.router,
    lists.router,
    imports.router,
    mailings.router,
    sends.router,
    drip_builder.router,
    drips.router,
    drip_insights.router,
    settings_pages.router,
)


def include_dashboard(app: FastAPI, settings: Settings) -> None:
    app.state.public_url = settings.public_url
    setattr(app.state, settings_pages.SENDER_STATE, settings_pages.SenderSettings.of(settings))
    for router in ROUTERS:
        app.include_router(router)
    static = StaticFiles(directory=str(resources.files("dripstone.web") / "static"))
    app.mount("/static", static, name="static")
    app.add_middleware(DashboardHeaders)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        return sign_in_redirect(request, exc)
