"""Hashing secrets the way the database stores them."""
from __future__ import annotations

import hashlib


def hash_api_key(key: str) -> bytes:
    """sha256 of the key's UTF-8 bytes: what create_api_key stored in api_keys.key_hash."""
    return hashlib.sha256(key.encode("utf-8")).digest()
