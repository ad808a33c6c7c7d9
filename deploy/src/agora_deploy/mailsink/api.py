"""The HTTP side: Mailpit's /api/v1 routes, health endpoints and the web inbox (Starlette)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Final
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from starlette.routing import Route

from agora_deploy.mailsink._json import json_field
from agora_deploy.mailsink.chaos import Chaos, ChaosError
from agora_deploy.mailsink.headers import header_map
from agora_deploy.mailsink.message import StoredMessage
from agora_deploy.mailsink.mime import find_part
from agora_deploy.mailsink.search import compile_query
from agora_deploy.mailsink.store import MailStore

VERSION = "agora-mailsink-0.1.0"
DEFAULT_LIMIT = 50

#: The inbox page: its own scripts, styles and API calls; frames only this origin's /view/.
INBOX_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
#: A message's HTML part: its inline styles and embedded images, nothing that runs or loads,
#: in a sandbox even when opened outside the inbox's sandboxed iframe.
MESSAGE_HTML_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
_UI: Final = Path(__file__).with_name("ui")
#: URL name -> media type: nothing outside this table is served from the ui folder.
_UI_ASSETS: Final = {"inbox.js": "text/javascript", "inbox.css": "text/css"}
_PAGE_HEADERS: Final = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class _Handlers:
    """The endpoints of the API, as methods over one store and chaos switchboard."""

    def __init__(self, store: MailStore, chaos: Chaos) -> None:
        self.store = store
        self.chaos = chaos

    async def livez(self, request: Request) -> Response:
        """Answer that the process is alive."""
        return PlainTextResponse("ok")

    async def readyz(self, request: Request) -> Response:
        """Answer that the sink accepts mail and API calls."""
        return PlainTextResponse("ok")

    async def info(self, request: Request) -> Response:
        """Show the mailbox counts and runtime statistics."""
        counters = self.store.counters
        uptime = (datetime.now(UTC) - counters.started_at).total_seconds()
        return JSONResponse(
            {
                "Version": VERSION,
                "LatestVersion": "",
                "Database": self.store.database,
                "DatabaseSize": sum(m.size for m in self.store.newest_first()),
                "Messages": len(self.store),
                "Unread": self.store.unread,
                "Tags": {},
                # Ours, not Mailpit's: the bound and how many messages it ever pushed out.
                "MaxMessages": self.store.max_messages,
                "Evicted": self.store.evicted,
                "RuntimeStats": {
                    "Uptime": int(uptime),
                    "MessagesDeleted": counters.messages_deleted,
                    "SMTPAccepted": counters.smtp_accepted,
                    "SMTPAcceptedSize": counters.smtp_accepted_size,
                    "SMTPRejected": counters.smtp_rejected,
                    "SMTPIgnored": 0,
                },
            }
        )

    async def list_messages(self, request: Request) -> Response:
        """List messages newest first, paginated with start and limit."""
        messages = self.store.newest_first()
        return _summary(self.store, messages, messages_count=len(messages), request=request)

    async def delete_messages(self, request: Request) -> Response:
        """Delete the messages named in {"IDs": [...]}, or all when no IDs are given."""
        body = await _json_body(request)
        ids = json_field(body, "IDs") if isinstance(body, dict) else None
        if isinstance(ids, list) and ids:
            self.store.delete(str(i) for i in ids)
        else:
            self.store.clear()
        return PlainTextResponse("ok")

    async def set_read(self, request: Request) -> Response:
        """Set the read status of the messages named in IDs, or of all messages."""
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _bad_request("the body must be a JSON object")
        ids = json_field(body, "IDs")
        read = json_field(body, "Read") is True
        self.store.mark_read(
            [str(i) for i in ids] if isinstance(ids, list) and ids else None, read=read
        )
        return PlainTextResponse("ok")

    async def search(self, request: Request) -> Response:
        """List the messages matching a Mailpit search query, newest first."""
        query = request.query_params.get("query", "").strip()
        if not query:
            return _bad_request("Error: no search query")
        predicate = compile_query(query)
        matches = [m for m in self.store.newest_first() if predicate(m)]
        return _summary(self.store, matches, messages_count=len(matches), request=request)

    async def delete_search(self, request: Request) -> Response:
        """Delete every message matching a Mailpit search query."""
        query = request.query_params.get("query", "").strip()
        if not query:
            return _bad_request("Error: no search query")
        predicate = compile_query(query)
        self.store.delete([m.id for m in self.store.newest_first() if predicate(m)])
        return PlainTextResponse("ok")

    async def get_message(self, request: Request) -> Response:
        """Return one decoded message and mark it read."""
        message = self.store.get(request.path_params["id"])
        if message is None:
            return _not_found()
        self.store.mark_read([message.id], read=True)
        return JSONResponse(message.detail_json())

    async def get_headers(self, request: Request) -> Response:
        """Return the headers of one message as {"Name": ["value", ...]}."""
        message = self.store.get(request.path_params["id"])
        if message is None:
            return _not_found()
        return JSONResponse(header_map(message.raw))

    async def get_raw(self, request: Request) -> Response:
        """Return the message source exactly as stored."""
        message = self.store.get(request.path_params["id"])
        if message is None:
            return _not_found()
        headers = {}
        if request.query_params.get("dl") == "1":
            headers["Content-Disposition"] = f'attachment; filename="{quote(message.id)}.eml"'
        return Response(message.raw, media_type="text/plain; charset=utf-8", headers=headers)

    async def get_part(self, request: Request) -> Response:
        """Return one attachment or inline part of a message."""
        message = self.store.get(request.path_params["id"])
        if message is None:
            return _not_found()
        part = find_part(message.raw, request.path_params["part_id"])
        if part is None:
            return _not_found()
        media_type = part.content_type
        disposition = "inline"
        if media_type in {"text/html", "text/xml", "application/xhtml+xml", "image/svg+xml"}:
            # Served from the API origin, active content must not render: download it instead.
            media_type, disposition = "application/octet-stream", "attachment"
        name = quote(part.file_name or part.content_id)
        return Response(
            part.content,
            media_type=media_type,
            headers={"Content-Disposition": f'{disposition}; filename="{name}"'},
        )

    async def inbox(self, request: Request) -> Response:
        """The web inbox: the message list, one message's HTML, text and headers."""
        return HTMLResponse(
            _inbox_html(),
            headers={**_PAGE_HEADERS, "Content-Security-Policy": INBOX_CSP},
        )

    async def ui_asset(self, request: Request) -> Response:
        """Serve the inbox's script or stylesheet."""
        name = request.path_params["name"]
        media_type = _UI_ASSETS.get(name)
        if media_type is None:
            return _not_found()
        return FileResponse(_UI / name, media_type=media_type, headers=dict(_PAGE_HEADERS))

    async def view_html(self, request: Request) -> Response:
        """Return a message's HTML part as a page of its own, sandboxed by its CSP."""
        message = self.store.get(request.path_params["id"])
        html = message.detail_json().get("HTML") if message is not None else None
        if not isinstance(html, str) or not html:
            return _not_found()
        return HTMLResponse(
            html, headers={**_PAGE_HEADERS, "Content-Security-Policy": MESSAGE_HTML_CSP}
        )

    async def get_chaos(self, request: Request) -> Response:
        """Show the chaos triggers."""
        return JSONResponse(self.chaos.to_json())

    async def put_chaos(self, request: Request) -> Response:
        """Replace the chaos triggers; omitted triggers are switched off."""
        body = await _json_body(request)
        try:
            self.chaos.replace(body)
        except ChaosError as exc:
            return _bad_request(str(exc))
        return JSONResponse(self.chaos.to_json())


