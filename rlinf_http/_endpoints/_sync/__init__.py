"""The sync endpoint classes: GENERATED from ``../_async`` by ``scripts/unasync.py``."""
