"""Create the users service's signing key set once, where its settings say (never rotate).

docker-compose runs this as the one-shot ``users-keys`` job before the users service starts:
outside development the service refuses to invent keys, so a deployment provisions them
explicitly, into a volume that outlives the containers. Rotation stays a separate, deliberate
step (``agora keys rotate``).
"""

from __future__ import annotations

import sys

from agora_users.config import UsersSettings
from agora_users.keys import KeySetError, ensure_folder, load_folder


def main() -> int:
    """Ensure the key set exists and loads; report what was done."""
    settings = UsersSettings()
    folder = settings.key_folder
    if folder is None:
        sys.stdout.write("USERS_SIGNING_KEYS is set: no key folder to provision\n")
        return 0
    created = ensure_folder(folder, settings.key_algorithm)
    try:
        keyset = load_folder(folder)
    except KeySetError as exc:
        sys.stderr.write(f"the key set in {folder} does not load: {exc}\n")
        return 1
    verb = "created" if created else "kept"
    sys.stdout.write(f"{verb} the signing key set in {folder} (active kid {keyset.active.kid})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
