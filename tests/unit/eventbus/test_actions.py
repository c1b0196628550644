"""Trigger actions: command, log and HTTP, retries, rate limits and the dead-letter trigger."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kafkaops.eventbus.actions import ActionRunner, Interrupted
from kafkaops.eventbus.cloudevents import CloudEvent
from kafkaops.eventbus.spec import load_definitions


def sensor(triggers: str):
    text = f"""\
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {{name: s}}
spec:
  dependencies: [{{name: a, eventSourceName: src, eventName: a}}]
  triggers:
{triggers}"""
    return load_definitions(text, "s.yaml").definitions[0]


EVENTS = {"a": CloudEvent("a1", "src", "t", subject="a", data={"n": 7, "who": "ada"})}


@pytest.fixture
def server() -> Iterator[dict[str, Any]]:
    seen: dict[str, Any] = {"requests": [], "status": [500, 500, 200]}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen["requests"].append((self.path, dict(self.headers), body))
            status = seen["status"].pop(0) if seen["status"] else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    seen["url"] = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield seen
    httpd.shutdown()
    httpd.server_close()


def runner(stop: threading.Event | None = None) -> ActionRunner:
    return ActionRunner(None, stop=stop or threading.Event(), rand=lambda: 0.0)  # type: ignore[arg-type]


def test_http_retries_until_success_with_the_payload(server) -> None:
    s = sensor(
        f"""    - template:
        name: call
        http:
          url: {server["url"]}/hook
          headers: {{X-Team: ops}}
          payload: [{{src: {{dependencyName: a, dataKey: who}}, dest: user}}]
      retryStrategy: {{steps: 3, duration: 1ms}}
"""
    )
    r = runner()
    try:
        outcome = r.run(s.spec.triggers[0], EVENTS)
    finally:
        r.close()
    assert (outcome.ok, outcome.attempts) == (True, 3)
    path, headers, body = server["requests"][-1]
    assert (path, headers["X-Team"], headers["Content-Type"], body) == (
        "/hook",
        "ops",
        "application/json",
        b'{"user":"ada"}',
    )


def test_failure_after_retries_runs_the_dead_letter_trigger(server) -> None:
    s = sensor(
        f"""    - template: {{name: call, http: {{url: "{server["url"]}/x"}}}}
      retryStrategy: {{steps: 2}}
      dlqTrigger:
        template: {{name: dead, http: {{url: "{server["url"]}/dead"}}}}
"""
    )
    server["status"] = [500, 500, 200]
    r = runner()
    outcome = r.run(s.spec.triggers[0], EVENTS)
    r.close()
    assert (outcome.ok, outcome.dead_lettered) == (False, True)
    assert [p for p, _h, _b in server["requests"]] == ["/x", "/x", "/dead"]
    assert "status 500" in outcome.error


def test_command_exit_status_decides_and_payload_is_stdin(tmp_path) -> None:
    out = tmp_path / "out.txt"
    script = f"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read()); sys.exit(0)"
    s = sensor(
        f"""    - template:
        name: ok
        command:
          path: {sys.executable}
          args: ["-c", "{script}"]
          payload: [{{src: {{dependencyName: a, dataKey: n}}, dest: n}}]
    - template:
        name: bad
        command: {{path: {sys.executable}, args: ["-c", "import sys; sys.exit(3)"]}}
"""
    )
    r = runner()
    good, bad = r.run_many([(s.spec.triggers[0], EVENTS), (s.spec.triggers[1], EVENTS)])
    assert good.ok and out.read_bytes() == b'{"n":"7"}'
    assert not bad.ok and "exited with 3" in bad.error


def test_log_trigger_logs_the_events(caplog) -> None:
    s = sensor("    - template: {name: say, log: {}}\n")
    with caplog.at_level("INFO", logger="kafkaops.eventbus.actions"):
        assert runner().run(s.spec.triggers[0], EVENTS).ok
    [record] = [r for r in caplog.records if r.getMessage() == "trigger fired"]
    assert record.trigger == "say" and '"id": "a1"' in record.events


def test_a_render_error_fails_at_once_without_retrying() -> None:
    s = sensor(
        """    - template:
        name: t
        http:
          url: http://127.0.0.1:9/
          payload: [{src: {dependencyName: a, dataKey: missing.key}, dest: x}]
      retryStrategy: {steps: 5, duration: 1h}
"""
    )
    outcome = runner().run(s.spec.triggers[0], EVENTS)
    assert (outcome.ok, outcome.attempts) == (False, 0)
    assert "missing.key" in outcome.error


def test_stopping_interrupts_a_retry_wait() -> None:
    s = sensor(
        """    - template: {name: t, http: {url: "http://127.0.0.1:9/"}}
      retryStrategy: {steps: 3, duration: 1h}
"""
    )
    stop = threading.Event()
    stop.set()
    with pytest.raises(Interrupted):
        runner(stop).run(s.spec.triggers[0], EVENTS)
