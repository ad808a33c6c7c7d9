"""A password-reset request takes as long for a known address as for an unknown one.

docs/security.md, finding 6: the known path issued a token and queued a mail before answering
(11.8 ms against 5.5 ms). The app is served over a real socket here, because an in-process
transport waits for the work done after the response too. The known path is made slow on
purpose (0.6 s): the answer must not wait for it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import uvicorn
from agora_deploy.launchers.process import free_port
from agora_users import recovery
from agora_users.onetime import issue_one_time
from agora_users.testing import ClientFactory, UsersTap, new_email, new_request_id, register
from fastapi import FastAPI

pytestmark = pytest.mark.asyncio(loop_scope="session")

SLOW_S = 0.6


async def test_reset_answers_before_the_account_dependent_work(
    users_app: FastAPI,
    users_client: ClientFactory,
    users_tap: UsersTap,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, _ = await register(users_client())

    async def slow_issue(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(SLOW_S)
        return await issue_one_time(*args, **kwargs)

    monkeypatch.setattr(recovery, "issue_one_time", slow_issue, raising=True)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(users_app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            timings: dict[str, float] = {}
            for label, email in (("unknown", new_email()), ("known", user["email"])):
                request_id = new_request_id()
                started = time.perf_counter()
                response = await http.post(
                    "/api/v1/auth/password-reset",
                    json={"email": email},
                    headers={"X-Request-ID": request_id},
                )
                timings[label] = time.perf_counter() - started
                assert response.status_code == 202, response.text
            assert timings["known"] < SLOW_S / 2, timings
            # The work still happens, after the answer.
            await users_tap.wait_for(request_id, 1)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
