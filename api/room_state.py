# Vercel entry point: /api/rooms/:meeting_id/state
from functions.room_state import app  # noqa: F401
