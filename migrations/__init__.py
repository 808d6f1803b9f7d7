"""Alembic migrations for pgkb's schema (shipped as a package so installed copies find them)."""
