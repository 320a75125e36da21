"""What the dashboard shows instead of a page: the sign-in page for a visitor without a
session, an error page (in HTML, never the API's JSON) for anything refused."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import RedirectResponse, Response

from dripstone.web.auth import SignInRequired, sign_in_path
from dripstone.web.templating import render

TITLES = {
    400: "That request was not understood",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    413: "Too large",
    422: "That could not be done",
    429: "Too many attempts",
    500: "Something went wrong",
}


def sign_in_redirect(request: Request, exc: SignInRequired) -> Response:
    target = sign_in_path(exc.next_path)
    if request.headers.get("hx-request"):
        # htmx follows this instead of swapping the sign-in page into a fragment.
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def error_page(request: Request, status: int, message: str) -> Response:
    title = TITLES.get(status, "That could not be done")
    if status == 404 and message == "Not Found":
        message = "There is no page at this address."
    return render(request, "error.html", {"title": title, "message": message}, status_code=status)
