"""Integrations with the systems that run on reflexio_store (each behind its own extra)."""
