"""Open the store the settings point at: a Qdrant server by URL, else the embedded default."""

from __future__ import annotations

from core.settings import Settings
from core.store.base import DENSE, SPARSE, CollectionSpec, Hit, PointData, QuerySpec, Store


def open_store(settings: Settings) -> Store:
    """Return the configured store. Raises StoreLockedError when another process owns an embedded one."""
    if settings.qdrant_url:
        from core.store.client import QdrantClientStore

        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantClientStore(
            url=settings.qdrant_url,
            api_key=key,
            timeout_s=settings.qdrant_timeout_s,
            shards=settings.qdrant_shards,
            replication_factor=settings.qdrant_replication_factor,
        )
    if settings.store == "local":
        from core.store.client import QdrantClientStore

        return QdrantClientStore(path=settings.data_dir / "local")
    from core.store.edge import EdgeStore

    return EdgeStore(settings.data_dir / "edge")


__all__ = ["DENSE", "SPARSE", "CollectionSpec", "Hit", "PointData", "QuerySpec", "Store", "open_store"]
