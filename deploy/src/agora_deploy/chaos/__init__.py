"""The chaos suite: fault injection with reconciliation (`make chaos`)."""
