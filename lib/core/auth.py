"""Supabase access tokens: verification (HS256 secret or JWKS) and local minting."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jwt

from lib.core.config import Settings
from lib.core.errors import MissingSetting, Unauthorized

ASYMMETRIC = ["RS256", "ES256", "EdDSA"]


@dataclass(frozen=True)
class Claims:
    user_id: uuid.UUID
    email: str | None
    role: str
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("missing Authorization header", type="missing_credentials")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'", type="invalid_credentials")
    return token.strip()


def looks_like_jwt(token: str) -> bool:
    """A JWS in compact form: three base64url parts, the header a JSON object (`eyJ`)."""
    return token.startswith("eyJ") and token.count(".") == 2


@lru_cache(maxsize=4)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=600)


def verify_access_token(token: str, settings: Settings) -> Claims:
    """The claims of a valid Supabase user access token, or Unauthorized."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Unauthorized("malformed token", type="invalid_token") from exc
    alg = header.get("alg")
    try:
        if alg == "HS256":
            key: Any = settings.require("supabase_jwt_secret")
            algorithms = ["HS256"]
        elif alg in ASYMMETRIC:
            if not settings.supabase_jwks_url:
                raise MissingSetting("SUPABASE_JWKS_URL")
            key = _jwks_client(settings.supabase_jwks_url).get_signing_key_from_jwt(token).key
            algorithms = ASYMMETRIC
        else:
            raise Unauthorized(f"unsupported token algorithm {alg!r}", type="invalid_token")
        claims = jwt.decode(token, key, algorithms=algorithms, audience="authenticated",
                            options={"require": ["exp", "sub"]}, leeway=30)
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("token expired", type="token_expired") from exc
    except jwt.PyJWKClientError as exc:
        raise Unauthorized("token signing key not found", type="invalid_token") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}", type="invalid_token") from exc
    if claims.get("role") != "authenticated":
        raise Unauthorized("token is not a signed-in user's token", type="invalid_token")
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError as exc:
        raise Unauthorized("token subject is not a user id", type="invalid_token") from exc
    return Claims(user_id=user_id, email=claims.get("email"), role=claims["role"], raw=claims)


def signed_in_user(authorization: str | None, settings: Settings) -> Claims:
    """The signed-in user an `Authorization: Bearer <Supabase JWT>` header names, or Unauthorized."""
    return verify_access_token(bearer_token(authorization), settings)


def mint_access_token(user_id: uuid.UUID | str, email: str | None, secret: str, *, ttl: int = 3600) -> str:
    """A token shaped like Supabase Auth's, signed with the project's JWT secret (local use)."""
    now = int(time.time())
    claims = {
        "aud": "authenticated", "role": "authenticated", "sub": str(user_id), "email": email,
        "iat": now, "exp": now + ttl, "iss": "tollbooth-local", "session_id": str(uuid.uuid4()),
        "app_metadata": {"provider": "email"}, "user_metadata": {}, "is_anonymous": False,
    }
    return jwt.encode(claims, secret, algorithm="HS256")
