# Vercel entry point: /v1/responses
from functions.responses import app  # noqa: F401