def create_app(*, store: MailStore, chaos: Chaos) -> Starlette:
    """Build the Starlette app serving Mailpit's API over this store and chaos switchboard."""
    h = _Handlers(store, chaos)
    routes = [
        Route("/", h.inbox, methods=["GET"]),
        Route("/ui/{name}", h.ui_asset, methods=["GET"]),
        Route("/view/{id}.html", h.view_html, methods=["GET"]),
        Route("/livez", h.livez, methods=["GET"]),
        Route("/readyz", h.readyz, methods=["GET"]),
        Route("/api/v1/info", h.info, methods=["GET"]),
        Route("/api/v1/messages", h.list_messages, methods=["GET"]),
        Route("/api/v1/messages", h.delete_messages, methods=["DELETE"]),
        Route("/api/v1/messages", h.set_read, methods=["PUT"]),
        Route("/api/v1/search", h.search, methods=["GET"]),
        Route("/api/v1/search", h.delete_search, methods=["DELETE"]),
        Route("/api/v1/message/{id}", h.get_message, methods=["GET"]),
        Route("/api/v1/message/{id}/headers", h.get_headers, methods=["GET"]),
        Route("/api/v1/message/{id}/raw", h.get_raw, methods=["GET"]),
        Route("/api/v1/message/{id}/part/{part_id}", h.get_part, methods=["GET"]),
        Route("/api/v1/chaos", h.get_chaos, methods=["GET"]),
        Route("/api/v1/chaos", h.put_chaos, methods=["PUT"]),
    ]
    return Starlette(routes=routes)


@cache
def _inbox_html() -> str:
    return (_UI / "inbox.html").read_text("utf-8")


def _summary(
    store: MailStore, messages: Sequence[StoredMessage], *, messages_count: int, request: Request
) -> Response:
    start = _int_param(request, "start", default=0, minimum=0)
    limit = _int_param(request, "limit", default=DEFAULT_LIMIT, minimum=1)
    page = messages[start : start + limit]
    return JSONResponse(
        {
            "total": len(store),
            "unread": store.unread,
            "count": len(page),
            "messages_count": messages_count,
            "messages_unread": sum(1 for m in messages if not m.read),
            "start": start,
            "tags": [],
            "messages": [m.summary_json() for m in page],
        }
    )


def _int_param(request: Request, name: str, *, default: int, minimum: int) -> int:
    try:
        value = int(request.query_params.get(name, ""))
    except ValueError:
        return default
    return value if value >= minimum else default


async def _json_body(request: Request) -> object:
    body = await request.body()
    if not body.strip():
        return None
    try:
        parsed: object = json.loads(body)
    except ValueError:
        return None
    return parsed


def _bad_request(message: str) -> Response:
    return PlainTextResponse(message, status_code=400)


def _not_found() -> Response:
    return PlainTextResponse("Not found", status_code=404)
