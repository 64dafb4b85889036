"""Persistence behind one interface (`Store`); SQLite is the embedded default.

etcd, the distributed one, is `vnet.store.etcd.EtcdStore` (imported on use).
"""

from .base import Compacted, Event, Op, StaleRevision, Store, StoreError
from .sqlite import SqliteStore, default_path

__all__ = [
    "Compacted",
    "Event",
    "Op",
    "SqliteStore",
    "StaleRevision",
    "Store",
    "StoreError",
    "default_path",
]
