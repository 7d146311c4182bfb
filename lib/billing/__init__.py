"""Stripe: the API client (`api`), payloads as typed objects (`objects`), webhook
signatures (`signature`), events and their application (`events`), Checkout / Billing
Portal / refresh for signed-in users (`checkout`) and the backfill (`backfill`)."""
