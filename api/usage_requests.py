# Vercel entry point: /api/usage/requests
from functions.usage_requests import app  # noqa: F401
