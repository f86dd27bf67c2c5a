"""Signing in (with an API token: its role decides what the pages offer) and out."""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, request, session, url_for

from plugin.config.tokens import match_token
from plugin.web.pages.common import bp
from plugin.web.state import app_state


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    if request.method == "POST":
        found = match_token(app_state().settings.service.api_tokens, request.form.get("token", ""))
        if found:
            session["who"], session["role"] = found
            return redirect(_same_site(request.form.get("next")) or url_for("pages.worklist"))
        error = "That token is not known."
    return render_template("login.html", error=error, next=_same_site(request.args.get("next")))


def _same_site(target: str | None) -> str:
    """`target` when it is a path on this site, else "" (no open redirect after sign-in).

    A browser reads `//host/x` and `/\\host/x` as another host, and drops tabs and line breaks
    from URLs before reading them (WHATWG URL Standard, "URL parsing"): so only a single
    leading slash, no backslash, no control character or white space.
    """
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return ""
    if any(ord(c) < 0x21 or c in "\\\x7f" for c in target):
        return ""
    return target


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    session.clear()
    return redirect(url_for("pages.login"))


@bp.route("/")
def home() -> Any:
    return redirect(url_for("pages.worklist"))
