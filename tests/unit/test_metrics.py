"""The metrics listener's answers to requests it does not serve, and its address option."""

from __future__ import annotations

import pytest

from sentral.metrics import CallTally, parse_metrics_address


def test_metrics_address_takes_host_and_port() -> None:
    assert parse_metrics_address("127.0.0.1:9060") == ("127.0.0.1", 9060)
    assert parse_metrics_address("[::1]:9060") == ("::1", 9060)
    for bad in ("9060", "127.0.0.1", "127.0.0.1:port", "127.0.0.1:70000", ":9060"):
        with pytest.raises(ValueError, match="give HOST:PORT"):
            parse_metrics_address(bad)


def test_the_tally_counts_calls_by_status_and_answer_delay() -> None:
    tally = CallTally()
    tally.count(200, 10.0, 12.5)
    tally.count(200, 20.0, 20.5)
    tally.count(486, 30.0, None)
    tally.count(None, 40.0, None)
    assert tally.ended == {"200": 2, "486": 1, "none": 1}
    assert tally.total == 4 and tally.answered == 2 and tally.answer_delay == pytest.approx(3.0)


def test_requests_other_than_a_get_of_the_two_pages_get_http_errors() -> None:
    from typing import Any, cast

    from sentral.metrics import MetricsService, Server

    service = MetricsService(cast(Server, cast(Any, object())), "127.0.0.1", 0)
    assert service.respond(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 404
    assert service.respond(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 405
    assert service.respond(b"GARBAGE\r\n\r\n")[0] == 400
    assert service.respond(b"GET /metrics SIP/2.0\r\n\r\n")[0] == 400
    assert service.respond(b"GET /health HTTP/1.1\r\n" + b"X: y\r\n" * 2000 + b"\r\n")[0] == 400
