"""Parts of the MCP server (``healthsim.mcp_server``) that stand on their own.

``budget``: every answer cut to its byte budget. ``folders``: where an assistant may
export to and import from. ``wire``: requests read from stdio strictly, and always answered.
"""
