"""What the kit's table helpers need from a migration, written once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy.schema import SchemaItem


class MigrationOps(Protocol):
    """The part of ``alembic.op`` the table helpers use (keeps alembic out of imports)."""

    def create_table(self, table_name: str, *columns: SchemaItem, **kw: Any) -> Any: ...

    def create_index(
        self, index_name: str, table_name: str, columns: Sequence[str], **kw: Any
    ) -> Any: ...

    def drop_table(self, table_name: str, **kw: Any) -> Any: ...
