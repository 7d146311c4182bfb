# Vercel entry point: /v1/embeddings
from functions.embeddings import app  # noqa: F401
