"""Agora's service kit: settings, unit of work + outbox, relay, consumer loop, auth, HTTP."""

from agora_kit import tracing as _tracing

# Before anything imports redis: redis-py imports the OpenTelemetry SDK whenever it is
# installed, and tracing off must mean no SDK in memory (agora_kit.tracing.keep_sdk_out).
_tracing.keep_sdk_out()
