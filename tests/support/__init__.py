"""Importable test helpers only: no tests here, and no fixtures pytest must discover
(those live in the conftest.py files).

- `pg`: run SQL as PostgREST would (as_user / as_anon / as_service), raises_sqlstate,
  snapshot, scalar, rows, one, fails, race.
- `personas`: Person, make_user, make_team, ban, the Cast every database suite uses.
- `secrets`: every secret the tests configure (JWT, Stripe, OpenAI) and access_token().
- `server`: the real local server in a thread, and env() for settings.
- `credits`: reading the ledger as superuser, moving credits, the ledger invariant.
- `metering`: API keys and the chat RPCs (create_key, begin, finish, prices).
- `rls`: the row level security matrix of the money tables (credits and keys run it).
- `stripe`: payloads from lib/local/stripe_payloads (lib.local.fake_stripe), signed or applied.
- `chat`: the chat stack (server + fake OpenAI) the chat tests drive over HTTP.
- `usage`: usage events written as superuser, the raw truth and usage_daily keyed alike, rollup().
"""
