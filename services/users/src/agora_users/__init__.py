"""Agora users service: accounts, tokens and signing keys."""
