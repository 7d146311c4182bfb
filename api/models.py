# Vercel entry point: /v1/models
from functions.models import app  # noqa: F401
