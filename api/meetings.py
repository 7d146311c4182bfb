# Vercel entry point: /api/meetings, /api/meetings/:meeting_id/cancel
from functions.meetings import app  # noqa: F401
