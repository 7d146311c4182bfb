"""Scheduled jobs over metering data and the usage page: `queries` (the usage page's
query parameters, cursors and CSV), `jobs` (rollup and the lifecycle steps, each with
counts), `meters` (Stripe Billing Meters reporting over plain HTTP)."""
