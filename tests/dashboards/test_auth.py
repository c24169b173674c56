"""Sign-in: only /healthz and /login are open; sessions, CSRF, throttling, API tokens and roles."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from starlette.routing import Mount, Route

from carspot.dashboards.accounts import Accounts
from carspot.dashboards.auth import OPEN_PATHS, safe_next
from carspot.dashboards.throttle import LoginThrottle, ThrottlePolicy
from carspot.dashboards.web import create_app
from carspot.store.tables import ApiToken, User, UserSession

from .conftest import CHEAP_HASHER, NOW, PASSWORD, add_user, auth_options, sign_in

API_PREFIXES = ("/api/", "/reports/", "/openapi.json")


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, page[:500]
    return found.group(1)


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


# --- nothing is open but /healthz and /login -------------------------------------------------------------------


def test_every_route_refuses_an_anonymous_request(engine: Engine) -> None:
    """Walks the app's route table, so a route added later without sign-in fails here."""
    app = create_app(engine=engine, clock=lambda: NOW, auth=auth_options())
    client = TestClient(app)
    assert {"/healthz", "/login"} == OPEN_PATHS, "a new open path must be argued for, here"
    checked = 0
    for route in app.routes:
        if isinstance(route, Mount):  # static files or a sub-application: a path inside it
            probes = [("GET", route.path.rstrip("/") + "/probe.png")]
        else:
            assert isinstance(route, Route | APIRoute), f"unexpected route type {type(route).__name__}: check it here"
            probes = [(method, _concrete(route.path)) for method in sorted(route.methods or ())]
        for method, path in probes:
            if method == "HEAD":
                continue
            r = client.request(method, path, follow_redirects=False)
            if path in OPEN_PATHS:
                assert r.status_code not in (401, 303), (method, path)
                continue
            checked += 1
            if path.startswith(API_PREFIXES):
                assert r.status_code == 401, (method, path, r.status_code)
                assert r.headers["www-authenticate"].startswith("Bearer")
            else:
                assert r.status_code == 303, (method, path, r.status_code)
                assert r.headers["location"].startswith("/login?next=")
    assert checked >= 10  # the walk did walk: /, the API, reports, schema, logout, admin pages


def test_a_route_added_later_is_refused_without_declaring_anything(engine: Engine) -> None:
    app = create_app(engine=engine, clock=lambda: NOW, auth=auth_options())
    app.get("/api/added-later")(lambda: {"secret": 1})
    app.get("/added-later")(lambda: "secret")
    client = TestClient(app)
    assert client.get("/api/added-later").status_code == 401
    assert client.get("/added-later", follow_redirects=False).status_code == 303


def test_unknown_paths_and_the_schema_are_refused_too(engine: Engine) -> None:
    client = TestClient(create_app(engine=engine, clock=lambda: NOW, auth=auth_options()))
    assert client.get("/no/such/page", follow_redirects=False).status_code == 303
    assert client.get("/api/no-such-thing").status_code == 401
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/healthz").status_code == 200


