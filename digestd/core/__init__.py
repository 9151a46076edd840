"""Base: tables, statuses, settings, engine, context. Imports nothing else of ours."""
