"""The metered, OpenAI-compatible chat proxy: who is calling and what to reserve
(`metering`), forwarding and relaying (`proxy`, `sse`), the upstream clients
(`upstream`, and `http1` for chat) and token bounds without a tokenizer (`token_bounds`)."""
