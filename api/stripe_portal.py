# Vercel entry point: /api/stripe/portal
from functions.stripe_portal import app  # noqa: F401
