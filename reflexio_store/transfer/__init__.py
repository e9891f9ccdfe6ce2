"""Moving data in: copying between reflexio_store databases, importing Reflexio's own SQLite."""
