"""The decision, no HTTP: per-host index store and, later, checker, refresher and visibility."""
