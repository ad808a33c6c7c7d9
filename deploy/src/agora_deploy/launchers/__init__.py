"""Embedded launchers: PostgreSQL, Redis, the Tansu broker and the mail sink as local processes."""
