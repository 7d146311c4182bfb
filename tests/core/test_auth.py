"""Supabase access token verification: HS256 secret and JWKS; every bad token is a 401."""
from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from lib.core.auth import bearer_token, mint_access_token, verify_access_token
from lib.core.config import Settings
from lib.core.errors import MissingSetting, Unauthorized
from tests.support.secrets import JWT_SECRET, WRONG_JWT_SECRET

UID = uuid.uuid4()


def settings(**kw) -> Settings:
    return Settings(supabase_jwt_secret=JWT_SECRET, **kw)


def test_valid_hs256_token():
    claims = verify_access_token(mint_access_token(UID, "a@b.c", JWT_SECRET), settings())
    assert claims.user_id == UID and claims.email == "a@b.c" and claims.role == "authenticated"


@pytest.mark.parametrize("token,reason", [
    ("not-a-jwt", "malformed"),
    (jwt.encode({"sub": str(UID), "role": "authenticated", "aud": "authenticated", "exp": int(time.time()) - 3600}, JWT_SECRET), "expired"),
    (jwt.encode({"sub": str(UID), "role": "authenticated", "aud": "authenticated", "exp": int(time.time()) + 86400}, WRONG_JWT_SECRET), "invalid"),
    (jwt.encode({"sub": str(UID), "role": "anon", "aud": "authenticated", "exp": int(time.time()) + 86400}, JWT_SECRET), "not a signed-in"),
    (jwt.encode({"sub": str(UID), "role": "authenticated", "aud": "other", "exp": int(time.time()) + 86400}, JWT_SECRET), "invalid"),
    (jwt.encode({"sub": "not-a-uuid", "role": "authenticated", "aud": "authenticated", "exp": int(time.time()) + 86400}, JWT_SECRET), "subject"),
    (jwt.encode({"role": "authenticated", "aud": "authenticated", "exp": int(time.time()) + 86400}, JWT_SECRET), "invalid"),
    (jwt.encode({"sub": str(UID), "role": "authenticated", "aud": "authenticated", "exp": int(time.time()) + 86400}, None, algorithm="none"), "unsupported"),
])
def test_bad_tokens_are_401(token, reason):
    with pytest.raises(Unauthorized) as err:
        verify_access_token(token, settings())
    assert reason in err.value.message
    assert err.value.status == 401


def test_missing_secret_is_503():
    with pytest.raises(MissingSetting) as err:
        verify_access_token(mint_access_token(UID, None, JWT_SECRET), Settings())
    assert "SUPABASE_JWT_SECRET" in err.value.message and err.value.status == 503


def test_es256_token_verified_with_jwks():
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "ES256"})
    token = jwt.encode({"sub": str(UID), "role": "authenticated", "aud": "authenticated", "exp": int(time.time()) + 86400},
                       key, algorithm="ES256", headers={"kid": "k1"})
    # PyJWKClient fetches with urllib (not httpx): serve the JWKS on 127.0.0.1
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    body = json.dumps({"keys": [jwk]}).encode()

    class JWKS(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), JWKS)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/auth/v1/.well-known/jwks.json"
        claims = verify_access_token(token, Settings(supabase_jwks_url=url))
        assert claims.user_id == UID
        other = jwt.encode({"sub": str(UID), "role": "authenticated", "aud": "authenticated",
                            "exp": int(time.time()) + 86400}, ec.generate_private_key(ec.SECP256R1()),
                           algorithm="ES256", headers={"kid": "k1"})
        with pytest.raises(Unauthorized):
            verify_access_token(other, Settings(supabase_jwks_url=url))
    finally:
        server.shutdown()


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer"])
def test_bearer_header_required(header):
    with pytest.raises(Unauthorized):
        bearer_token(header)
