"""Tollbooth shared library: config, database transports, auth, credits, pricing, HTTP runtime."""
