"""The embedded mail sink: real SMTP in through aiosmtplib, Mailpit's HTTP API out through httpx."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest
import pytest_asyncio
from agora_deploy.launchers.mail import start_mail
from agora_deploy.launchers.process import free_port
from agora_deploy.mailsink import MailSink, MailSinkConfig, MailStore
from agora_deploy.mailsink.disk import MailboxFile, MailboxLockedError
from agora_deploy.mailsink.headers import header_map
from hypothesis import given, settings
from hypothesis import strategies as st

DEADLINE = 10.0


@pytest_asyncio.fixture
async def sink() -> AsyncIterator[MailSink]:
    """Run one sink in-process on free ports."""
    mail_sink = MailSink()
    await mail_sink.start()
    try:
        yield mail_sink
    finally:
        await mail_sink.stop()


@pytest_asyncio.fixture
async def api(sink: MailSink) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the sink's Mailpit API."""
    async with httpx.AsyncClient(base_url=sink.api_url, timeout=5.0) as client:
        yield client


def uid() -> str:
    """Return a short unique token for addresses and ids."""
    return uuid.uuid4().hex[:12]


def make_message(
    *, subject: str, to: str = "alice@example.test", message_id: str | None = None
) -> EmailMessage:
    """Build a text + HTML alternative message."""
    msg = EmailMessage()
    msg["From"] = "Agora Notifier <noreply@agora.test>"
    msg["To"] = to
    msg["Subject"] = subject
    if message_id is not None:
        msg["Message-ID"] = f"<{message_id}>"
    msg.set_content(f"Plain body of {subject}\n")
    msg.add_alternative(f"<p>HTML body of <b>{subject}</b></p>\n", subtype="html")
    return msg


async def send(sink: MailSink, msg: EmailMessage, **kwargs: Any) -> None:
    """Deliver one message to the sink over SMTP."""
    await aiosmtplib.send(msg, hostname=sink.host, port=sink.smtp_port, timeout=5.0, **kwargs)


