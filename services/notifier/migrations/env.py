"""Alembic environment of the notifier: async, DATABASE_URL read through NotifierSettings."""

from agora_kit.migrations import run_migrations
from agora_notifier.config import NotifierSettings
from agora_notifier.models import metadata

run_migrations(target_metadata=metadata, settings_factory=NotifierSettings)
