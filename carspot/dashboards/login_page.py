"""The sign-in page and the admins' user list: small self-contained HTML (inline CSS, no script, no asset)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Final
from urllib.parse import quote

from carspot.store.accounts import UserRow

HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
}

_CSS: Final = """
*{box-sizing:border-box}body{margin:0;background:#f4f6fa;color:#1f2937;font:15px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,Arial,sans-serif}main{max-width:380px;margin:12vh auto;background:#fff;border:1px solid #e5e7eb;
border-radius:12px;padding:28px 30px}main.wide{max-width:900px;margin:6vh auto}h1{font-size:20px;margin:0 0 4px}
.sub{color:#6b7280;font-size:13px;margin:0 0 18px}label{display:block;font-size:13px;color:#374151;margin:12px 0 4px}
input[type=text],input[type=password]{width:100%;padding:9px 11px;border:1px solid #d1d5db;border-radius:8px;
font:inherit}button{margin-top:18px;width:100%;padding:10px;border:0;border-radius:8px;background:#4f46e5;
color:#fff;font:inherit;font-weight:600;cursor:pointer}.error{background:#fef2f2;color:#991b1b;border:1px solid
#fecaca;border-radius:8px;padding:8px 11px;font-size:13px}table{width:100%;border-collapse:collapse;margin-top:12px}
th,td{text-align:left;padding:7px 8px;border-bottom:1px solid #f1f3f6;font-size:14px}th{font-size:11px;
text-transform:uppercase;color:#6b7280}td form{margin:0}td button{margin:0;width:auto;padding:5px 12px;
background:#b91c1c;font-size:13px}a{color:#4f46e5}
"""


def _head(title: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
    )


def render(*, title: str, csrf: str, next_path: str, name: str = "", error: str | None = None) -> str:
    """The sign-in form; ``next_path`` (already checked to be a local path) is where a success goes."""
    alert = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return f"""{_head(f"{title} · sign in")}<body><main>
<h1>{escape(title)}</h1><p class="sub">Sign in to the brand dashboard</p>{alert}
<form method="post" action="/login" autocomplete="on">
<input type="hidden" name="csrf_token" value="{escape(csrf)}">
<input type="hidden" name="next" value="{escape(next_path)}">
<label for="name">Name</label>
<input id="name" name="name" type="text" autocomplete="username" required autofocus value="{escape(name)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form></main></body></html>
"""


def render_users(*, title: str, users: Sequence[UserRow], me: str, csrf: str) -> str:
    """The admins' page: every user with role and token ids; a remove button beside everyone but oneself."""
    rows = []
    for u in users:
        action = (
            "you"
            if u.name == me
            else f'<form method="post" action="/admin/users/{quote(u.name, safe="")}/remove">'
            f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">'
            '<button type="submit">Remove</button></form>'
        )
        tokens = ", ".join(str(t) for t in u.token_ids) or "none"
        rows.append(
            f"<tr><td>{escape(u.name)}</td><td>{escape(u.role)}</td><td>{u.created_at:%Y-%m-%d}</td>"
            f"<td>{escape(tokens)}</td><td>{action}</td></tr>"
        )
    return f"""{_head(f"{title} · users")}<body><main class="wide">
<h1>Users</h1><p class="sub">Add users and issue API tokens with <code>carspot users</code>.
<a href="/">Back to the dashboard</a></p>
<table><thead><tr><th>Name</th><th>Role</th><th>Created</th><th>API tokens</th><th></th></tr></thead>
<tbody>{"".join(rows)}</tbody></table></main></body></html>
"""