async def poll(
    fetch: Callable[[], Awaitable[dict[str, Any]]],
    done: Callable[[dict[str, Any]], bool],
    *,
    what: str,
) -> dict[str, Any]:
    """Call fetch until done(result) holds, failing after the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while True:
        result = await fetch()
        if done(result):
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last answer: {result}")
        await asyncio.sleep(0.05)


async def messages(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    """GET /api/v1/messages."""
    response = await api.get("/api/v1/messages", params=params)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def wait_total(api: httpx.AsyncClient, total: int) -> dict[str, Any]:
    """Wait until the mailbox holds exactly this many messages."""
    return await poll(lambda: messages(api), lambda b: b["total"] == total, what=f"{total} mails")


@pytest.mark.asyncio
async def test_message_is_readable_with_decoded_fields_and_headers(
    sink: MailSink, api: httpx.AsyncClient
) -> None:
    token = uid()
    message_id = f"{token}@agora.test"
    subject = f"Grüße aus Zürich — {token} ✓"
    hidden = f"hidden-{token}@example.test"
    msg = make_message(subject=subject, to=f"Alice Ü <alice-{token}@example.test>")
    msg["Message-ID"] = f"<{message_id}>"
    msg["Cc"] = f"bob-{token}@example.test"

    await send(
        sink,
        msg,
        recipients=[f"alice-{token}@example.test", f"bob-{token}@example.test", hidden],
        username="notifier",
        password="anything",
    )

    listing = await wait_total(api, 1)
    assert listing["count"] == 1
    summary = listing["messages"][0]
    assert summary["MessageID"] == message_id
    assert summary["Subject"] == subject
    assert summary["From"] == {"Name": "Agora Notifier", "Address": "noreply@agora.test"}
    assert summary["To"] == [{"Name": "Alice Ü", "Address": f"alice-{token}@example.test"}]
    assert summary["Cc"] == [{"Name": "", "Address": f"bob-{token}@example.test"}]
    # The envelope-only recipient shows under Bcc, as Mailpit shows it.
    assert summary["Bcc"] == [{"Name": "", "Address": hidden}]
    assert summary["Snippet"] == f"HTML body of {subject}"
    assert summary["Size"] > 0
    assert summary["Username"] == "notifier"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", summary["Created"]
    )

    detail = (await api.get(f"/api/v1/message/{summary['ID']}")).json()
    assert detail["ID"] == summary["ID"]
    assert detail["MessageID"] == message_id
    assert detail["Subject"] == subject
    assert detail["From"]["Address"] == "noreply@agora.test"
    assert [a["Address"] for a in detail["To"]] == [f"alice-{token}@example.test"]
    assert [a["Address"] for a in detail["Bcc"]] == [hidden]
    assert detail["Text"] == f"Plain body of {subject}\n"
    assert detail["HTML"] == f"<p>HTML body of <b>{subject}</b></p>\n"
    assert detail["ReturnPath"] == "noreply@agora.test"
    assert detail["Date"]

    headers = (await api.get(f"/api/v1/message/{summary['ID']}/headers")).json()
    assert headers["Message-Id"] == [f"<{message_id}>"]
    assert headers["Return-Path"] == ["<noreply@agora.test>"]
    assert headers["Bcc"] == [hidden]
    assert headers["Content-Type"][0].startswith("multipart/alternative;")
    assert headers["Subject"][0].startswith("=?utf-8?")  # raw, still encoded, as Mailpit gives it

    raw = await api.get(f"/api/v1/message/{summary['ID']}/raw")
    assert raw.status_code == 200
    assert f"Message-ID: <{message_id}>" in raw.text
    assert "Content-Type: text/html" in raw.text

    # The in-process store agrees with the API about the envelope.
    stored = sink.store.get(summary["ID"])
    assert stored is not None
    assert stored.envelope_from == "noreply@agora.test"
    assert hidden in stored.envelope_recipients


@pytest.mark.asyncio
async def test_quoted_printable_latin1_and_a_missing_message_id(
    sink: MailSink, api: httpx.AsyncClient
) -> None:
    token = uid()
    raw = (
        f"From: =?iso-8859-1?q?Jos=E9?= <jose-{token}@example.test>\r\n"
        f"To: carol-{token}@example.test\r\n"
        "Subject: =?iso-8859-1?q?Caf=E9_cr=E8me?=\r\n"
        "Date: Tue, 01 Dec 2026 10:00:00 +0100\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="iso-8859-1"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n"
        "Un caf=E9 cr=E8me, s'il vous pla=EEt.\r\n"
    ).encode("ascii")
    await aiosmtplib.send(
        raw,
        sender=f"jose-{token}@example.test",
        recipients=[f"carol-{token}@example.test"],
        hostname=sink.host,
        port=sink.smtp_port,
        timeout=5.0,
    )
    summary = (await wait_total(api, 1))["messages"][0]
    detail = (await api.get(f"/api/v1/message/{summary['ID']}")).json()
    assert detail["From"] == {"Name": "José", "Address": f"jose-{token}@example.test"}
    assert detail["Subject"] == "Café crème"
    assert detail["Text"] == "Un café crème, s'il vous plaît.\n"
    assert detail["HTML"] == ""
    assert detail["Date"] == "2026-12-01T10:00:00.000+01:00"
    assert detail["Bcc"] == []
    # Like Mailpit, the sink gives a message without one a Message-ID of its own.
    assert detail["MessageID"].endswith("@mailpit")


@pytest.mark.asyncio
async def test_list_is_newest_first_with_limit_start_and_total(
    sink: MailSink, api: httpx.AsyncClient
) -> None:
    token = uid()
    for n in range(1, 4):
        await send(sink, make_message(subject=f"{token} #{n}"))
    await wait_total(api, 3)

    first_page = await messages(api, limit=2)
    assert first_page["total"] == 3
    assert first_page["count"] == 2
    assert first_page["start"] == 0
    assert [m["Subject"] for m in first_page["messages"]] == [f"{token} #3", f"{token} #2"]

    second_page = await messages(api, limit=2, start=2)
    assert second_page["total"] == 3
    assert second_page["count"] == 1
    assert second_page["start"] == 2
    assert [m["Subject"] for m in second_page["messages"]] == [f"{token} #1"]


@pytest.mark.asyncio
async def test_delete_all_and_delete_some(sink: MailSink, api: httpx.AsyncClient) -> None:
    token = uid()
    for n in range(3):
        await send(sink, make_message(subject=f"{token} {n}"))
    listing = await wait_total(api, 3)
    doomed = [listing["messages"][0]["ID"], listing["messages"][2]["ID"]]

    response = await api.request("DELETE", "/api/v1/messages", json={"IDs": doomed})
    assert response.status_code == 200
    left = await messages(api)
    assert left["total"] == 1
    assert [m["Subject"] for m in left["messages"]] == [f"{token} 1"]
    assert (await api.get(f"/api/v1/message/{doomed[0]}")).status_code == 404

    response = await api.delete("/api/v1/messages")
    assert response.status_code == 200
    empty = await messages(api)
    assert empty["total"] == 0
    assert empty["messages"] == []


@pytest.mark.asyncio
async def test_unknown_id_is_404(api: httpx.AsyncClient) -> None:
    for path in ("", "/headers", "/raw", "/part/1"):
        response = await api.get(f"/api/v1/message/no-such-{uid()}{path}")
        assert response.status_code == 404, path
    assert (await api.get("/api/v1/message/latest")).status_code == 404


@pytest.mark.asyncio
async def test_chaos_recipient_451_refuses_until_switched_off(
    sink: MailSink, api: httpx.AsyncClient
) -> None:
    token = uid()
    response = await api.put(
        "/api/v1/chaos", json={"Recipient": {"ErrorCode": 451, "Probability": 100}}
    )
    assert response.status_code == 200
    assert response.json()["Recipient"] == {"ErrorCode": 451, "Probability": 100}
    shown = (await api.get("/api/v1/chaos")).json()
    assert shown == {
        "Sender": {"ErrorCode": 451, "Probability": 0},
        "Recipient": {"ErrorCode": 451, "Probability": 100},
        "Authentication": {"ErrorCode": 535, "Probability": 0},
    }

    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send(sink, make_message(subject=f"{token} refused"))
    assert [r.code for r in refused.value.recipients] == [451]
    assert (await messages(api))["total"] == 0

    await api.put("/api/v1/chaos", json={"Recipient": {"ErrorCode": 451, "Probability": 0}})
    await send(sink, make_message(subject=f"{token} delivered"))
    listing = await wait_total(api, 1)
    assert listing["messages"][0]["Subject"] == f"{token} delivered"


@pytest.mark.asyncio
async def test_chaos_sender_550_and_error_code_zero_switches_it_off(
    sink: MailSink, api: httpx.AsyncClient
) -> None:
    token = uid()
    await api.put("/api/v1/chaos", json={"Sender": {"ErrorCode": 550, "Probability": 100}})
    assert (await api.get("/api/v1/chaos")).json()["Sender"] == {
        "ErrorCode": 550,
        "Probability": 100,
    }
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await send(sink, make_message(subject=f"{token} refused"))
    assert refused.value.code == 550

    await api.put("/api/v1/chaos", json={"Sender": {"ErrorCode": 0, "Probability": 100}})
    assert (await api.get("/api/v1/chaos")).json()["Sender"]["Probability"] == 0
    await send(sink, make_message(subject=f"{token} delivered"))
    assert (await wait_total(api, 1))["messages"][0]["Subject"] == f"{token} delivered"


@pytest.mark.asyncio
async def test_chaos_authentication_refuses_login(sink: MailSink, api: httpx.AsyncClient) -> None:
    await api.put("/api/v1/chaos", json={"Authentication": {"ErrorCode": 535, "Probability": 100}})
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
        await send(sink, make_message(subject=uid()), username="u", password="p")
    assert refused.value.code == 535

    await api.put("/api/v1/chaos", json={})
    await send(sink, make_message(subject="after"), username="u", password="p")
    assert (await wait_total(api, 1))["messages"][0]["Username"] == "u"


@pytest.mark.asyncio
async def test_chaos_rejects_invalid_triggers_and_keeps_the_old_ones(
    api: httpx.AsyncClient,
) -> None:
    await api.put("/api/v1/chaos", json={"Sender": {"ErrorCode": 451, "Probability": 50}})
    for body in (
        {"Sender": {"ErrorCode": 200, "Probability": 100}},
        {"Recipient": {"ErrorCode": 451, "Probability": 101}},
        {"Recipient": {"ErrorCode": "451", "Probability": 1}},
        ["not", "an", "object"],
    ):
        response = await api.put("/api/v1/chaos", json=body)
        assert response.status_code == 400, body
    assert (await api.get("/api/v1/chaos")).json()["Sender"] == {
        "ErrorCode": 451,
        "Probability": 50,
    }


@pytest.mark.asyncio
async def test_chaos_applies_to_a_session_that_is_already_open(
    sink: MailSink, api: httpx.AsyncClient
) -> None:
    token = uid()
    client = aiosmtplib.SMTP(hostname=sink.host, port=sink.smtp_port, timeout=5.0)
    await client.connect()
    try:
        await client.send_message(make_message(subject=f"{token} before"))
        await api.put("/api/v1/chaos", json={"Recipient": {"ErrorCode": 452, "Probability": 100}})
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await client.send_message(make_message(subject=f"{token} during"))
        assert refused.value.recipients[0].code == 452
        await api.put("/api/v1/chaos", json={"Recipient": {"ErrorCode": 452, "Probability": 0}})
        await client.send_message(make_message(subject=f"{token} after"))
    finally:
        with contextlib.suppress(aiosmtplib.SMTPException):
            await client.quit()
    listing = await wait_total(api, 2)
    assert [m["Subject"] for m in listing["messages"]] == [f"{token} after", f"{token} before"]


@pytest.mark.asyncio
async def test_chaos_addresses_fail_one_recipient_and_deliver_the_other(
    sink: MailSink, api: httpx.AsyncClient
) -> None:
    token = uid()
    doomed, fine = f"doomed-{token}@example.test", f"fine-{token}@example.test"
    # The Agora extension: the trigger is scoped to one address, matched case-insensitively.
    scoped = {"ErrorCode": 451, "Probability": 100, "Addresses": [doomed.upper()]}
    response = await api.put("/api/v1/chaos", json={"Recipient": scoped})
    assert response.status_code == 200
    assert response.json()["Recipient"] == scoped
    assert (await api.get("/api/v1/chaos")).json() == {
        "Sender": {"ErrorCode": 451, "Probability": 0},
        "Recipient": scoped,
        "Authentication": {"ErrorCode": 535, "Probability": 0},
    }

    client = aiosmtplib.SMTP(hostname=sink.host, port=sink.smtp_port, timeout=5.0)
    await client.connect()
    try:
        # One session, one message, two recipients: RCPT TO of one is refused, the other's is not.
        errors, _ = await client.send_message(
            make_message(subject=f"{token} both", to=f"{doomed}, {fine}"),
            recipients=[doomed, fine],
        )
        assert list(errors) == [doomed]
        assert errors[doomed].code == 451
        # The same session: the doomed address alone is refused outright.
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await client.send_message(
                make_message(subject=f"{token} doomed only", to=doomed), recipients=[doomed]
            )
        assert [(r.recipient, r.code) for r in refused.value.recipients] == [(doomed, 451)]

        # Off (omitted from the body): the address is no longer scoped, nor shown.
        assert (await api.put("/api/v1/chaos", json={})).status_code == 200
        assert (await api.get("/api/v1/chaos")).json()["Recipient"] == {
            "ErrorCode": 451,
            "Probability": 0,
        }
        errors, _ = await client.send_message(
            make_message(subject=f"{token} after", to=doomed), recipients=[doomed]
        )
        assert errors == {}
    finally:
        with contextlib.suppress(aiosmtplib.SMTPException):
            await client.quit()

    listing = await wait_total(api, 2)
    assert [m["Subject"] for m in listing["messages"]] == [f"{token} after", f"{token} both"]
    after, both = (sink.store.get(m["ID"]) for m in listing["messages"])
    assert both is not None
    assert list(both.envelope_recipients) == [fine]
    assert after is not None
    assert list(after.envelope_recipients) == [doomed]
    assert sink.store.counters.smtp_rejected == 2


@pytest.mark.asyncio
async def test_chaos_addresses_scope_the_sender_and_empty_means_everyone(
    sink: MailSink, api: httpx.AsyncClient
) -> None:
    token = uid()
    bad, good = f"bad-{token}@agora.test", f"good-{token}@agora.test"
    await api.put(
        "/api/v1/chaos",
        json={"Sender": {"ErrorCode": 421, "Probability": 100, "Addresses": [bad]}},
    )
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await send(sink, make_message(subject=f"{token} bad"), sender=bad)
    assert refused.value.code == 421
    await send(sink, make_message(subject=f"{token} good"), sender=good)
    assert (await wait_total(api, 1))["messages"][0]["Subject"] == f"{token} good"

    # "Addresses": [] (or null) is Mailpit's plain trigger: every address fails, none is shown.
    empties: tuple[list[str] | None, ...] = ([], None)
    for empty in empties:
        body = {"Recipient": {"ErrorCode": 450, "Probability": 100, "Addresses": empty}}
        response = await api.put("/api/v1/chaos", json=body)
        assert response.json()["Recipient"] == {"ErrorCode": 450, "Probability": 100}
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await send(sink, make_message(subject=f"{token} everyone"))
    # A trigger switched off keeps no addresses.
    off = {"Recipient": {"ErrorCode": 451, "Probability": 0, "Addresses": [good]}}
    assert (await api.put("/api/v1/chaos", json=off)).json()["Recipient"] == {
        "ErrorCode": 451,
        "Probability": 0,
    }
    assert (await messages(api))["total"] == 1


@pytest.mark.asyncio
async def test_chaos_rejects_invalid_addresses_and_keeps_the_old_triggers(
    api: httpx.AsyncClient,
) -> None:
    kept = {
        "Sender": {"ErrorCode": 451, "Probability": 100, "Addresses": ["kept@example.test"]},
        "Recipient": {"ErrorCode": 452, "Probability": 30},
        "Authentication": {"ErrorCode": 535, "Probability": 0},
    }
    assert (await api.put("/api/v1/chaos", json=kept)).status_code == 200
    for addresses in (
        "a@example.test",
        {"a@example.test": True},
        [1],
        ["a@example.test", None],
        [""],
        ["no-at-sign"],
        ["@example.test"],
        ["a@"],
        ["<a@example.test>"],
        ["a b@example.test"],
        ["a@example.test\r\nRCPT TO:<b@example.test>"],
        [f"{'a' * 250}@example.test"],
    ):
        # A valid Sender next to the invalid Recipient: the whole body is refused.
        body = {
            "Sender": {"ErrorCode": 550, "Probability": 100},
            "Recipient": {"ErrorCode": 451, "Probability": 100, "Addresses": addresses},
        }
        response = await api.put("/api/v1/chaos", json=body)
        assert response.status_code == 400, addresses
        assert "Recipient.Addresses" in response.text
    authentication = {"ErrorCode": 535, "Probability": 100, "Addresses": ["a@example.test"]}
    response = await api.put("/api/v1/chaos", json={"Authentication": authentication})
    assert response.status_code == 400
    assert (await api.get("/api/v1/chaos")).json() == kept


@pytest.mark.asyncio
async def test_search_by_recipient_and_subject(sink: MailSink, api: httpx.AsyncClient) -> None:
    token = uid()
    await send(sink, make_message(subject=f"Welcome {token}", to=f"dora-{token}@example.test"))
    await send(sink, make_message(subject=f"Reset {token}", to=f"eve-{token}@example.test"))
    await wait_total(api, 2)

    async def search(query: str) -> list[str]:
        response = await api.get("/api/v1/search", params={"query": query})
        assert response.status_code == 200
        return [m["Subject"] for m in response.json()["messages"]]

    assert await search(f"to:dora-{token}@example.test") == [f"Welcome {token}"]
    assert await search(f'subject:"reset {token}"') == [f"Reset {token}"]
    assert await search(f"-to:dora-{token}") == [f"Reset {token}"]
    assert await search(token) == [f"Reset {token}", f"Welcome {token}"]
    assert (await api.get("/api/v1/search")).status_code == 400


@pytest.mark.asyncio
async def test_health_and_info(sink: MailSink, api: httpx.AsyncClient) -> None:
    assert (await api.get("/livez")).status_code == 200
    assert (await api.get("/readyz")).status_code == 200
    await send(sink, make_message(subject=uid()))
    info = await poll(
        lambda: _json(api.get("/api/v1/info")), lambda b: b["Messages"] == 1, what="info"
    )
    assert info["RuntimeStats"]["SMTPAccepted"] == 1


@pytest.mark.asyncio
async def test_oldest_messages_are_dropped_beyond_max_messages() -> None:
    token = uid()
    async with (
        MailSink(MailSinkConfig(max_messages=3)) as small,
        httpx.AsyncClient(base_url=small.api_url, timeout=5.0) as api,
    ):
        for n in range(5):
            await send(small, make_message(subject=f"{token} {n}"))
        listing = await poll(
            lambda: messages(api),
            lambda b: b["messages"] and b["messages"][0]["Subject"] == f"{token} 4",
            what="the fifth message",
        )
        assert listing["total"] == 3
        assert [m["Subject"] for m in listing["messages"]] == [f"{token} {n}" for n in (4, 3, 2)]


@pytest.mark.asyncio
async def test_stop_closes_open_sessions_and_frees_the_ports() -> None:
    mail_sink = MailSink()
    await mail_sink.start()
    smtp_port, http_port = mail_sink.smtp_port, mail_sink.http_port
    client = aiosmtplib.SMTP(hostname=mail_sink.host, port=smtp_port, timeout=5.0)
    try:
        await client.connect()
        await client.ehlo()
    finally:
        await mail_sink.stop()
    with pytest.raises(aiosmtplib.SMTPException):
        await client.noop()
    client.close()
    for port in (smtp_port, http_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()


@pytest.mark.asyncio
async def test_module_entry_point_serves_and_stops_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agora_deploy.mailsink",
        "--host",
        "127.0.0.1",
        "--smtp-port",
        "0",
        "--http-port",
        "0",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        listening = await asyncio.wait_for(
            _read_until(proc.stderr, re.compile(rb"smtp=[\d.]+:(\d+) http=[\d.]+:(\d+)")),
            timeout=DEADLINE,
        )
        smtp_port, http_port = (int(p) for p in listening.groups())
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as api:
            assert (await api.get("/livez")).status_code == 200
            token = uid()
            await aiosmtplib.send(
                make_message(subject=f"subprocess {token}"),
                hostname="127.0.0.1",
                port=smtp_port,
                timeout=5.0,
            )
            await wait_total(api, 1)
        await asyncio.wait_for(
            _read_until(proc.stderr, re.compile(rb"received .*subprocess " + token.encode())),
            timeout=DEADLINE,
        )
        proc.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(proc.communicate(), timeout=DEADLINE)
        assert proc.returncode == 0, rest
        for port in (smtp_port, http_port):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _read_until(stream: asyncio.StreamReader, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
    while True:
        line = await stream.readline()
        if not line:
            raise AssertionError(f"stream ended before a line matched {pattern.pattern!r}")
        match = pattern.search(line)
        if match is not None:
            return match


async def _json(request: Awaitable[httpx.Response]) -> dict[str, Any]:
    response = await request
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.asyncio
async def test_attachments_are_listed_and_downloadable(
    sink: MailSink, api: httpx.AsyncClient
) -> None:
    token = uid()
    msg = make_message(subject=f"invoice {token}")
    pdf = b"%PDF-1.4 " + token.encode() + bytes(range(256))
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"inv-{token}.pdf")
    await send(sink, msg)
    summary = (await wait_total(api, 1))["messages"][0]
    assert summary["Attachments"] == 1

    detail = (await api.get(f"/api/v1/message/{summary['ID']}")).json()
    assert detail["Text"] == f"Plain body of invoice {token}\n"
    [attachment] = detail["Attachments"]
    assert attachment["FileName"] == f"inv-{token}.pdf"
    assert attachment["ContentType"] == "application/pdf"
    assert attachment["Size"] == len(pdf)
    part = await api.get(f"/api/v1/message/{summary['ID']}/part/{attachment['PartID']}")
    assert part.status_code == 200
    assert part.headers["content-type"] == "application/pdf"
    assert part.content == pdf


_HEADER_NAMES = st.sampled_from(
    [
        "From",
        "To",
        "Cc",
        "Bcc",
        "Subject",
        "Date",
        "Message-ID",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "Reply-To",
        "Return-Path",
    ]
)
_HEADER_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            'multipart/mixed; boundary="b"',
            "text/html; charset=klingon",
            "base64",
            "quoted-printable",
            "=?utf-8?b?w5w=?=",
            "=?x?q?=ZZ?=",
            '"q" <a@b>, c@d',
            ".:",
            "attachment; filename*=utf-8''%E2%82",
            "Mon, 32 Jan 2020 25:00:00 +0000",
        ]
    ),
)
_BODIES = st.one_of(
    st.binary(max_size=120),
    st.just(b"--b\r\nContent-Type: text/html; charset=utf-16\r\n\r\n\xff\xfe<\x00\r\n--b--\r\n"),
)


@given(
    headers=st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=8),
    body=_BODIES,
    recipients=st.lists(st.emails(), max_size=3),
)
@settings(max_examples=300, deadline=None)
def test_any_message_is_stored_and_readable(
    headers: list[tuple[str, str]], body: bytes, recipients: list[str]
) -> None:
    raw = b"".join(f"{n}: {v}\r\n".encode("utf-8", "surrogatepass") for n, v in headers)
    store = MailStore(max_messages=2)
    message = store.add(
        raw + b"\r\n" + body, envelope_from="a@b.test", envelope_recipients=recipients
    )
    json.dumps([message.summary_json(), message.detail_json(), header_map(message.raw)])
    assert store.get(message.id) is message
    delivered = {a.address.lower() for a in message.addresses("to", "cc", "bcc")}
    assert {r.lower() for r in recipients} <= delivered


# --- the mailbox on disk (--data-dir) ---------------------------------------------------------


async def _send_to(port: int, subject: str) -> str:
    """Deliver one message over SMTP; return the ID from the sink's 250 reply."""
    _, reply = await aiosmtplib.send(
        make_message(subject=subject), hostname="127.0.0.1", port=port, timeout=5.0
    )
    match = re.search(r"queued as (\S+)", reply)
    assert match is not None, reply
    return match[1]


