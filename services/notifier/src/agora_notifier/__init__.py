"""Agora's notifier: turns domain events and commands into email, effectively once."""
