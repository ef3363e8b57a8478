"""The Python client of tierq's HTTP API: ``Client`` (blocking) and ``AsyncClient``, typed
with the same structs the server encodes (``tierq.api.shapes``).

    from tierq.client import Client

    with Client("http://127.0.0.1:8080", api_key="tq_live_...") as tq:
        task_id = tq.submit("resize", {"w": 100}, queue="images", priority="HIGH")
        task = tq.wait(task_id, timeout=30)
"""

from tierq.client.aio import AsyncClient
from tierq.client.calls import Retry
from tierq.client.errors import ApiError, TierqError, TransportError, WaitTimeout
from tierq.client.sync import Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "Retry",
    "TierqError",
    "TransportError",
    "WaitTimeout",
]