@pytest.mark.asyncio
async def test_acknowledged_messages_survive_a_sigkill_of_the_sink(tmp_path: Path) -> None:
    data_dir = tmp_path / "mail"
    first = start_mail(
        tmp_path / "mail.log",
        smtp_port=free_port(),
        http_port=free_port(),
        die_with_parent=True,
        data_dir=data_dir,
    )
    token = uid()
    try:
        acknowledged = [await _send_to(first.smtp_port, f"{token} 0")]
        async with httpx.AsyncClient(base_url=first.api_url, timeout=5.0) as api:
            opened = await _json(api.get(f"/api/v1/message/{acknowledged[0]}"))
            assert opened["Subject"] == f"{token} 0"
        acknowledged += await asyncio.gather(
            *(_send_to(first.smtp_port, f"{token} {n}") for n in range(1, 40))
        )
        # Killed the moment the last 250 came back: no clean shutdown, no chance to flush.
        assert first.process.proc is not None
        first.process.proc.send_signal(signal.SIGKILL)
        first.process.proc.wait(timeout=DEADLINE)
    finally:
        first.stop()
    second = start_mail(
        tmp_path / "mail.log",
        smtp_port=free_port(),
        http_port=free_port(),
        die_with_parent=True,
        data_dir=data_dir,
    )
    try:
        async with httpx.AsyncClient(base_url=second.api_url, timeout=5.0) as api:
            listing = await messages(api, limit=100)
            assert {m["ID"] for m in listing["messages"]} == set(acknowledged)
            assert listing["unread"] == len(acknowledged) - 1
            restored = await _json(api.get(f"/api/v1/message/{acknowledged[-1]}"))
            assert restored["Subject"] == f"{token} 39"
            assert "Plain body of" in restored["Text"]
            info = await _json(api.get("/api/v1/info"))
            assert info["Database"] == str(data_dir / "mailbox.sqlite3")
            # The sink still takes mail after the restart.
            await _send_to(second.smtp_port, f"{token} after")
            await wait_total(api, len(acknowledged) + 1)
    finally:
        second.stop()


