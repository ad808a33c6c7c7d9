# mypy: ignore-errors
# Run by another interpreter (a venv with faststream-outbox, which the workspace does not
# depend on): mypy here cannot see its types, so it does not check this file.
"""The relay's Python peer: PyPI ``faststream-outbox`` draining a backlog to the same broker.

``run.py --peer-outbox PYTHON`` runs this file with PYTHON, an interpreter that has
``faststream-outbox[asyncpg]==0.19.*`` and ``faststream[kafka]``. It creates the library's
outbox table in its own database, commits ``--rows`` rows with ``publish_batch`` in one
transaction, starts the library's relay (an outbox subscriber decorated with a Kafka
publisher, as its quickstart shows) and times until every row is gone (the library deletes a
row once its handler, here the Kafka publish, succeeded). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import sqlalchemy as sa
from faststream.kafka import KafkaBroker
from faststream_outbox import OutboxBroker, make_outbox_table
from sqlalchemy.ext.asyncio import create_async_engine


async def main(args: argparse.Namespace) -> dict[str, float]:
    """Fill the outbox, relay it, return the figures."""
    metadata = sa.MetaData()
    table = make_outbox_table(metadata, table_name="outbox")
    engine = create_async_engine(args.dsn, pool_size=10)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    outbox = OutboxBroker(engine, outbox_table=table)
    kafka = KafkaBroker(args.bootstrap, acks="all", linger_ms=args.linger_ms)
    publisher = kafka.publisher(args.topic)

    @publisher
    @outbox.subscriber(
        "bench", max_workers=args.max_workers, fetch_batch_size=args.fetch_batch_size,
        min_fetch_interval=0.01, max_fetch_interval=0.1,
    )  # fmt: skip
    async def relay(body: dict) -> dict:
        return body

    pad = "x" * 480
    began = time.perf_counter()
    async with engine.begin() as conn:
        for start in range(0, args.rows, 1000):
            bodies = [{"id": i, "pad": pad} for i in range(start, min(start + 1000, args.rows))]
            await outbox.publish_batch(*bodies, queue="bench", session=conn)
    inserted_s = time.perf_counter() - began
    await kafka.start()
    await outbox.start()
    began = time.perf_counter()
    left = args.rows
    deadline = began + args.timeout
    try:
        async with engine.connect() as conn:
            while left and time.perf_counter() < deadline:
                await asyncio.sleep(0.1)
                left = (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar()
                await conn.commit()
        seconds = time.perf_counter() - began
    finally:
        await outbox.stop()
        await kafka.stop()
        await engine.dispose()
    return {"rows": args.rows, "left": left, "seconds": seconds, "insert_s": inserted_s}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="postgresql+asyncpg://... of its database")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--max-workers", type=int, default=1, help="the library's default: 1")
    parser.add_argument("--fetch-batch-size", type=int, default=10, help="library default: 10")
    parser.add_argument("--timeout", type=float, default=300)
    print(json.dumps(asyncio.run(main(parser.parse_args()))), flush=True)  # noqa: T201
