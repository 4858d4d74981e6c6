"""The meta-model database: models, engine and sessions, schema management."""
