"""Optional sign-in beside anonymous use: the accounts the operator configures (AIPIC_AUTH), a small sign-in page
at ``/login``, sign-out at ``/logout``, and a signed cookie that names the account. Anyone may use the app without
signing in; a signed-in person's outputs name them as their author.

The cookie is ``name|expiry|HMAC-SHA256`` under a key made when the server starts (a restart signs everyone out),
HttpOnly and SameSite=Lax. Sign-in attempts count against the client's rate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import logging
import os
import time

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from aipic.common.errors import RateLimited
from aipic.web.ratelimit import RateLimiter

log = logging.getLogger(__name__)
COOKIE = "aipic_account"
LIFETIME_S = 7 * 24 * 3600


class Accounts:
    def __init__(self, pairs, rate_per_minute: float = 10, secret: bytes | None = None):
        self._passwords = {str(user): str(password) for user, password in pairs}
        self._key = secret or os.urandom(32)
        self._attempts = RateLimiter(rate_per_minute)
        self._signed_out: set = set()  # cookies ended by sign-out before they expire (until a restart ends them all)

    @property
    def enabled(self) -> bool:
        return bool(self._passwords)

    def check(self, user: str, password: str) -> bool:
        expected = self._passwords.get(user)
        # compare_digest either way, so a wrong name takes as long as a wrong password
        return hmac.compare_digest((expected or "\0").encode(), password.encode()) and expected is not None

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def cookie_for(self, user: str, now: float | None = None) -> str:
        text = f"{user}|{int((now or time.time()) + LIFETIME_S)}"
        return base64.urlsafe_b64encode(f"{text}|{self._mac(text)}".encode()).decode()

    def user_of(self, cookie: str | None, now: float | None = None) -> str | None:
        """The account a cookie names, when its signature holds and it has not expired."""
        if not cookie or len(cookie) > 4096 or cookie in self._signed_out:
            return None
        try:
            user, expiry, mac = base64.urlsafe_b64decode(cookie.encode()).decode().rsplit("|", 2)
        except (ValueError, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(mac, self._mac(f"{user}|{expiry}")) or not expiry.isdigit() or int(expiry) < (now or time.time()):
            return None
        return user if user in self._passwords else None

    def user_of_request(self, request) -> str | None:
        cookies = getattr(request, "cookies", None) or {}
        return self.user_of(cookies.get(COOKIE))

    def mount(self, server: FastAPI) -> None:
        """/login (the form and its answer) and /logout on the server, beside the app."""

        @server.get("/login", include_in_schema=False)
        def login_form(error: str = ""):
            return HTMLResponse(login_page("That name and password do not match an account here." if error else ""))

        @server.post("/login", include_in_schema=False)
        async def login(request: Request):
            try:
                self._attempts.check(request.client.host if request.client else None)
            except RateLimited as limited:
                return HTMLResponse(login_page(str(limited)), status_code=429)
            form = await request.form()
            user, password = str(form.get("username") or ""), str(form.get("password") or "")
            if not self.check(user, password):
                log.info("a sign-in failed")
                return RedirectResponse("login?error=1", status_code=303)
            response = RedirectResponse("./", status_code=303)
            response.set_cookie(COOKIE, self.cookie_for(user), max_age=LIFETIME_S, httponly=True, samesite="lax", secure=request.url.scheme == "https")
            return response

        @server.get("/logout", include_in_schema=False)
        def logout(request: Request):
            if self.user_of(request.cookies.get(COOKIE)):  # a copy of the cookie kept elsewhere no longer signs in
                self._signed_out.add(request.cookies[COOKIE])
            response = RedirectResponse("./", status_code=303)
            response.delete_cookie(COOKIE)
            return response


def login_page(message: str = "") -> str:
    note = f"<p role='alert' class='error'>{html.escape(message)}</p>" if message else ""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>Sign in — aipic</title><style>body{font-family:system-ui,sans-serif;max-width:28em;margin:3em auto;padding:0 1em;color:#1f1f1f}"
        "label{display:block;margin:.8em 0 .2em;font-weight:600}input{font-size:1em;padding:.4em;width:100%;box-sizing:border-box}"
        "button{margin-top:1em;font-size:1em;padding:.5em 1.2em;background:#c2410c;color:#fff;border:0;border-radius:.4em}"
        ".error{background:#fdecea;border:1px solid #b3261e;padding:.5em .8em}</style></head><body><main>"
        "<h1>Sign in to aipic</h1><p>Signing in is optional: signed in, your outputs name you as their author in a signed identity "
        "assertion. <a href='./'>Use aipic without signing in</a>.</p>" + note +
        "<form method='post' action='login'><label for='username'>Name</label><input id='username' name='username' autocomplete='username' required>"
        "<label for='password'>Password</label><input id='password' name='password' type='password' autocomplete='current-password' required>"
        "<button type='submit'>Sign in</button></form></main></body></html>"
    )