def test_the_redirect_to_sign_in_keeps_the_page_and_comes_back_to_it(engine: Engine) -> None:
    add_user(engine, "ann")
    client = TestClient(create_app(engine=engine, clock=lambda: NOW, auth=auth_options()))
    r = client.get("/?window=24h", follow_redirects=False)
    assert r.headers["location"] == "/login?next=%2F%3Fwindow%3D24h"
    form = client.get(r.headers["location"])
    assert 'name="next" value="/?window=24h"' in form.text
    done = client.post(
        "/login",
        data={"name": "ann", "password": PASSWORD, "csrf_token": _csrf(form.text), "next": "/?window=24h"},
        follow_redirects=False,
    )
    assert (done.status_code, done.headers["location"]) == (303, "/?window=24h")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/brands/toyota?x=1", "/brands/toyota?x=1"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/login?next=/", "/"),
        (None, "/"),
    ],
)
def test_next_is_only_ever_a_path_of_this_site(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


# --- signing in and out ---------------------------------------------------------------------------------------


def test_signing_in_sets_a_hardened_session_cookie_and_out_ends_the_session(engine: Engine) -> None:
    add_user(engine, "Ann", role="viewer")
    client = TestClient(create_app(engine=engine, clock=lambda: NOW, auth=auth_options()))
    form = client.get("/login")
    assert "carspot_login_csrf" in form.headers["set-cookie"] and "SameSite=strict" in form.headers["set-cookie"]
    r = client.post(
        "/login",
        data={"name": "ANN ", "password": PASSWORD, "csrf_token": _csrf(form.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("carspot_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http on loopback
    value = client.cookies["carspot_session"]
    with engine.connect() as conn:  # only a digest of the cookie is stored
        stored = conn.execute(select(UserSession.token_sha256)).scalars().all()
    assert len(stored) == 1 and value not in stored[0]

    page = client.get("/")
    assert page.status_code == 200
    assert "ann · viewer" in page.text
    assert 'href="/admin/users"' not in page.text  # a viewer has no users link

    out = client.post("/logout", data={"csrf_token": _csrf(page.text)}, follow_redirects=False)
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    with engine.connect() as conn:
        assert conn.execute(select(UserSession.token_sha256)).first() is None
    client.cookies.set("carspot_session", value)  # the old cookie, replayed, opens nothing
    assert client.get("/", follow_redirects=False).status_code == 303


def test_wrong_passwords_and_unknown_names_get_the_same_answer(engine: Engine) -> None:
    add_user(engine, "ann")
    client = TestClient(create_app(engine=engine, clock=lambda: NOW, auth=auth_options()))
    answers = []
    for name, password in (("ann", "wrong password"), ("nobody", PASSWORD), ("ann", "")):
        form = client.get("/login")
        r = client.post("/login", data={"name": name, "password": password, "csrf_token": _csrf(form.text)})
        answers.append((r.status_code, "Wrong name or password." in r.text))
    assert answers == [(401, True)] * 3
    assert "carspot_session" not in client.cookies


def test_a_login_post_without_the_forms_csrf_token_is_refused(engine: Engine) -> None:
    """Login CSRF: another site cannot sign a visitor in (to its own account) by posting the form."""
    add_user(engine, "ann")
    client = TestClient(create_app(engine=engine, clock=lambda: NOW, auth=auth_options()))
    r = client.post("/login", data={"name": "ann", "password": PASSWORD, "csrf_token": "guess"})
    assert r.status_code == 403 and "carspot_session" not in client.cookies
    client.get("/login")  # the cookie is set, but the form field is missing
    r = client.post("/login", data={"name": "ann", "password": PASSWORD})
    assert r.status_code == 403 and "carspot_session" not in client.cookies


def test_a_state_change_by_cookie_needs_the_sessions_csrf_token(
    engine: Engine, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(engine, role="admin")
    add_user(engine, "bob")
    assert client.post("/admin/users/bob/remove", follow_redirects=False).status_code == 403
    assert client.post("/logout", data={"csrf_token": "forged"}, follow_redirects=False).status_code == 403
    assert client.get("/").status_code == 200  # still signed in
    token = _csrf(client.get("/admin/users").text)
    r = client.post("/admin/users/bob/remove", headers={"X-CSRF-Token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert "bob" not in client.get("/admin/users").text


def test_an_expired_session_signs_nobody_in(engine: Engine) -> None:
    add_user(engine, "ann")
    now = [NOW]
    client = TestClient(
        create_app(engine=engine, clock=lambda: now[0], auth=auth_options(session_ttl=timedelta(hours=1)))
    )
    sign_in(client, "ann")
    assert client.get("/", follow_redirects=False).status_code == 200
    now[0] = NOW + timedelta(hours=1)
    assert client.get("/", follow_redirects=False).status_code == 303
    assert client.get("/api/summary").status_code == 401


def test_removing_a_user_ends_their_sessions_at_once(engine: Engine) -> None:
    add_user(engine, "ann")
    client = TestClient(create_app(engine=engine, clock=lambda: NOW, auth=auth_options()))
    sign_in(client, "ann")
    Accounts(engine, hasher=CHEAP_HASHER).remove_user("ann")
    assert client.get("/api/summary").status_code == 401


# --- Secure cookies behind HTTPS -------------------------------------------------------------------------------


def _session_cookie_header(client: TestClient, headers: dict[str, str] | None = None) -> str:
    """Sign in as ann; the session's Set-Cookie. The form's CSRF cookie is sent back by hand: TestClient speaks
    plain http to the app and so would keep a Secure cookie to itself, where a browser behind TLS would not."""
    form = client.get("/login", headers=headers)
    token = _csrf(form.text)
    r = client.post(
        "/login",
        data={"name": "ann", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
        headers={**(headers or {}), "Cookie": f"carspot_login_csrf={token}"},
    )
    assert r.status_code == 303, r.text[:200]
    return next(h for h in r.headers.get_list("set-cookie") if h.startswith("carspot_session="))


def test_the_cookie_is_secure_over_https(engine: Engine) -> None:
    add_user(engine, "ann")
    app = create_app(engine=engine, clock=lambda: NOW, auth=auth_options())
    assert "Secure" in _session_cookie_header(TestClient(app, base_url="https://testserver"))


def test_a_trusted_proxys_forwarded_proto_makes_the_cookie_secure_and_an_untrusted_ones_does_not(
    engine: Engine,
) -> None:
    add_user(engine, "ann")
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    trusting = create_app(engine=engine, clock=lambda: NOW, auth=auth_options(trusted_proxies=("testclient",)))
    assert "Secure" in _session_cookie_header(TestClient(trusting), forwarded)
    not_trusting = create_app(engine=engine, clock=lambda: NOW, auth=auth_options(trusted_proxies=("10.0.0.1",)))
    assert "Secure" not in _session_cookie_header(TestClient(not_trusting), forwarded)
    always = create_app(engine=engine, clock=lambda: NOW, auth=auth_options(cookie_secure="always"))
    assert "Secure" in _session_cookie_header(TestClient(always))


# --- throttling -------------------------------------------------------------------------------------------------


def _fail(client: TestClient, name: str, password: str = "wrong password") -> int:
    form = client.get("/login")
    return client.post("/login", data={"name": name, "password": password, "csrf_token": _csrf(form.text)}).status_code


def test_repeated_failures_lock_the_user_out_even_with_the_right_password(engine: Engine) -> None:
    add_user(engine, "ann")
    ticks = [0.0]
    throttle = LoginThrottle(user_policy=ThrottlePolicy(free=3, base_s=60), clock=lambda: ticks[0])
    client = TestClient(create_app(engine=engine, clock=lambda: NOW, auth=auth_options(throttle=throttle)))
    assert [_fail(client, "ann") for _ in range(3)] == [401, 401, 401]
    form = client.get("/login")
    r = client.post("/login", data={"name": "ann", "password": PASSWORD, "csrf_token": _csrf(form.text)})
    assert r.status_code == 429 and r.headers["retry-after"] == "60"
    assert "carspot_session" not in client.cookies
    ticks[0] = 61.0  # the lockout is over: the right password works, and clears the count
    sign_in(client, "ann")
    assert throttle.retry_after(["user:ann"]) == 0


def test_one_address_guessing_many_names_is_throttled(engine: Engine) -> None:
    throttle = LoginThrottle(address_policy=ThrottlePolicy(free=4, base_s=30), clock=lambda: 0.0)
    client = TestClient(create_app(engine=engine, clock=lambda: NOW, auth=auth_options(throttle=throttle)))
    assert [_fail(client, f"user{i}") for i in range(5)] == [401, 401, 401, 401, 429]


# --- API tokens and roles ---------------------------------------------------------------------------------------


def test_an_api_token_opens_the_api_and_reports_but_not_the_pages(engine: Engine) -> None:
    accounts = Accounts(engine, hasher=CHEAP_HASHER)
    accounts.add_user("robot", role="viewer", password=PASSWORD, now=NOW)
    token_id, token = accounts.issue_token("robot", label="weekly export", now=NOW)
    client = TestClient(create_app(engine=engine, clock=lambda: NOW, auth=auth_options()))
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/summary", headers=bearer).status_code == 200
    assert client.get("/reports/weekly.csv", headers=bearer).status_code == 200
    assert client.get("/", headers=bearer, follow_redirects=False).status_code == 303
    with engine.connect() as conn:
        stored = conn.execute(select(ApiToken.token_sha256, ApiToken.last_used_at)).one()
    assert token not in stored.token_sha256 and stored.last_used_at == NOW

    wrong = client.get("/api/summary", headers={"Authorization": f"Bearer {token}x"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert accounts.revoke_tokens("robot", token_ids=[token_id]) == 1
    assert client.get("/api/summary", headers=bearer).status_code == 401


def test_a_viewer_may_not_do_what_an_admin_does(engine: Engine, make_client: Callable[..., TestClient]) -> None:
    viewer = make_client(engine, role="viewer")
    assert viewer.get("/admin/users").status_code == 403
    token = _csrf(viewer.get("/").text)
    r = viewer.post("/admin/users/test-viewer/remove", data={"csrf_token": token})
    assert r.status_code == 403
    admin = make_client(engine, role="admin")
    page = admin.get("/admin/users")
    assert page.status_code == 200 and "test-viewer" in page.text and "test-admin" in page.text
    assert 'href="/admin/users"' in admin.get("/").text


def test_an_admin_cannot_remove_themselves(engine: Engine, make_client: Callable[..., TestClient]) -> None:
    admin = make_client(engine, role="admin")
    token = _csrf(admin.get("/").text)
    assert admin.post("/admin/users/test-admin/remove", data={"csrf_token": token}).status_code == 409
    with engine.connect() as conn:
        assert conn.execute(select(User.name)).scalars().all() == ["test-admin"]


def test_the_sign_in_page_sends_a_signed_in_browser_on(engine: Engine, make_client: Callable[..., TestClient]) -> None:
    client = make_client(engine, role="viewer")
    r = client.get("/login?next=/api/summary", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/api/summary")
