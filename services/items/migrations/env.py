"""Alembic environment of the items service: async, DATABASE_URL read through ItemsSettings."""

from agora_items.config import ItemsSettings
from agora_items.models import metadata
from agora_kit.migrations import run_migrations

run_migrations(target_metadata=metadata, settings_factory=ItemsSettings)
