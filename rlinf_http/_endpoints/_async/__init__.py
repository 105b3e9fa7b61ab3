"""The endpoint classes, written by hand (async); ``../_sync`` is generated from them."""
