"""The lifecycle protocol of background components (relay, consumer, ...) run by a service app."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Component(Protocol):
    """A long-running background part of a service, started and stopped by the app lifespan.

    ``start`` spawns the component's task and keeps a strong reference to it (the event loop
    only holds weak ones); ``stop`` cancels that task and awaits it, bounded by a timeout, so a
    wedged component never blocks shutdown. ``is_alive`` backs ``/health/live``: it returns
    False only when the component is wedged or stalled (not merely when a dependency such as
    the broker is down, which the component rides out by retrying).
    """

    name: str

    async def start(self) -> None:
        """Spawn the component's task and return without waiting for it."""
        ...

    async def stop(self) -> None:
        """Cancel the task and await it with a timeout."""
        ...

    def is_alive(self) -> bool:
        """Return False only when the component is wedged or stalled."""
        ...
