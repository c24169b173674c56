"""Sign-in for the dashboard: who a request is, refused by default, and the routes that sign in and out.

- Every request passes :func:`install_auth`'s middleware. Only :data:`OPEN_PATHS` (``/healthz`` and the sign-in
  page) answer an anonymous request; any other path, including one added later and a path that does not exist,
  is refused before routing: ``401`` (``WWW-Authenticate: Bearer``) under :data:`API_PREFIXES`, a ``303`` to
  ``/login?next=…`` for pages.
- A browser signs in at ``/login`` and gets an HttpOnly, SameSite=Lax session cookie, Secure when the request
  came over HTTPS (directly, or as a trusted proxy's ``X-Forwarded-Proto`` says) or when set to always.
  Programs send ``Authorization: Bearer cst_…`` (``carspot users token NAME``), accepted under
  :data:`API_PREFIXES` only.
- CSRF: the sign-in form carries a double-submit token (a random cookie and the same value in the form); any
  other state-changing request made with a session cookie needs the session's token, as the ``csrf_token``
  form field or the ``X-CSRF-Token`` header (:func:`csrf_protect`, installed on every route). Bearer requests
  carry no cookie and need none.
- Failed sign-ins are throttled per user name and per client address (:mod:`carspot.dashboards.throttle`).
- Roles: a viewer reads every page, API and report; an admin also manages users (``/admin/users``) and whatever
  later needs it, through :func:`require_admin`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Final, Literal
from urllib.parse import quote

from argon2 import PasswordHasher
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.middleware.base import RequestResponseEndpoint

from carspot.dashboards import login_page
from carspot.dashboards.accounts import Account, AccountError, Accounts, csrf_token_for
from carspot.dashboards.throttle import LoginThrottle

log = logging.getLogger("carspot.dashboards.auth")

OPEN_PATHS: Final = frozenset({"/healthz", "/login"})
"""The only paths an anonymous request reaches (the sign-in page has no asset of its own: inline CSS)."""
API_PREFIXES: Final = ("/api/", "/reports/", "/openapi.json")
"""Paths for programs: refused with 401 rather than a redirect, and the only ones a bearer token opens."""
SESSION_COOKIE: Final = "carspot_session"
LOGIN_CSRF_COOKIE: Final = "carspot_login_csrf"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "X-CSRF-Token"
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_NEXT: Final = 2000

CookieSecure = Literal["auto", "always", "never"]


@dataclass(frozen=True)
class AuthOptions:
    """How sign-in behaves; the defaults suit loopback, a reverse proxy with TLS needs ``trusted_proxies``."""

    session_ttl: timedelta = timedelta(hours=12)
    cookie_secure: CookieSecure = "auto"
    """auto: Secure when the request came over HTTPS (as seen after a trusted proxy's X-Forwarded-Proto)."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses or networks of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed."""
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    hasher: PasswordHasher | None = None
    """argon2 parameters; None = argon2-cffi's default (RFC 9106 low-memory). Tests pass a cheap one."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as and how it proved it; ``csrf`` is the session's token (None for bearer tokens)."""

    account: Account
    via: Literal["session", "token"]
    csrf: str | None


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of this site only (never ``//host`` or ``https://…``)."""
    if not value or len(value) > MAX_NEXT or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(c in value for c in "\r\n\t") or value.startswith("/login"):
        return "/"
    return value


def principal(request: Request) -> Principal:
    """The signed-in principal (the middleware has already refused anonymous requests)."""
    found: Principal | None = getattr(request.state, "principal", None)
    if found is None:
        raise HTTPException(status_code=401, detail="authentication required")
    return found


def current_account(request: Request) -> Account:
    return principal(request).account


def require_admin(request: Request) -> Account:
    """A dependency for admin-only routes: 403 for a viewer."""
    account = current_account(request)
    if not account.is_admin:
        raise HTTPException(status_code=403, detail="this needs the admin role")
    return account


async def csrf_protect(request: Request) -> None:
    """Installed on every route: a state-changing request signed in by cookie must carry the session's token."""
    found: Principal | None = getattr(request.state, "principal", None)
    if request.method not in UNSAFE_METHODS or found is None or found.via != "session":
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or found.csrf is None or not secrets.compare_digest(sent, found.csrf):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token: reload the page and try again")


def _unavailable(path: str) -> Response:
    if is_api_path(path):
        return JSONResponse({"detail": "database unavailable"}, status_code=503)
    return HTMLResponse(UNAVAILABLE_PAGE, status_code=503)


def _refuse(request: Request, *, bad_token: bool = False) -> Response:
    path = request.url.path
    if is_api_path(path):
        challenge = 'Bearer realm="carspot"' + (', error="invalid_token"' if bad_token else "")
        return JSONResponse(
            {"detail": "authentication required: sign in, or send Authorization: Bearer <token>"},
            status_code=401,
            headers={"WWW-Authenticate": challenge, "Cache-Control": "no-store"},
        )
    target = path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(safe_next(target), safe='')}", status_code=303)


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def install_auth(
    app: FastAPI, *, accounts: Accounts, options: AuthOptions, now: Callable[[], datetime], title: str
) -> None:
    """Add the refusing middleware and the ``/login``, ``/logout`` and ``/admin/users`` routes to ``app``."""
    throttle = options.throttle

    def secure(request: Request) -> bool:
        return options.cookie_secure == "always" or (options.cookie_secure == "auto" and request.url.scheme == "https")

    def identify(request: Request) -> tuple[Principal | None, bool]:
        """(principal, whether a bearer token was sent and refused)."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            account = accounts.session(cookie, now=now())
            if account is not None:
                return Principal(account, "session", csrf_token_for(cookie)), False
        token = _bearer(request)
        if token is not None and is_api_path(request.url.path):
            account = accounts.token(token, now=now())
            if account is not None:
                return Principal(account, "token", None), False
            return None, True
        return None, False

    @app.middleware("http")
    async def authenticate(request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.url.path in OPEN_PATHS:
            return await call_next(request)
        try:
            found, bad_token = await run_in_threadpool(identify, request)
        except SQLAlchemyError as exc:
            log.error("database unavailable while checking sign-in for %s: %s", request.url.path, exc)
            return _unavailable(request.url.path)
        if found is None:
            return _refuse(request, bad_token=bad_token)
        request.state.principal = found
        return await call_next(request)

    if options.trusted_proxies:
        # Outermost, so the client address and scheme every other layer sees are the proxy's word.
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(options.trusted_proxies))

    def login_form(
        request: Request, *, next_path: str, name: str = "", error: str | None = None, status: int = 200
    ) -> HTMLResponse:
        token = secrets.token_urlsafe(32)
        page = login_page.render(title=title, csrf=token, next_path=next_path, name=name, error=error)
        response = HTMLResponse(page, status_code=status, headers=login_page.HEADERS)
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            max_age=3600,
            path="/login",
            httponly=True,
            samesite="strict",
            secure=secure(request),
        )
        return response

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_get(request: Request, next: str | None = None) -> Response:
        target = safe_next(next)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            try:
                if accounts.session(cookie, now=now()) is not None:
                    return RedirectResponse(target, status_code=303)
            except SQLAlchemyError:
                pass  # the form still shows; signing in will say the database is away
        return login_form(request, next_path=target)

    @app.post("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_post(
        request: Request,
        name: Annotated[str, Form(max_length=200)] = "",
        password: Annotated[str, Form(max_length=4096)] = "",
        csrf_token: Annotated[str, Form(max_length=200)] = "",
        next: Annotated[str, Form(max_length=MAX_NEXT + 100)] = "/",
    ) -> Response:
        target = safe_next(next)
        expected = request.cookies.get(LOGIN_CSRF_COOKIE)
        if not expected or not csrf_token or not secrets.compare_digest(expected, csrf_token):
            return login_form(
                request, next_path=target, name=name, status=403, error="The form had expired: please sign in again."
            )
        user = name.strip().lower()[:200]
        address = request.client.host if request.client else None
        keys = throttle.keys(user=user, address=address)
        wait = throttle.retry_after(keys)
        if wait:
            log.warning("sign-in refused while throttled: user=%r address=%s retry_after=%ss", user, address, wait)
            response = login_form(
                request,
                next_path=target,
                name=name,
                status=429,
                error=f"Too many failed sign-ins. Try again in {wait} s.",
            )
            response.headers["Retry-After"] = str(wait)
            return response
        account = accounts.verify(user, password)
        if account is None:
            throttle.failure(keys)
            log.warning("failed sign-in: user=%r address=%s", user, address)
            return login_form(request, next_path=target, name=name, status=401, error="Wrong name or password.")
        throttle.success(user=user)
        signed = accounts.start_session(account, now=now())
        log.info("signed in: user=%r role=%s address=%s", account.name, account.role, address)
        redirect = RedirectResponse(target, status_code=303)
        redirect.set_cookie(
            SESSION_COOKIE,
            signed.cookie,
            max_age=int(options.session_ttl.total_seconds()),
            path="/",
            httponly=True,
            samesite="lax",
            secure=secure(request),
        )
        redirect.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return redirect

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        who = principal(request)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            accounts.end_session(cookie)
        log.info("signed out: user=%r", who.account.name)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure(request))
        return response

    @app.get("/admin/users", response_class=HTMLResponse, include_in_schema=False)
    def admin_users(request: Request, admin: Annotated[Account, Depends(require_admin)]) -> HTMLResponse:
        """Admins see every user, their role and their API tokens, and may remove a user."""
        page = login_page.render_users(
            title=title, users=accounts.list_users(), me=admin.name, csrf=principal(request).csrf or ""
        )
        return HTMLResponse(page, headers=login_page.HEADERS)

    @app.post("/admin/users/{name}/remove", include_in_schema=False)
    def admin_remove_user(name: str, admin: Annotated[Account, Depends(require_admin)]) -> Response:
        """Remove a user (their sessions and tokens go too); never oneself, so an admin always remains."""
        if name.strip().lower() == admin.name:
            raise HTTPException(status_code=409, detail="you cannot remove yourself")
        try:
            accounts.remove_user(name)
        except AccountError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        log.warning("user removed from the dashboard: user=%r by=%r", name, admin.name)
        return RedirectResponse("/admin/users", status_code=303)


UNAVAILABLE_PAGE: Final = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>CarSpot · unavailable</title><link rel="icon" href="data:,"><style>body{font:15px system-ui,sans-serif;
background:#f4f6fa;color:#1f2937;display:flex;align-items:center;justify-content:center;height:100vh;margin:0}
div{background:#fff;padding:24px 32px;border:1px solid #e5e7eb;border-radius:10px}</style></head><body><div>
<h1>Dashboard temporarily unavailable</h1>
<p>The database cannot be reached right now. This page will work again once it is back.</p></div></body></html>
"""
