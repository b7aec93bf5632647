"""The decision, no HTTP: checker, per-region checker, visibility, index and its store,
refresher, caches."""
