"""Daily.co meetings: `daily_api` (REST client), `signature` (webhook signatures),
`events` (envelope, registry, one SQL call per event), `rooms` (create/cancel),
`room_state` (AES-GCM sealed room state, key rotation) and `reconcile` (fill gaps from
Daily's REST API after an outage)."""
