"""`kafkaops run`: one process, one HTTP server, every job the config asks for."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Sequence

from aiohttp import web

from kafkaops.config import Config
from kafkaops.server.http import core_routes
from kafkaops.server.runtime import Job, Runtime

log = logging.getLogger("kafkaops.server")


class BindError(RuntimeError):
    """The configured bind-address cannot be listened on (in use, no permission)."""


async def serve(config: Config, jobs: Sequence[Job], ready: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or a job's task dies); returns the process exit code."""
    runtime = Runtime(config)
    runtime.add_routes(core_routes(runtime))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.stopping.set)
    runner = web.AppRunner(runtime.app, handle_signals=False, access_log=None)
    try:
        started = [job for job in jobs if job.wanted(config)]
        for job in started:
            await job.start(runtime)
        runtime.route_fallbacks()
        await runner.setup()
        site = web.TCPSite(runner, config.http.host, config.http.port)
        try:
            await site.start()
        except OSError as exc:
            raise BindError(
                f"http.bind-address {config.http.bind_address}: {exc.strerror}"
            ) from None
        log.info(
            "kafkaops running",
            extra={"http": config.http.bind_address, "jobs": ",".join(j.name for j in started)},
        )
        # What start-up built lives as long as the process: spare the collector walking it
        # again in every full collection (they run every few seconds at high event rates).
        # Collect first, so that start-up's garbage is not kept for good.
        gc.collect()
        gc.freeze()
        if ready is not None:
            ready.set()
        await runtime.stopping.wait()
        log.info("stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runtime.shutdown()
        await runner.cleanup()
    return 1 if runtime.failure else 0
