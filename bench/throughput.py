"""The wrk rows: POST and GET against the bare app, the gateway, and the workers curve."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    # mypy names files by package path from the repo root (explicit_package_bases); run as a
    # script, this folder is on sys.path and each module here is a top-level one.
    from bench import accounts, common, figures, system, wrk
else:
    import accounts
    import common
    import figures
    import system
    import wrk


async def throughput(
    stack: system.Stack,
    options: common.Options,
    users: httpx.AsyncClient,
    items: httpx.AsyncClient,
    notifier: httpx.AsyncClient,
    mail: httpx.AsyncClient,
    bare: httpx.AsyncClient,
) -> list[figures.Row]:
    """The wrk rows: POST and GET against the bare app, the gateway, and the workers curve."""
    load = await accounts.register(users, stack.mail, "load")
    # The load account opts out of item mail: its thousands of items must not turn into
    # thousands of emails competing for the two cores with what is measured next.
    resp = await notifier.put(
        "/api/v1/notifications/preferences", json={"item_mail": False}, headers=load.headers
    )
    resp.raise_for_status()
    item_id = await accounts.create_item(
        items, "/api/v1/items", "bench-target", headers=load.headers
    )
    bare_id = await accounts.create_item(bare, "/items", "bench-target")
    body = json.dumps(accounts.item_body("bench-item"))
    post_headers = {"Content-Type": "application/json"}
    auth = {**post_headers, "Authorization": f"Bearer {load.token}"}
    post = wrk.Load("POST /api/v1/items",
                "row + outbox row in one transaction, bearer token (auth + revocation)",
                f"{stack.items}/api/v1/items", "POST", body, auth)  # fmt: skip
    loads: list[wrk.Load] = []
    if "throughput" in options.only:
        loads = [
            wrk.Load("bare POST", "bare FastAPI + SQLAlchemy ORM insert", f"{stack.bare}/items",
                 "POST", body, post_headers),
            post,
            wrk.Load("bare GET", "bare FastAPI + SQLAlchemy session.get by id",
                 f"{stack.bare}/items/{bare_id}"),
            wrk.Load("GET /api/v1/items/{id}", "one row by id, with ETag",
                 f"{stack.items}/api/v1/items/{item_id}"),
            wrk.Load("GET via gateway", "the same GET through Traefik",
                 f"{stack.gateway}/api/v1/items/{item_id}"),
        ]  # fmt: skip
    scaled = f"POST --workers {options.workers}"
    if "scaling" in options.only:
        if post not in loads:
            loads.append(post)
        loads.append(
            wrk.Load(scaled, f"the same POST on an items process started with --workers "
                 f"{options.workers} (same database, same relay)",
                 f"{stack.items_workers}/api/v1/items", "POST", body, auth)
        )  # fmt: skip

    async def drain() -> float:
        return await accounts.wait_drained(stack.items, stack.notifier)

    common.console.print(
        f"throughput: wrk -t{options.threads} -c{options.connections}, "
        f"{options.rounds} interleaved rounds of {options.seconds:g} s"
    )
    parts = await wrk.interleave(loads, options, {post.name: drain, scaled: drain})
    by = {ld.name: figures.wrk_row(ld.name, ld.what, parts[ld.name]) for ld in loads}
    if "throughput" in options.only:
        for name in ("bare POST", "bare GET"):
            by[name].ratio, by[name].ratio_of = 1.0, "reference"
        p, get = by[post.name], by["GET /api/v1/items/{id}"]
        gw = by["GET via gateway"]
        p.ratio = figures.paired_ratio(parts[p.name], parts["bare POST"])
        p.ratio_of, p.goal = "req/s / bare POST", ">=1.0x"
        get.ratio = figures.paired_ratio(parts[get.name], parts["bare GET"])
        get.ratio_of, get.goal = "req/s / bare GET", ">=1.0x"
        gw.ratio = figures.paired_ratio(parts[gw.name], parts[get.name])
        gw.ratio_of, gw.goal = "req/s / GET direct", ">=0.85x"
    if "scaling" in options.only:
        sc = by[scaled]
        sc.ratio = figures.paired_ratio(parts[scaled], parts[post.name])
        sc.ratio_of, sc.goal = "req/s / POST (1 worker)", ">1.0x"
        if "throughput" not in options.only:
            by[post.name].ratio, by[post.name].ratio_of = 1.0, "reference"
    return list(by.values())
