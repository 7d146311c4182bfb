# Vercel entry point: /api/cron/usage-rollup
from functions.usage_rollup import app  # noqa: F401
