"""A controller and its REST API on loopback, in a background event loop.

For tests and benchmarks that talk HTTP to a real server in the same
process: `with Served(controller) as s:` then `s.url`, and `s.call(coro)`
to run something on the controller's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvicorn

from ..api import create_app
from ..controller.service import Controller

__all__ = ["Served"]

T = TypeVar("T")


class Served:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        await self.ctl.start()
        cfg = uvicorn.Config(
            create_app(self.ctl), host="127.0.0.1", port=0, log_level="error", lifespan="off"
        )
        self._server = uvicorn.Server(cfg)
        task = asyncio.create_task(self._server.serve())
        while not self._server.started and not task.done():
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        self._ready.set()
        await task
        await self.ctl.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def __enter__(self) -> Served:
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("the API did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(10)
