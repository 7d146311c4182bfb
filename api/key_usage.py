# Vercel entry point: /v1/usage
from functions.key_usage import app  # noqa: F401
