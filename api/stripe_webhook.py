# Vercel entry point: /api/stripe/webhook
from functions.stripe_webhook import app  # noqa: F401
