"""API keys as the proxy sees them: recognise one and hash it the way the database stores it."""
from __future__ import annotations

import hashlib


def is_api_key(token: str, prefix: str) -> bool:
    return token.startswith(prefix)


def hash_api_key(key: str) -> bytes:
    """sha256 of the key's UTF-8 bytes: what create_api_key stored in api_keys.key_hash."""
    return hashlib.sha256(key.encode("utf-8")).digest()
