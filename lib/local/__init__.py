"""What runs Tollbooth without Supabase: the embedded Postgres, the migrations runner,
the fake OpenAI upstream and the dev stack. Never imported by `functions/`."""
