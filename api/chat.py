# Vercel entry point (ASGI): /v1/chat/completions and /api/chat
from functions.chat import app  # noqa: F401
