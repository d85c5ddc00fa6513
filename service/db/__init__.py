"""The service's own database: one SQLAlchemy engine and session factory for everything the service keeps
(jobs and audits now, a query log later). A SQLite file in the data dir by default; PostgreSQL by URL when
replicas share it. The schema is Alembic's (service/db/migrations), brought to head at start-up."""

from service.db.engine import Database, database_url
from service.db.models import Base, Job

__all__ = ["Base", "Database", "Job", "database_url"]
