# Vercel entry point: /api/stripe/sync
from functions.stripe_sync import app  # noqa: F401
