"""Alembic environment of the users database (async, URL from DATABASE_URL via the settings)."""

from agora_kit.migrations import run_migrations
from agora_kit.settings import ServiceSettings
from agora_users.models import Base

# The settings base reads DATABASE_URL exactly as the service does; the keys settings of
# UsersSettings are not needed to migrate, so a migration job does not have to carry them.
run_migrations(target_metadata=Base.metadata, settings_factory=ServiceSettings)
