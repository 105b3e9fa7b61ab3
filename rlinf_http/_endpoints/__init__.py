"""The client's calls, one small class per concern, over one :class:`~rlinf_http._driver.Driver`.

``_async/`` is written by hand; ``_sync/`` is GENERATED from it by
``scripts/unasync.py`` (CI runs ``--check``). Each class holds nothing but the
driver (``self._driver``); :class:`~rlinf_http.InferenceHTTPClient` inherits
them all.
"""
