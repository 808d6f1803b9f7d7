"""Alembic environment: run on the connection pgkb hands over, or on pgkb's configured database."""

from alembic import context
from sqlalchemy import create_engine

connection = context.config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
else:  # the `alembic` command line
    from pgkb.settings import Settings
    from store.database import resolve_url

    engine = create_engine(resolve_url(Settings.from_env()))
    with engine.connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
