"""The metered, OpenAI-compatible chat proxy: who is calling and what to reserve
(`metering`), forwarding and relaying (`proxy`, `sse`), the upstream client
(`upstream`) and token bounds without a tokenizer (`token_bounds`)."""
