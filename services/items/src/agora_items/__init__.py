"""Agora items service: items owned by users, published as events on items.events."""
