"""Agora package."""
