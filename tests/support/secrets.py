"""Every secret the test suite configures, in one place. None of them is real."""
from __future__ import annotations

from typing import Any

from lib.core.auth import mint_access_token

# SUPABASE_JWT_SECRET of every server, CLI and verifier the tests run (at least 32 characters)
JWT_SECRET = "tollbooth-test-jwt-secret-with-at-least-32-characters"
WRONG_JWT_SECRET = "not-the-secret-not-the-secret-not-the-secret"

# Stripe
STRIPE_WEBHOOK_SECRET = "whsec_tollbooth_test_3b1f4c9e0a7d"
WRONG_STRIPE_WEBHOOK_SECRET = "whsec_not_ours"
STRIPE_SECRET_KEY = "sk_test_tollbooth"
REVOKED_STRIPE_SECRET_KEY = "sk_test_revoked"

# the fake OpenAI upstream (lib.local.fake_openai) takes any key; these are the ones sent
OPENAI_API_KEY = "sk-test-upstream"
SDK_API_KEY = "sk-test"


def access_token(person: Any, secret: str = JWT_SECRET) -> str:
    """A Supabase access token for a Person, signed with the tests' JWT secret."""
    return mint_access_token(person.id, person.email, secret)


def bearer(person: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token(person)}"}

# Daily (the webhook secret is base64, as Daily's `hmac` is)
DAILY_WEBHOOK_SECRET = "dG9sbGJvb3RoLXRlc3QtZGFpbHktd2ViaG9vay1zZWNyZXQ="
WRONG_DAILY_WEBHOOK_SECRET = "bm90LXRoZS1kYWlseS1zZWNyZXQ="
DAILY_API_KEY = "daily-test-key"
# ROOMS_ENCRYPTION_KEYS entries (32-byte AES keys)
ROOMS_KEY_A = "ka:" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
ROOMS_KEY_B = "kb:" + "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="
