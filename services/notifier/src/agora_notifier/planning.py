"""What each event means for the projections and which emails it asks for.

Mail policy (docs/security.md, "Who receives mail"): before its address is verified, an
account's mail is the registration pair (welcome and verification) and re-sent verification
emails, and one address receives at most ``UNVERIFIED_BOUND`` of those per ``BOUND_WINDOW_S``
whichever accounts ask. Item mail, password resets, notices and the goodbye go only to a
verified address.

A planner runs inside the transaction that claims the event in the inbox: it applies the
event to the projections and returns the emails to record. Addresses come from the
projection (or, for commands and the email-change notice, from the users service's own
event), never from free text such as an item's description.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any

from agora_contract import (
    Envelope,
    Event,
    ItemCreated,
    ItemDeleted,
    ItemUpdated,
    SendEmailVerification,
    SendPasswordReset,
    UserDeleted,
    UserEmailChanged,
    UserRegistered,
    UserUpdated,
)
from agora_kit.consumer import TransientError
from agora_kit.consumer.deadletters import REDACTED
from sqlalchemy.ext.asyncio import AsyncSession

from agora_notifier import projection, records
from agora_notifier.projection import clean_name
from agora_notifier.records import Planned, scrub_user
from agora_notifier.rendering import ITEM_KINDS, Kind, normalise_address
from agora_notifier.wording import (
    REASONS,
    Links,
    _greet,
    describe_changes,
    when,
)

logger = logging.getLogger("agora.notifier.planning")
#: Set by the handler: whether this is the event's last attempt (no retry will follow).
final_attempt: ContextVar[bool] = ContextVar("final_attempt", default=True)


#: Registration emails one address may receive per window, whichever accounts name it.
UNVERIFIED_BOUND = 5
#: The kinds an address nobody verified can receive (and that count towards its bound).
UNVERIFIED_KINDS = (Kind.WELCOME.value, Kind.EMAIL_VERIFICATION.value)
BOUND_WINDOW_S = 86_400
NOT_VERIFIED = "address not verified"


Planner = Callable[[AsyncSession, Envelope, Any, Links], Awaitable[list[Planned]]]


async def _live_recipient(
    session: AsyncSession, user_id: int, what: str, *, lock: projection.Lock = "update"
) -> projection.Recipient | None:
    """The recipient, None if deleted; TransientError if not projected yet (retried)."""
    found = await projection.get_recipient(session, user_id, lock=lock)
    if found is None:
        raise TransientError(f"user {user_id} is not in the recipient projection yet ({what})")
    return None if found.deleted else found


async def plan_registered(
    session: AsyncSession, envelope: Envelope, event: UserRegistered, links: Links
) -> list[Planned]:
    """Project the new user; welcome them (within the address's bound)."""
    await projection.apply_registered(session, event, envelope.aggregateversion)
    found = await projection.get_recipient(session, event.user_id)
    if found is None or found.deleted:
        return []  # deleted before this registration was handled: no mail to a gone account
    context = {"name": _greet(event.name), "public_url": links.base()}
    address = normalise_address(event.email)
    skip = await _over_bound(session, address)
    return [Planned(Kind.WELCOME, event.user_id, address, context["name"], context, skip)]


async def _over_bound(session: AsyncSession, address: str) -> str | None:
    """The skip reason when ``address`` had its share of registration mail lately, else None."""
    recent = await records.recent_to(
        session, address, kinds=UNVERIFIED_KINDS, within_s=BOUND_WINDOW_S
    )
    if recent >= UNVERIFIED_BOUND:
        return f"bound: {recent} registration emails to this address within 24 h"
    return None


async def plan_updated(
    session: AsyncSession, envelope: Envelope, event: UserUpdated, links: Links
) -> list[Planned]:
    """Project profile changes; no email."""
    await _live_recipient(session, event.user_id, "profile update")
    await projection.apply_updated(session, event, envelope.aggregateversion)
    return []


async def plan_email_changed(
    session: AsyncSession, envelope: Envelope, event: UserEmailChanged, links: Links
) -> list[Planned]:
    """Project the new address; tell the old one if it was verified.

    The new address gets only its verification email (a command of its own): a notice to it
    would be one more mail to an address nobody has proven to own.
    """
    found = await _live_recipient(session, event.user_id, "email change")
    if found is None:
        return []
    await projection.apply_email_changed(session, event, envelope.aggregateversion)
    old, new = normalise_address(event.old_email), normalise_address(event.new_email)
    if not found.email_verified or old == new:
        return []
    base = {"name": _greet(found.name), "public_url": links.base()}
    base |= {"old_email": event.old_email, "new_email": event.new_email, "audience": "old"}
    return [Planned(Kind.EMAIL_CHANGED, event.user_id, old, found.name, base)]


async def plan_deleted(
    session: AsyncSession, envelope: Envelope, event: UserDeleted, links: Links
) -> list[Planned]:
    """Capture the address in the goodbye's record, then erase the projection's data."""
    found = await _live_recipient(session, event.user_id, "account deletion")
    await projection.erase(session, event, envelope.aggregateversion)
    await scrub_user(session, event.user_id)
    if found is None or found.email is None or not found.email_verified:
        return []
    context = {"name": _greet(found.name), "public_url": links.base()}
    return [Planned(Kind.GOODBYE, event.user_id, found.email, found.name, context)]


async def _command(
    session: AsyncSession,
    event: SendEmailVerification | SendPasswordReset,
    kind: Kind,
) -> list[Planned]:
    found = await projection.get_recipient(session, event.user_id)
    if found is not None and found.deleted:
        return []
    if event.token == REDACTED:
        # A replayed dead letter: its one-time token was removed on purpose. A mail with a
        # dead link would only confuse; the user asks for a new one.
        logger.warning("not sending %s for user %s: its token was redacted", kind, event.user_id)
        return []
    context = {
        "name": _greet(event.name),
        "email": event.email,
        "expires_at": when(event.expires_at),
    }
    address = normalise_address(event.email)
    skip = None
    if kind is Kind.EMAIL_VERIFICATION:
        skip = await _over_bound(session, address)
    elif found is None or not found.email_verified or found.email != address:
        # A reset goes only to the verified address of the account. The verification (or the
        # address change) may not be projected yet: users.events and notifier.commands are
        # separate topics. Retried on the consumer's schedule; skipped on the last attempt.
        if not final_attempt.get():
            raise TransientError(f"user {event.user_id}'s address is not verified yet (reset)")
        skip = NOT_VERIFIED
    return [Planned(kind, event.user_id, address, context["name"], context, skip_reason=skip)]


async def plan_verification(
    session: AsyncSession, envelope: Envelope, event: SendEmailVerification, links: Links
) -> list[Planned]:
    """Send the verification link to the address the command names."""
    return await _command(session, event, Kind.EMAIL_VERIFICATION)


async def plan_reset(
    session: AsyncSession, envelope: Envelope, event: SendPasswordReset, links: Links
) -> list[Planned]:
    """Send the password-reset link to the address the command names."""
    return await _command(session, event, Kind.PASSWORD_RESET)


async def _item_mail(
    session: AsyncSession, owner_id: int, kind: Kind, context: dict[str, Any]
) -> list[Planned]:
    # A share lock: item mail only reads the owner, and an erasure still waits for it.
    owner = await _live_recipient(session, owner_id, kind.value, lock="share")
    if owner is None or owner.email is None:
        return []
    context = {"name": _greet(owner.name)} | context
    skip = None if owner.item_mail or kind not in ITEM_KINDS else "opted out of item mail"
    if not owner.email_verified:
        if not final_attempt.get():
            # The verification may simply not be projected yet: users.events and items.events
            # are separate topics, so an item can be handled before the owner's verification.
            # Retried on the consumer's schedule; only the last attempt records it skipped.
            raise TransientError(f"user {owner_id}'s address is not verified yet ({kind.value})")
        skip = NOT_VERIFIED
    return [Planned(kind, owner_id, owner.email, owner.name, context, skip_reason=skip)]


async def plan_item_created(
    session: AsyncSession, envelope: Envelope, event: ItemCreated, links: Links
) -> list[Planned]:
    """Remember the item; tell the owner it is listed."""
    mail = await _item_mail(
        session,
        event.owner_id,
        Kind.ITEM_LISTED,
        {
            "public_url": links.base(),
            "item_name": clean_name(event.name),
            "price": format(event.price, "f"),
            "currency": event.currency,
            "item_url": links.item(event.item_id),
        },
    )
    await projection.apply_item_created(session, event, envelope.aggregateversion)
    return mail


async def plan_item_updated(
    session: AsyncSession, envelope: Envelope, event: ItemUpdated, links: Links
) -> list[Planned]:
    """Tell the owner what changed (the price old to new)."""
    known = await projection.get_item(session, event.item_id)
    name_change = event.changes.get("name")
    item_name = (
        known.name
        if known is not None
        else clean_name(str(name_change.new))
        if name_change is not None
        else f"#{event.item_id}"
    )
    mail = await _item_mail(
        session,
        event.owner_id,
        Kind.ITEM_CHANGED,
        {
            "public_url": links.base(),
            "item_name": item_name,
            "changes": describe_changes(event, known.currency if known else None),
            "item_url": links.item(event.item_id),
        },
    )
    await projection.apply_item_updated(session, event, envelope.aggregateversion)
    return mail


async def plan_item_deleted(
    session: AsyncSession, envelope: Envelope, event: ItemDeleted, links: Links
) -> list[Planned]:
    """Tell the owner the item was removed, and why."""
    known = await projection.get_item(session, event.item_id)
    mail = await _item_mail(
        session,
        event.owner_id,
        Kind.ITEM_REMOVED,
        {
            "public_url": links.base(),
            "item_name": known.name if known is not None else f"#{event.item_id}",
            "reason": event.reason,
            "reason_text": REASONS.get(event.reason, event.reason),
        },
    )
    await projection.apply_item_deleted(session, event)
    return mail


PLANNERS: Mapping[type[Event], Planner] = {
    UserRegistered: plan_registered,
    UserUpdated: plan_updated,
    UserEmailChanged: plan_email_changed,
    UserDeleted: plan_deleted,
    SendEmailVerification: plan_verification,
    SendPasswordReset: plan_reset,
    ItemCreated: plan_item_created,
    ItemUpdated: plan_item_updated,
    ItemDeleted: plan_item_deleted,
}
"""Every event type the notifier handles, and its planner."""


def secret_context(event: Event, links: Links) -> dict[str, str]:
    """Template variables that are never stored: the one-time links of the commands."""
    if isinstance(event, SendEmailVerification):
        return {"link": links.token("verify-email", event.token)}
    if isinstance(event, SendPasswordReset):
        return {"link": links.token("reset-password", event.token)}
    return {}