@pytest.mark.asyncio
async def test_eviction_beyond_the_bound_is_counted_across_restarts(tmp_path: Path) -> None:
    token = uid()
    config = MailSinkConfig(max_messages=3, data_dir=tmp_path / "mail")
    async with MailSink(config) as small, httpx.AsyncClient(base_url=small.api_url) as api:
        for n in range(5):
            await _send_to(small.smtp_port, f"{token} {n}")
        info = await _json(api.get("/api/v1/info"))
        assert (info["Messages"], info["MaxMessages"], info["Evicted"]) == (3, 3, 2)
    async with MailSink(config) as again, httpx.AsyncClient(base_url=again.api_url) as api:
        listing = await messages(api)
        assert [m["Subject"] for m in listing["messages"]] == [f"{token} {n}" for n in (4, 3, 2)]
        assert (await _json(api.get("/api/v1/info")))["Evicted"] == 2
        # Deleting on request is not eviction.
        assert (await api.request("DELETE", "/api/v1/messages", json={})).status_code == 200
        assert (await _json(api.get("/api/v1/info")))["Evicted"] == 2
    smaller = MailSinkConfig(max_messages=1, data_dir=tmp_path / "mail")
    async with MailSink(config) as refill:
        for n in range(3):
            await _send_to(refill.smtp_port, f"{token} refill {n}")
    async with MailSink(smaller) as lowered, httpx.AsyncClient(base_url=lowered.api_url) as api:
        info = await _json(api.get("/api/v1/info"))
        # A lowered bound applies at start: two more evicted, counted with the earlier two.
        assert (info["Messages"], info["Evicted"]) == (1, 4)


