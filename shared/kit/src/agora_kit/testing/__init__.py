"""Helpers for services' tests (no pytest import): signed tokens, a JWKS server, app clients."""
