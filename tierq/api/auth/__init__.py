"""Access control at the edge: credentials (API keys, JWT) become a ``Principal``; the route
table says which permission each route needs; rate limits, the brute-force guard and the audit
log sit beside them. The engine never sees a credential."""
