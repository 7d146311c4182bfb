# Vercel entry point: /api/stripe/checkout
from functions.stripe_checkout import app  # noqa: F401
