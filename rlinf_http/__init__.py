"""rlinf-http: a typed, fast, httpx-based client for SGLang routers and servers."""
