"""The relay as a daemon job: every enabled `[relay]` section runs, each on a thread of its own.

The relay loop is blocking librdkafka work, so each relay gets a plain thread (not the event
loop's executor, which other jobs share); the job bridges its end back to the event loop. A relay
that gives up (max retries) or refuses to start stops the daemon with exit code 1, with its
reason logged and kept in `failures` for the `kafkaops relay` command to print.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from kafkaops.config import Config
from kafkaops.relay.filters import FilterLoadError
from kafkaops.relay.metrics import RelayCollector
from kafkaops.relay.pipeline import STOP_DRAIN_SECONDS, Relay, RelayError, RelayRefused
from kafkaops.server.runtime import Health, Runtime

log = logging.getLogger("kafkaops.relay")


class RelayJob:
    """Runs when the config has an enabled `[relay]` section."""

    name = "relay"

    def __init__(self, *, exit_when_done: bool = False) -> None:
        self.exit_when_done = exit_when_done
        """Stop the daemon once every relay finished (stop-at-end): `kafkaops relay` alone."""
        self.relays: list[Relay] = []
        self.failures: dict[str, RelayError] = {}
        self._done: dict[str, asyncio.Future[None]] = {}

    def wanted(self, config: Config) -> bool:
        return any(r.enabled for r in config.relay)

    async def start(self, runtime: Runtime) -> None:
        try:
            self.relays = [
                Relay(cfg, runtime.clients) for cfg in runtime.config.relay if cfg.enabled
            ]
        except FilterLoadError as exc:
            self._fail(runtime, "relay", RelayRefused(str(exc)))
            return
        runtime.registry.register(RelayCollector([r.stats for r in self.relays]))
        for relay in self.relays:
            name = relay.cfg.name
            runtime.add_health(f"relay:{name}", lambda relay=relay: relay_health(relay))
            runtime.spawn(f"relay:{name}", lambda relay=relay: self._run(runtime, relay))
            log.info(
                "relay starting",
                extra={
                    "relay": name,
                    "mode": relay.cfg.mode,
                    "delivery": relay.cfg.delivery,
                    "sources": ",".join(relay.cfg.sources),
                    "target": relay.cfg.target,
                    "topics": ",".join(r.spec() for r in relay.topic_map.routes),
                },
            )
        runtime.on_stop(self._stop_all)

    async def _run(self, runtime: Runtime, relay: Relay) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._done[relay.cfg.name] = done

        def settle(exc: BaseException | None) -> None:
            if done.done():
                return
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)

        def work() -> None:
            outcome: BaseException | None = None
            try:
                relay.run()
            except BaseException as exc:
                outcome = exc
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(settle, outcome)

        threading.Thread(target=work, name=f"relay-{relay.cfg.name}", daemon=True).start()
        try:
            await asyncio.shield(done)
        except RelayError as exc:
            self._fail(runtime, relay.cfg.name, exc)
            return
        if self.exit_when_done and all(r.state == "finished" for r in self.relays):
            log.info("every relay finished; stopping")
            runtime.stopping.set()

    def _fail(self, runtime: Runtime, name: str, exc: RelayError) -> None:
        self.failures[name] = exc
        log.error("relay stopped", extra={"relay": name, "error": str(exc)})
        runtime.failure = exc
        runtime.stopping.set()

    async def _stop_all(self) -> None:
        for relay in self.relays:
            relay.stop()
        pending = [f for f in self._done.values() if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=STOP_DRAIN_SECONDS + 10)

    @property
    def exit_code(self) -> int:
        """For `kafkaops relay`: 2 when a relay refused to start, 1 when one gave up."""
        return max((exc.exit_code for exc in self.failures.values()), default=0)


def relay_health(relay: Relay) -> Health:
    """Healthy while relaying (or finished); lists failing sources and a stalled target."""
    detail = relay.health()
    bad = [
        name
        for name, status in detail["sources"].items()
        if status not in ("ok", "not checked yet")
    ]
    if not detail["target_ok"]:
        bad.append(detail["target"])
    healthy = detail["state"] in ("running", "finished") and detail["target_ok"]
    return Health(healthy, tuple(dict.fromkeys(bad)), {"relay": detail})
