"""The server's log events: each kind's NDJSON object, keys in order (serve-signal --json
is a published interface, docs/SIGNALING.md "Running it"), and the log's flood bound."""

from __future__ import annotations

import pytest

from p2pcli.signaling.log import (
    ClusterNotice,
    IceServers,
    LibraryError,
    Listening,
    LogBudget,
    Stopped,
    Stopping,
)


@pytest.mark.parametrize(("event", "expected"), [
    (Listening(url="http://127.0.0.1:8080", host="0.0.0.0", port=8080),
     {"event": "listening", "url": "http://127.0.0.1:8080", "host": "0.0.0.0", "port": 8080}),
    (Listening(url="http://[::1]:1", host="::", port=1, node="ab12"),
     {"event": "listening", "url": "http://[::1]:1", "host": "::", "port": 1, "node": "ab12"}),
    (Stopping(stats={"peers": 2, "relayed": 9, "uptime": 1.5}),
     {"event": "stopping", "stats": {"peers": 2, "relayed": 9, "uptime": 1.5}}),
    (Stopped(), {"event": "stopped"}),
    (LibraryError(source="p2pcli.signaling.engineio", message="Invalid session x"),
     {"event": "library-error", "source": "p2pcli.signaling.engineio",
      "message": "Invalid session x"}),
    (ClusterNotice(message="Redis is reachable again"),
     {"event": "cluster", "message": "Redis is reachable again"}),
    (IceServers(servers=["stun:s:3478", "turn:t:3478"], ttl=86400,
                turn_credentials="issued", open_relay=False),
     {"event": "ice-servers", "servers": ["stun:s:3478", "turn:t:3478"], "ttl": 86400,
      "turn_credentials": "issued", "open_relay": False}),
])
def test_each_event_is_the_object_it_always_was(event, expected):
    assert list(event.to_json().items()) == list(expected.items())


def test_the_log_takes_a_few_events_a_minute_from_the_first_of_each_window():
    budget = LogBudget(per_minute=3)
    assert [budget.allow(t) for t in (100.0, 101, 102, 103, 159)] == [True] * 3 + [False] * 2
    # A new window starts with the first event more than a minute after the last one did.
    assert budget.allow(160.5) and budget.allow(161)
