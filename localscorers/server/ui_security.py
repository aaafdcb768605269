"""The web UI's guard: the server token, CSRF tokens and protective response headers.

Every UI request passes through ``Guard.protect``:

- when the server has a token (``ServerSettings.token``), the request must carry it in
  an ``Authorization: Bearer`` header or in the cookie set by visiting ``/?token=...``
  once (that visit redirects to the same URL without the token, so it leaves the
  address bar and the history);
- a POST (every action) must carry a CSRF token: an HMAC, under a secret made when the
  process starts, of a random nonce kept in a ``SameSite=Strict`` cookie. Another site
  can neither read the cookie nor compute the HMAC (a signed double-submit cookie), and
  a request whose ``Origin`` or ``Sec-Fetch-Site`` says it came from elsewhere is
  refused as well;
- every response gets a Content-Security-Policy that allows scripts only from the
  server itself, so even text that slipped past escaping could not run.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from localscorers.exceptions import LocalScorersError, NotFoundError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from starlette.requests import Request

    from localscorers.server.settings import ServerSettings

    Handler = Callable[[Request, Mapping[str, str]], Response]
    Refusal = Callable[[Request, int, str, str], Response]

__all__ = ["CSRF_COOKIE", "CSRF_FIELD", "CSRF_HEADER", "TOKEN_COOKIE", "Guard"]

logger = logging.getLogger(__name__)

TOKEN_COOKIE = "localscorers_token"  # noqa: S105 - a cookie name, not a secret
CSRF_COOKIE = "localscorers_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

# Scripts and styles only from this server; htmx needs nothing inline (its indicator
# styles are turned off in base.html). SVG charts use presentation attributes.
_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # A token may be in the URL of the first visit: never send URLs to other sites.
    # ("no-referrer" would also make browsers send "Origin: null" on our own forms.)
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class Guard:
    """Checks the token and CSRF token of UI requests and decorates their responses.

    Args:
        settings: the server's settings (``token``).
        refuse: renders a refusal page: ``refuse(request, status, title, message)``.
    """

    def __init__(self, settings: ServerSettings, *, refuse: Refusal) -> None:
        self._token = settings.token
        self._secret = secrets.token_bytes(32)
        self._refuse = refuse

    def csrf_token(self, request: Request) -> str:
        """Return the CSRF token to put in this response's forms (and set its cookie)."""
        nonce = request.cookies.get(CSRF_COOKIE)
        if not nonce or len(nonce) > 128:
            nonce = getattr(request.state, "csrf_nonce", None) or secrets.token_urlsafe(32)
            request.state.csrf_nonce = nonce
        return self._sign(nonce)

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()

    def protect(
        self, handler: Handler, *, action: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a page (GET) or action (POST) handler with the token and CSRF checks.

        The handler runs in a worker thread, since the public API it calls blocks.
        """

        async def endpoint(request: Request) -> Response:
            refused = self._check_token(request)
            if refused is not None:
                return self._finish(request, refused)
            form: dict[str, str] = {}
            if action:
                received = await request.form()
                form = {key: value for key, value in received.items() if isinstance(value, str)}
                problem = self._csrf_problem(request, form)
                if problem is not None:
                    logger.warning("Refused %s %s: %s", request.method, request.url.path, problem)
                    response = self._refuse(request, 403, "Request refused", problem)
                    return self._finish(request, response)
            try:
                response = await run_in_threadpool(handler, request, form)
            except NotFoundError as exc:
                response = self._refuse(request, 404, "Not found", str(exc))
            except LocalScorersError as exc:
                # Pages show the errors they expect in place; anything else the user
                # caused (a bad query parameter, a busy database) gets the API's message.
                response = self._refuse(request, 400, type(exc).__name__, str(exc))
            return self._finish(request, response)

        return endpoint

    def _check_token(self, request: Request) -> Response | None:
        if self._token is None:
            return None
        given = request.query_params.get("token")
        if given is not None and _same(given, self._token):
            url = request.url.remove_query_params("token")
            target = url.path + (f"?{url.query}" if url.query else "")
            redirect = RedirectResponse(target, status_code=303)
            redirect.set_cookie(TOKEN_COOKIE, self._token, httponly=True, samesite="strict")
            return redirect
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and _same(credentials.strip(), self._token):
            return None
        if _same(request.cookies.get(TOKEN_COOKIE, ""), self._token):
            return None
        return self._refuse(
            request,
            401,
            "Token needed",
            "This server was started with a token (LOCALSCORERS_SERVER_TOKEN where it "
            "runs). Open /?token=<the token> once in this browser (a cookie keeps it and "
            "the address drops it), or send the header 'Authorization: Bearer <token>'.",
        )

    def _csrf_problem(self, request: Request, form: Mapping[str, str]) -> str | None:
        if request.headers.get("sec-fetch-site", "same-origin") not in {
            "same-origin",
            "none",
        }:
            return "The request came from another site (Sec-Fetch-Site); actions are refused."
        origin = request.headers.get("origin")
        if origin is not None and origin != _own_origin(request):
            return f"The request came from another origin ({origin}); actions are refused."
        nonce = request.cookies.get(CSRF_COOKIE, "")
        given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
        if not nonce or not given or not _same(given, self._sign(nonce)):
            return (
                "The form's CSRF token is missing or does not match (the server may have "
                "restarted since the page was loaded). Reload the page and try again."
            )
        return None

    @staticmethod
    def _finish(request: Request, response: Response) -> Response:
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        nonce = getattr(request.state, "csrf_nonce", None)
        if nonce is not None:
            response.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="strict")
        return response


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
