"""Small background parts of the notifier: the SMTP pool's lifetime."""

from __future__ import annotations

from agora_notifier.smtp import EmailSender


class SenderComponent:
    """Closes the SMTP connection pool on shutdown (after the consumer stopped)."""

    def __init__(self, sender: EmailSender) -> None:
        self.name = "smtp"
        self._sender = sender

    async def start(self) -> None:
        """Nothing to start: connections open on the first email."""

    async def stop(self) -> None:
        """Quit the pooled connections."""
        await self._sender.close()

    def is_alive(self) -> bool:
        """The pool cannot wedge; a failing server shows as retries."""
        return True
