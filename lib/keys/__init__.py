"""API keys' Python side (the keys themselves, their controls, rotation and trials live in
SQL: the keys* migrations).

- `unkey`: Unkey's v2 API over httpx (createKey, deleteKey, rerollKey, apis.listKeys) and
  the one mapping of its failures.
- `managed`: Unkey-managed keys: a key created, revoked or rotated here is mirrored at
  Unkey (its `unkey_key_id` stored), and `sync_unkey` reconciles both sides. Verification
  never calls Unkey: the chat proxy checks the key's hash in its one database round trip.
"""
