"""``/.well-known/jwks.json``: the public keys that verify Agora's access tokens."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from agora_users.deps import RuntimeDep

router = APIRouter(tags=["keys"])


class JwkSetResponse(JSONResponse):
    """A JWK Set, under its registered media type (so the OpenAPI document names it)."""

    media_type = "application/jwk-set+json"


@router.get("/.well-known/jwks.json", response_class=JwkSetResponse)
async def jwks(rt: RuntimeDep) -> JwkSetResponse:
    """Return the public keys that verify Agora's access tokens (RFC 7517)."""
    return JwkSetResponse(
        rt.keys.jwks(),
        # Short: verifiers refetch on an unknown kid anyway, and a rotation must show soon.
        headers={"Cache-Control": "public, max-age=60"},
    )
