"""Parts of the MCP server (``healthsim.mcp_server``) that stand on their own.

``budget``: every answer cut to its byte budget. ``folders``: where an assistant may
export to and import from. ``wire``: requests read from stdio strictly, and always answered.
``listing``: list_scenarios kept while the file is unchanged. ``tools``: the tools, as
module-level functions over a context, with what the tool list says of each.
"""
