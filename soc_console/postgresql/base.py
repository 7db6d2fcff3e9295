"""Django's PostgreSQL backend, with a health check for pooled connections that mostly costs
no query.

Django's pool check (CONN_HEALTH_CHECKS) sends an empty query every time the pool lends a
connection: one round trip added to every request and every task. A session that PostgreSQL
ended (a restart, pg_terminate_backend) has its socket readable while idle, because the
server's goodbye message and end-of-file wait on it; a healthy idle session has nothing to
read. So this backend polls the socket, which costs no round trip, and runs the real check
when something is there, or when the connection sat idle long enough for a firewall or a
failover to have dropped it without a word.
"""

from __future__ import annotations

import select
import time
import weakref
from typing import Any

from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool

# Lent again within this many seconds, a connection is trusted on the socket's word alone.
QUIET_DROP_AFTER_SECONDS = 30.0
_lent_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def hung_up_while_idle(connection: Any) -> bool:
    """Whether an idle connection is closed or broken."""
    if connection.closed:
        return True
    now = time.monotonic()
    recently = now - _lent_at.get(connection, 0.0) < QUIET_DROP_AFTER_SECONDS
    _lent_at[connection] = now
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if recently and not poller.poll(0):
        return False
    try:
        ConnectionPool.check_connection(connection)
    except Exception:
        return True
    return False


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        pool = self.pool
        if pool is None:
            return connection
        # Every connection in the pool may have been ended at once (a server restart): try
        # each before settling for a fresh one.
        for _ in range(pool.max_size):
            if not hung_up_while_idle(connection):
                break
            connection.close()
            pool.putconn(connection)  # the pool discards a closed connection and opens another
            connection = super().get_new_connection(conn_params)
        return connection
