"""The mail sink's web inbox: its page and assets, and a message's HTML under its own CSP."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiosmtplib
import httpx
import pytest
import pytest_asyncio
from agora_deploy.mailsink import MailSink
from agora_deploy.mailsink.api import INBOX_CSP, MESSAGE_HTML_CSP


@pytest_asyncio.fixture
async def sink() -> AsyncIterator[MailSink]:
    mail_sink = MailSink()
    await mail_sink.start()
    try:
        yield mail_sink
    finally:
        await mail_sink.stop()


@pytest_asyncio.fixture
async def api(sink: MailSink) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sink.api_url, timeout=5.0) as client:
        yield client


async def _send(sink: MailSink, *, html: str | None) -> str:
    subject = f"inbox-{uuid.uuid4().hex[:8]}"
    msg = EmailMessage()
    msg["From"] = "Agora <no-reply@agora.test>"
    msg["To"] = "ada@example.test"
    msg["Subject"] = subject
    msg.set_content("Plain body\n")
    if html is not None:
        msg.add_alternative(html, subtype="html")
    await aiosmtplib.send(msg, hostname=sink.host, port=sink.smtp_port, timeout=5.0)
    return subject


async def _id_of(api: httpx.AsyncClient, subject: str) -> str:
    listed = (await api.get("/api/v1/search", params={"query": f"subject:{subject}"})).json()
    assert listed["messages_count"] == 1
    return str(listed["messages"][0]["ID"])


@pytest.mark.asyncio
async def test_inbox_page_and_its_assets(api: httpx.AsyncClient) -> None:
    page = await api.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == INBOX_CSP
    assert "frame-src 'self'" in INBOX_CSP
    assert "<script>" not in page.text
    # Relative URLs only: the gateway serves the inbox under /mail/.
    links = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
    assert sorted(links) == ["ui/inbox.css", "ui/inbox.js"]
    for link in links:
        asset = await api.get("/" + link)
        assert asset.status_code == 200
        assert asset.headers["x-content-type-options"] == "nosniff"
    assert (await api.get("/ui/inbox.html")).status_code == 404
    assert (await api.get("/ui/..%2Fapi.py")).status_code == 404


@pytest.mark.asyncio
async def test_message_html_is_served_sandboxed(sink: MailSink, api: httpx.AsyncClient) -> None:
    html = '<p style="color: red">Hello <b>Ada</b></p><script>alert(1)</script>\n'
    message_id = await _id_of(api, await _send(sink, html=html))
    view = await api.get(f"/view/{message_id}.html")
    assert view.status_code == 200
    assert view.text == html  # served as sent: the CSP, not a rewrite, keeps it inert
    csp = view.headers["content-security-policy"]
    assert csp == MESSAGE_HTML_CSP
    assert "sandbox" in csp.split("; ")
    assert "script-src" not in csp
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'self'" in csp


@pytest.mark.asyncio
async def test_a_text_only_message_has_no_html_view(sink: MailSink, api: httpx.AsyncClient) -> None:
    message_id = await _id_of(api, await _send(sink, html=None))
    assert (await api.get(f"/view/{message_id}.html")).status_code == 404
    assert (await api.get("/view/nope.html")).status_code == 404
