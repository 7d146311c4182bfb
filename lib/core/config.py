"""Settings, read once from the environment.

A setting that a route needs but nobody configured is reported by `Settings.require`
as `MissingSetting` (HTTP 503 naming it): it never crashes the server or other routes.
"""
from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, Field

from lib.core.errors import MissingSetting

DEFAULT_DATA_DIR = ".tollbooth/pgdata"


class Settings(BaseModel):
    database_url: str | None = None
    supabase_url: str | None = None
    supabase_service_role_key: str | None = None
    supabase_jwt_secret: str | None = None
    supabase_jwks_url: str | None = None
    openai_api_key: str | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    upstream_timeout_seconds: float = 600.0
    upstream_connect_timeout_seconds: float = 10.0
    # after a client disconnects mid-stream, how long to keep reading upstream for its usage
    disconnect_drain_seconds: float = 30.0
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    daily_api_key: str | None = None
    daily_webhook_secret: str | None = None
    daily_api_url: str = "https://api.daily.co/v1"
    cron_secret: str | None = None
    rooms_encryption_keys: str | None = None
    # the prefix API keys are minted with; the database owns it (private.app_settings),
    # `tollbooth migrate` writes this there when it is set
    api_key_prefix: str | None = None
    db_transport: str | None = Field(default=None, description="'psycopg' or 'postgrest'; default from what is set")
    db_pool_size: int = 8
    # per pooled connection: no call holds a connection longer (0 = none)
    db_statement_timeout_ms: int = 15000
    # request bodies larger than this are refused (413) before they are read
    max_body_bytes: int = 4 * 1024 * 1024
    # the chat proxy's reservations are leases this long, renewed while the request lives
    reservation_lease_seconds: int = 60
    # settlement: how long to retry in the request before handing it to the outbox,
    # and where the outbox lives (one fsynced file per unsettled request)
    settle_inline_seconds: float = 2.0
    metering_outbox_dir: str = ".tollbooth/outbox"
    # the async proxy's settlement journal (lib.chat.journal): settlements are journaled
    # and made durable together every this many ms; 0 = a WAL flush per settlement
    # (the default on Vercel, whose instances keep no files)
    metering_journal_ms: int = 50
    log_level: str = "INFO"
    # API keys (issue 12): peers in these CIDRs (comma-separated) are proxies whose
    # X-Forwarded-For names the client; Unkey-managed keys when both Unkey settings are set
    trusted_proxy_cidrs: str | None = None
    unkey_root_key: str | None = None
    unkey_api_id: str | None = None
    unkey_api_url: str = "https://api.unkey.com"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        values = {name: env[name.upper()] for name in cls.model_fields if env.get(name.upper())}
        if env.get("VERCEL") and "metering_journal_ms" not in values:
            values["metering_journal_ms"] = "0"
        return cls.model_validate(values)

    def require(self, name: str) -> str:
        """The value of a setting a route cannot work without, or MissingSetting (503)."""
        value = getattr(self, name)
        if value is None or value == "":
            raise MissingSetting(name.upper())
        return str(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