@pytest.mark.asyncio
async def test_memory_only_sink_counts_evictions_too() -> None:
    async with (
        MailSink(MailSinkConfig(max_messages=2)) as sink,
        httpx.AsyncClient(base_url=sink.api_url) as api,
    ):
        for n in range(3):
            await _send_to(sink.smtp_port, f"{uid()} {n}")
        info = await _json(api.get("/api/v1/info"))
        assert (info["Database"], info["Messages"], info["Evicted"]) == ("memory", 2, 1)


def test_a_second_sink_cannot_serve_the_same_data_dir(tmp_path: Path) -> None:
    store = MailStore(data_dir=tmp_path / "mail")
    try:
        with pytest.raises(MailboxLockedError):
            MailStore(data_dir=tmp_path / "mail")
    finally:
        store.close()


@pytest.mark.asyncio
async def test_a_message_that_cannot_be_stored_gets_451_not_250(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with MailSink(MailSinkConfig(data_dir=tmp_path / "mail")) as sink:

        def disk_full(*args: object, **kwargs: object) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(MailboxFile, "add", disk_full)
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await _send_to(sink.smtp_port, "lost")
        assert refused.value.code == 451
        assert len(sink.store) == 0


def test_a_reopened_mailbox_serves_the_same_json_without_decoding_again(tmp_path: Path) -> None:
    msg = make_message(subject="Résumé ✓", message_id=f"{uid()}@agora.test")
    msg["Cc"] = "Bob <bob@example.test>"
    msg["Reply-To"] = "help@agora.test"
    msg["Date"] = "Mon, 07 Dec 2026 10:00:00 +0100"
    msg.add_attachment(b"\x00\x01binary", maintype="application", subtype="octet-stream")
    store = MailStore(data_dir=tmp_path / "mail")
    stored = store.add(bytes(msg), envelope_from="a@b.test", envelope_recipients=["x@y.test"])
    store.mark_read([stored.id], read=True)
    before = (stored.summary_json(), stored.detail_json(), stored.raw)
    store.close()
    reopened = MailStore(data_dir=tmp_path / "mail")
    try:
        loaded = reopened.get(stored.id)
        assert loaded is not None
        assert loaded.decoded is not None  # read back from disk, not decoded again
        assert (loaded.summary_json(), loaded.detail_json(), loaded.raw) == before
        assert loaded.detail_json()["Attachments"] != []
    finally:
        reopened.close()
