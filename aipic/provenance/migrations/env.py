"""Alembic environment for aipic's provenance registry. aipic runs migrations itself (aipic.provenance.registry), passing
an open connection; ``alembic`` on the command line works too with ``-x url=…``."""

from alembic import context
from sqlalchemy import create_engine

connection = context.config.attributes.get("connection")
if connection is None:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL for the migration")
    with create_engine(url).begin() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
