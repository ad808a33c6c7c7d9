"""Request and response bodies: private fields (hash, tokens' secrets) never reach a response."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from agora_users.models import EMAIL_MAX, NAME_MAX

PASSWORD_MIN = 8
PASSWORD_MAX = 128

#: Explicit bidi controls (U+202A..U+202E, U+2066..U+2069) let a name display as another.
_BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
#: Control characters, line/paragraph separators and lone surrogates are refused in names.
_REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})


def normalise_email(value: str) -> str:
    """Check an address (syntax only, no DNS) and return it normalised to lower case."""
    try:
        # test_environment: addresses under `.test` (RFC 6761, which OpenAPI tools such as
        # schemathesis generate) are valid `format: email`; mail to them goes nowhere.
        checked = validate_email(value, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from exc
    if not checked.local_part.isascii():
        # Mail to such an address needs SMTPUTF8 end to end; without it the verification mail
        # could never be delivered and the account never verified (docs/security.md, finding 7).
        raise ValueError(
            "the part before the @ must be ASCII: internationalised mailbox names are not "
            "supported (a non-ASCII domain is fine)"
        )
    # Addresses are matched case-insensitively: nobody expects Bob@ and bob@ to be two users.
    # An internationalised domain is kept in its ASCII (IDNA) form, which any relay delivers.
    normalised = (checked.ascii_email or checked.normalized).lower()
    if len(normalised) > EMAIL_MAX:
        raise ValueError(f"the email address is longer than {EMAIL_MAX} characters")
    return normalised


#: What the OpenAPI document says of a name: no control, separator or bidi control
#: character, and at least one that is not white space (as ``str.strip`` sees it). Spelled
#: with explicit ranges only, so ECMA, Rust and Python regex engines read it alike.
_REFUSED = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_BLANK = r" \xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
NAME_PATTERN = rf"^[^{_REFUSED}]*[^{_BLANK}{_REFUSED}][^{_REFUSED}]*$"


def clean_name(value: str) -> str:
    """Return a display name NFC-normalised and trimmed; refuse control and separator chars."""
    if len(value) > NAME_MAX:
        raise ValueError(f"the name is longer than {NAME_MAX} characters")
    bad = sorted(
        {
            f"U+{ord(ch):04X}"
            for ch in value
            if unicodedata.category(ch) in _REFUSED_CATEGORIES or ch in _BIDI_CONTROLS
        }
    )
    if bad:
        listed = ", ".join(bad)
        raise ValueError(f"the name contains control or line-separator characters: {listed}")
    cleaned = unicodedata.normalize("NFC", value).strip()
    if not cleaned:
        raise ValueError("the name must not be empty or only whitespace")
    if len(cleaned) > NAME_MAX:
        raise ValueError(f"the name is longer than {NAME_MAX} characters")
    return cleaned


Email = Annotated[
    str,
    StringConstraints(max_length=EMAIL_MAX * 2),
    AfterValidator(normalise_email),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": EMAIL_MAX}),
]
Name = Annotated[
    str,
    StringConstraints(max_length=NAME_MAX * 4),
    AfterValidator(clean_name),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": NAME_MAX, "pattern": NAME_PATTERN}
    ),
]
# repr=False keeps passwords out of reprs, so out of log lines and tracebacks.
Password = Annotated[
    str, StringConstraints(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX), Field(repr=False)
]
#: Passwords being checked (login, current password) are accepted up to this length.
GIVEN_PASSWORD_MAX = 1024
GivenPassword = Annotated[
    str, StringConstraints(min_length=1, max_length=GIVEN_PASSWORD_MAX), Field(repr=False)
]
SecretText = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Secret = Annotated[SecretText, Field(repr=False)]


class _Input(BaseModel):
    """A request body: unknown fields are refused (no mass assignment of id, roles, ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class UserCreate(_Input):
    """Registration: what a client may set on a new account."""

    email: Email
    name: Name
    password: Password


class UserUpdate(_Input):
    """Profile changes of ``PATCH /users/me``; omitted fields stay as they are."""

    name: Name | None = None


class EmailChange(_Input):
    """Change the account's address; the current password proves it is the owner."""

    new_email: Email
    current_password: GivenPassword


class PasswordChange(_Input):
    """Change the password; the current one is required."""

    current_password: GivenPassword
    new_password: Password


class VerifyEmail(_Input):
    """The one-time token from the verification mail."""

    token: Secret


class PasswordResetRequest(_Input):
    """Ask for a password-reset mail."""

    email: Email


class PasswordResetConfirm(_Input):
    """Set a new password with the one-time token from the reset mail."""

    token: Secret
    new_password: Password


class RefreshRequest(_Input):
    """Exchange a refresh token for a new access token and refresh token."""

    refresh_token: Secret


class LogoutRequest(_Input):
    """Optionally name the refresh token to revoke along with the access token."""

    refresh_token: SecretText | None = Field(default=None, repr=False)


class UserProfile(BaseModel):
    """A user's public profile: what anyone may see (the id and the display name)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str


class UserPublic(UserProfile):
    """The account as its owner (or an admin) sees it; never the password hash."""

    email: str
    email_verified: bool
    roles: list[str]
    is_active: bool
    created_at: datetime
    updated_at: datetime


class UserPage(BaseModel):
    """One page of the admin listing."""

    items: list[UserPublic]
    total: int
    skip: int
    limit: int


class TokenResponse(BaseModel):
    """RFC 6749 §5.1 access token response."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the RFC 6750 scheme name
    expires_in: int
    refresh_token: str
    refresh_token_expires_in: int


class Message(BaseModel):
    """A short answer (e.g. to a password-reset request, whose effect is not revealed)."""

    detail: str


class OAuthErrorBody(BaseModel):
    """RFC 6749 §5.2 error response of the token endpoints."""

    error: str
    error_description: str
