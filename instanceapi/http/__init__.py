"""Falcon only: app factory, resources, bulk, middleware, errors, and the rendering of verdicts."""
