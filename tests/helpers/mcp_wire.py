"""Raw MCP messages, for the tests that speak to a server without the SDK's client."""

from __future__ import annotations

import json

#: The first request a client sends (JSON text, without the line end stdio adds).
INITIALIZE = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
).encode()
