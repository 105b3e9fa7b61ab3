"""The sync endpoint classes, generated from ``../_async`` by ``scripts/unasync.py``."""
