# Vercel entry point: /api/daily/webhook
from functions.daily_webhook import app  # noqa: F401
