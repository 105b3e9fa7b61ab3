"""The client's calls by concern, written once in ``_async/``; ``_sync/`` is generated."""
