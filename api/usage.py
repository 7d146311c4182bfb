# Vercel entry point: /api/usage
from functions.usage import app  # noqa: F401
