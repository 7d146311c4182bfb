"""The runtime every entry point shares: settings, errors and their HTTP mapping, logs,
the request/response helpers, the two database transports, token verification, the
local WSGI server and small crypto helpers. Imports nothing else from `lib`."""
