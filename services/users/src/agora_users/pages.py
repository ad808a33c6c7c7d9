"""The pages behind the mailed links: ``/verify-email`` and ``/reset-password`` (plain HTML).

A mail scanner prefetches links with GET, so GET only shows a form; the token is used up by
the form's POST, which goes through the same handlers as the JSON API (``auth_router``).
The gateway's CSP (``default-src 'none'``) allows no script and no inline style: these are
plain HTML forms. Every value put into a page is HTML-escaped by ``_render``.
"""

from __future__ import annotations

from html import escape
from string import Template
from typing import Annotated

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse

from agora_users import auth_router
from agora_users.deps import ClientDep, RuntimeDep, UowDep
from agora_users.exceptions import InvalidOneTimeToken
from agora_users.models import TokenPurpose
from agora_users.schemas import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    PasswordResetConfirm,
    VerifyEmail,
)

VERIFY_PATH = "/verify-email"
RESET_PATH = "/reset-password"
#: The paths of the pages (the app keeps them out of Idempotency-Key replay: no token stored).
PATHS = (VERIFY_PATH, RESET_PATH)
#: The longest token the API accepts (``schemas.SecretText``).
TOKEN_MAX = 4096

HEADERS = {
    # The page's URL holds the token: never cached, never sent on as a Referer.
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    # The gateway sets its own CSP too; this one also covers direct access to the service.
    "Content-Security-Policy": (
        "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(include_in_schema=False)

OptionalQuery = Annotated[str | None, Query()]
OptionalForm = Annotated[str | None, Form()]

_LAYOUT = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>$title · Agora</title>
</head>
<body>
<main>
<h1>$title</h1>
$body
</main>
</body>
</html>
""")
_VERIFY_FORM = Template("""<p>Confirm that this address is yours to finish setting up your \
Agora account.</p>
<form method="post" action="$action">
<input type="hidden" name="token" value="$token">
<p><button type="submit">Confirm my email address</button></p>
</form>""")
_RESET_FORM = Template("""<p>Choose a new password for your Agora account \
($min to $max characters). Every session of the account ends when it is set.</p>
<form method="post" action="$action">
<input type="hidden" name="token" value="$token">
<p><label for="password">New password</label><br>
<input id="password" name="password" type="password" autocomplete="new-password" \
minlength="$min" maxlength="$max" required></p>
<p><label for="password_confirm">The new password again</label><br>
<input id="password_confirm" name="password_confirm" type="password" \
autocomplete="new-password" minlength="$min" maxlength="$max" required></p>
<p><button type="submit">Set the new password</button></p>
</form>""")
_ERROR = Template("""<p role="alert"><strong>$message</strong></p>
""")
_PARAGRAPHS = Template("""<p>$first</p>
<p>$second</p>""")

_VERIFY_AGAIN = (
    "Sign in and ask for a new verification mail; the newest link is the one that works."
)
_RESET_AGAIN = "Ask for a new password-reset mail; the newest link is the one that works."
_BROKEN = "The link is invalid, has expired or was already used."
_INCOMPLETE = "The link is incomplete: open the whole link from the mail (it ends in a token)."


def _render(template: Template, **values: str) -> str:
    """Fill ``template`` with every value HTML-escaped (quotes too: values go in attributes)."""
    return template.substitute({name: escape(value, quote=True) for name, value in values.items()})


def _page(title: str, body: str, *, status_code: int = 200) -> HTMLResponse:
    """Wrap an already rendered ``body`` fragment in the layout."""
    html = _LAYOUT.substitute(title=escape(title), body=body)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def _failure(hint: str, *, first: str = _BROKEN) -> HTMLResponse:
    return _page(
        "This link does not work", _render(_PARAGRAPHS, first=first, second=hint), status_code=400
    )


def _usable(token: str | None) -> str | None:
    """Return the token when it has a shape the API accepts, else None."""
    return token if token and len(token) <= TOKEN_MAX else None


def _reset_form(token: str, *, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    alert = _render(_ERROR, message=error) if error else ""
    body = _render(
        _RESET_FORM, action=RESET_PATH, token=token, min=str(PASSWORD_MIN), max=str(PASSWORD_MAX)
    )
    return _page("Set a new password", alert + body, status_code=status_code)


def _password_problem(password: str | None, password_confirm: str | None) -> str | None:
    """Return what is wrong with the two passwords, or None when they will do."""
    if not password:
        return "Enter the new password."
    if password != password_confirm:
        return "The two passwords are not the same; enter the new password twice."
    if len(password) < PASSWORD_MIN:
        return f"The password is too short: use at least {PASSWORD_MIN} characters."
    if len(password) > PASSWORD_MAX:
        return f"The password is too long: use at most {PASSWORD_MAX} characters."
    return None


@router.get(VERIFY_PATH)
async def verify_email_page(rt: RuntimeDep, token: OptionalQuery = None) -> HTMLResponse:
    """Show the button that confirms the address; the token is not used up by a GET."""
    usable = _usable(token)
    if usable is None:
        return _failure(_VERIFY_AGAIN, first=_INCOMPLETE)
    try:
        # Signature, expiry and kind only (no database): a dead link says so at once.
        rt.signer.decode_one_time(usable, TokenPurpose.VERIFY_EMAIL)
    except InvalidOneTimeToken:
        return _failure(_VERIFY_AGAIN)
    body = _render(_VERIFY_FORM, action=VERIFY_PATH, token=usable)
    return _page("Confirm your email address", body)


@router.post(VERIFY_PATH)
async def verify_email_submit(
    uow: UowDep, rt: RuntimeDep, token: OptionalForm = None
) -> HTMLResponse:
    """Verify the address with the token, as ``POST /api/v1/auth/verify-email`` does."""
    usable = _usable(token)
    if usable is None:
        return _failure(_VERIFY_AGAIN, first=_INCOMPLETE)
    try:
        await auth_router.verify_email(body=VerifyEmail(token=usable), uow=uow, rt=rt)
    except InvalidOneTimeToken:
        return _failure(_VERIFY_AGAIN)
    body = _render(
        _PARAGRAPHS,
        first="Thank you: your email address is verified.",
        second="You can close this page and go on in the app.",
    )
    return _page("Email address verified", body)


@router.get(RESET_PATH)
async def reset_password_page(rt: RuntimeDep, token: OptionalQuery = None) -> HTMLResponse:
    """Show the new-password form; the token is not used up by a GET."""
    usable = _usable(token)
    if usable is None:
        return _failure(_RESET_AGAIN, first=_INCOMPLETE)
    try:
        rt.signer.decode_one_time(usable, TokenPurpose.PASSWORD_RESET)
    except InvalidOneTimeToken:
        return _failure(_RESET_AGAIN)
    return _reset_form(usable)


@router.post(RESET_PATH)
async def reset_password_submit(
    uow: UowDep,
    rt: RuntimeDep,
    client: ClientDep,
    token: OptionalForm = None,
    password: OptionalForm = None,
    password_confirm: OptionalForm = None,
) -> HTMLResponse:
    """Set the new password, as ``POST /api/v1/auth/password-reset/confirm`` does."""
    usable = _usable(token)
    if usable is None:
        return _failure(_RESET_AGAIN, first=_INCOMPLETE)
    problem = _password_problem(password, password_confirm)
    if problem is not None or password is None:  # no password is a problem too
        return _reset_form(usable, error=problem, status_code=422)
    body = PasswordResetConfirm(token=usable, new_password=password)
    try:
        # The API's handler: it also revokes the sessions and clears the failed-login count.
        await auth_router.confirm_password_reset(body=body, uow=uow, rt=rt, client=client)
    except InvalidOneTimeToken:
        return _failure(_RESET_AGAIN)
    done = _render(
        _PARAGRAPHS,
        first="Your password has been changed, and every session of the account has ended.",
        second="Sign in with the new password.",
    )
    return _page("Password changed", done)
