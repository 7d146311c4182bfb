# Vercel entry point: /api/health
from functions.health import app  # noqa: F401
