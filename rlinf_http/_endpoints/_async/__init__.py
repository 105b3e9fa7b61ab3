"""The async endpoint classes, written by hand (the sync ones are generated from these)."""
