"""Alembic environment: runs on the connection service.db.Database.migrate() hands over (in its transaction,
holding the migration lock), or on `-x url=...` from the alembic command line."""

from alembic import context
from sqlalchemy import create_engine

from service.db.engine import VERSION_TABLE
from service.db.golden import GoldenCase  # noqa: F401  (its tables join Base.metadata)
from service.db.models import Base
from service.db.querylog import QueryRecord  # noqa: F401  (its tables join Base.metadata)


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True)["url"]
    with create_engine(url).begin() as conn:
        run(conn)
