"""The web service of a running server, driven by a real HTTP client (aiohttp's) the way the
switchboard page and a clinic platform use it: sign-in, sessions and CSRF, API tokens, clinic
scoping, the REST API against what pjsua2 phones and the CLI did, and the error answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.system.peers import LOOPBACK, Softphone, free_port, wait_until
from tests.system.server import SentralServer, tcp_accepts
from tests.system.test_calls import DOMAIN, dial, phone_for

OTHER = "other.test"


class Web:
    """A running server with --web on loopback, two clinics and a token for each."""

    def __init__(self, server: SentralServer, url: str, tokens: dict[str, str]) -> None:
        self.server = server
        self.url = url
        self.tokens = tokens

    def request(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> tuple[int, dict[str, str], Any]:
        """One request; status, headers and the JSON body."""
        return asyncio.run(self._request(method, path, token=token, **kwargs))

    async def _request(self, method: str, path: str, *, token: str | None, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, headers=headers, **kwargs) as response,
        ):
            return response.status, dict(response.headers), json.loads(await response.read())

    def get(self, path: str, clinic: str = DOMAIN) -> Any:
        status, _, body = self.request("GET", path, token=self.tokens[clinic])
        assert status == 200, body
        return body


def start_web(tmp_path: Path, *extra: str) -> Web:
    workdir = tmp_path / "server"
    workdir.mkdir(exist_ok=True)
    address = f"{LOOPBACK}:{free_port()}"
    server = SentralServer(
        f"sqlite:///{workdir / 'sentral.db'}", workdir, extra_args=("--web", address, "--direct-media", *extra)
    )
    server.cli_batch(
        ("init", "--domain", DOMAIN),
        ("clinic", "add", OTHER),
        *(("user", "add", ext, "--domain", DOMAIN, "--name", f"Staff {ext}", "--password", f"secret-{ext}")
          for ext in ("1001", "1002")),
        ("user", "add", "2001", "--domain", OTHER, "--name", "Elsewhere", "--password", "secret-2001"),
        ("group", "add", "desk", "--domain", DOMAIN, "--number", "600", "--member", "1001", "--member", "1002"),
    )  # fmt: skip
    tokens = {
        clinic: server.cli("token", "add", "platform", "--clinic", clinic).stdout.strip() for clinic in (DOMAIN, OTHER)
    }
    server.start()
    # SIP answers first: the web listener starts once the SIP listeners are bound.
    host, port = address.split(":")
    wait_until(lambda: tcp_accepts(host, int(port)), 10, "the web listener")
    return Web(server, f"http://{address}", tokens)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    started = start_web(tmp_path_factory.mktemp("web"))
    try:
        yield started
    finally:
        started.server.stop()


def test_staff_sign_in_gives_an_http_only_strict_cookie_and_unsafe_requests_need_the_csrf_token(web: Web) -> None:
    async def flow() -> None:
        # unsafe: the jar keeps cookies of an IP address (the server is on 127.0.0.1).
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.post(
                web.url + "/api/session", json={"extension": "1001", "domain": DOMAIN, "password": "secret-1001"}
            ) as response:
                assert response.status == 200
                signed = await response.json()
                cookie = response.headers["Set-Cookie"]
            assert signed["extension"] == "1001" and signed["domain"] == DOMAIN and signed["csrf_token"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            async with session.get(web.url + "/api/presence") as response:
                assert response.status == 200
                assert [p["extension"] for p in (await response.json())["staff"]] == ["1001", "1002"]
            # The cookie alone does not change anything: a form on another site could send it.
            async with session.post(web.url + "/api/staff/1001/phone", json={"on": False}) as response:
                assert response.status == 403
                assert "X-CSRF-Token" in (await response.json())["error"]
            csrf = {"X-CSRF-Token": signed["csrf_token"]}
            async with session.post(web.url + "/api/staff/1001/phone", json={"on": False}, headers=csrf) as response:
                assert response.status == 200, await response.text()
                assert (await response.json())["changed"] is True
            # A member of staff changes their own phone only.
            async with session.post(web.url + "/api/staff/1002/phone", json={"on": False}, headers=csrf) as response:
                assert response.status == 403
            async with session.post(web.url + "/api/staff/1001/phone", json={"on": True}, headers=csrf) as response:
                assert response.status == 200
            async with session.delete(web.url + "/api/session", headers=csrf) as response:
                assert response.status == 200
            async with session.get(web.url + "/api/presence") as response:
                assert response.status == 401

    asyncio.run(flow())
    shown = web.server.cli_json("presence", "--domain", DOMAIN)
    assert {p["extension"]: p["phone_on"] for p in shown} == {"1001": True, "1002": True}


def test_a_wrong_password_is_401_and_logged_for_fail2ban_without_the_password(web: Web) -> None:
    status, _, body = web.request(
        "POST", "/api/session", json={"extension": "1002", "domain": DOMAIN, "password": "guess-me-123"}
    )
    assert status == 401 and body == {"error": "wrong extension or password"}

    def logged() -> bool:
        return "auth_failed" in web.server.log_tail(200) and "method=sign-in" in web.server.log_tail(200)

    wait_until(logged, 5, "auth_failed for the web sign-in")
    line = next(line for line in web.server.log_tail(200).splitlines() if "method=sign-in" in line)
    assert "remote=127.0.0.1" in line and "user=1002" in line
    assert "guess-me-123" not in web.server.log_tail(400)


def test_tokens_see_their_own_clinic_only(web: Web) -> None:
    mine = web.get("/api/presence")["staff"]
    theirs = web.get("/api/presence", OTHER)["staff"]
    assert [p["extension"] for p in mine] == ["1001", "1002"]
    assert [p["extension"] for p in theirs] == ["2001"]
    assert [g["name"] for g in web.get("/api/groups", OTHER)["groups"]] == []
    status, _, _ = web.request("POST", "/api/staff/1001/phone", token=web.tokens[OTHER], json={"on": False})
    assert status == 404
    status, headers, body = web.request("GET", "/api/calls", token="sntl_not-a-token")
    assert status == 401 and "not known" in body["error"]
    status, headers, body = web.request("GET", "/api/calls")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert web.server.cli("token", "list", "--json").stdout.count("platform") == 2


def test_group_login_and_logout_do_what_the_feature_code_does(web: Web) -> None:
    token = web.tokens[DOMAIN]
    status, _, body = web.request("POST", "/api/staff/1002/groups/600", token=token, json={"logged_in": False})
    assert status == 200 and body["changed"] is True and body["group"] == "desk"
    shown = web.server.cli_json("group", "show", "desk", "--domain", DOMAIN)
    assert {m["extension"]: m["logged_in"] for m in shown["members"]} == {"1001": True, "1002": False}
    desk = next(g for g in web.get("/api/groups")["groups"] if g["name"] == "desk")
    assert desk["logged_in"] == ["1001"] and desk["number"] == "600"
    status, _, body = web.request("POST", "/api/staff/1002/groups/desk", token=token, json={"logged_in": True})
    assert status == 200 and body["changed"] is True
    assert web.get("/api/presence")["staff"][1]["groups"] == ["desk"]
    status, _, body = web.request("POST", "/api/staff/1002/groups/700", token=token, json={"logged_in": True})
    assert status == 404 and "700" in body["error"]
    status, _, body = web.request("POST", "/api/staff/1002/groups/600", token=token, json={"logged_in": "yes"})
    assert status == 400 and "logged_in" in body["error"]


def test_calls_presence_and_records_follow_a_pjsua2_call(
    web: Web, softphone_factory: Callable[..., Softphone]
) -> None:
    alice = phone_for(softphone_factory, web.server, "1001")
    bob = phone_for(softphone_factory, web.server, "1002")
    out = alice.call("1001", dial(web.server, "1002"))
    incoming = bob.wait_incoming("1002")
    bob.answer(incoming["call"])
    alice.wait_call_state(out, "CONFIRMED")
    calls = web.get("/api/calls")["calls"]
    assert len(calls) == 1
    call = calls[0]
    assert (call["caller"], call["callee"], call["state"]) == ("1001", "1002", "answered")
    assert call["answered_at"] >= call["started_at"] and call["legs"] == 2
    assert web.get("/api/calls", OTHER)["calls"] == []
    people = {p["extension"]: p for p in web.get("/api/presence")["staff"]}
    assert people["1001"]["line"] == people["1002"]["line"] == "busy"
    assert people["1001"]["registered"] is True
    alice.hangup(out)
    bob.wait_call_state(incoming["call"], "DISCONNECTED")

    def recorded() -> bool:
        return bool(web.get("/api/records")["records"])

    wait_until(recorded, 5, "the call's record")
    record = web.get("/api/records")["records"][0]
    cli = web.server.cli_json("cdr", "--json")[-1]
    assert record["call_id"] == cli["call_id"] == call["call_id"]
    assert record["disposition"] == "answered" and (record["caller"], record["callee"]) == ("1001", "1002")
    assert web.get("/api/records", OTHER)["records"] == []
    assert web.get("/api/calls")["calls"] == []


def test_queues_parked_and_trunks_answer_for_the_clinic(web: Web) -> None:
    queues = web.get("/api/queues")["queues"]
    assert queues == [{"group": "desk", "kind": "group", "number": "600", "waiting": []}]
    assert web.get("/api/parked") == {"parked": []}
    assert web.get("/api/trunks") == {"trunks": []}
    page = web.get("/api/records?limit=1")
    assert set(page) == {"records", "next_before"}
    status, _, body = web.request("GET", "/api/records?limit=lots", token=web.tokens[DOMAIN])
    assert status == 400 and "limit" in body["error"]


def test_bad_requests_get_a_sentence_and_the_right_status(web: Web) -> None:
    status, _, body = web.request("GET", "/api/nothing-here")
    assert status == 404 and "openapi" in body["error"]
    status, headers, body = web.request("PUT", "/api/calls", token=web.tokens[DOMAIN])
    assert status == 405 and "GET" in headers["Allow"] and "PUT" in body["error"]
    status, _, body = web.request("POST", "/api/session", data=b"{not json")
    assert status == 400 and "not valid JSON" in body["error"]
    status, _, body = web.request("POST", "/api/session", data=b"x" * 200_000)
    assert status == 413 and "too large" in body["error"]
    status, _, body = web.request("POST", "/api/session", json=["1001"])
    assert status == 400 and "JSON object" in body["error"]


def test_the_openapi_document_lists_every_route(web: Web) -> None:
    status, _, document = web.request("GET", "/api/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.")
    routes = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert routes == {
        ("/api/openapi.json", "get"),
        ("/api/session", "post"),
        ("/api/session", "get"),
        ("/api/session", "delete"),
        ("/api/calls", "get"),
        ("/api/presence", "get"),
        ("/api/groups", "get"),
        ("/api/queues", "get"),
        ("/api/parked", "get"),
        ("/api/records", "get"),
        ("/api/trunks", "get"),
        ("/api/staff/{ext}/groups/{group}", "post"),
        ("/api/staff/{ext}/phone", "post"),
        ("/api/staff/{ext}/call", "post"),
        ("/api/events", "get"),
        ("/api/browser-phone", "get"),
    }
    assert document["paths"]["/api/staff/{ext}/phone"]["post"]["parameters"][0]["name"] == "ext"


def test_failed_sign_ins_from_one_address_are_blocked(tmp_path: Path) -> None:
    web = start_web(tmp_path, "--trust", "none", "--auth-failures", "2")
    try:
        wrong = {"extension": "1001", "domain": DOMAIN, "password": "wrong-one"}
        statuses = [web.request("POST", "/api/session", json=wrong)[0] for _ in range(4)]
        assert statuses[:2] == [401, 401] and statuses[-1] == 429
        # Blocked means blocked: the right password does not get in either until the block ends.
        right = {"extension": "1001", "domain": DOMAIN, "password": "secret-1001"}
        assert web.request("POST", "/api/session", json=right)[0] == 429
        wait_until(lambda: "security_blocked" in web.server.log_tail(100), 5, "the block logged")
    finally:
        web.server.stop()


def test_serve_refuses_plain_http_off_loopback(tmp_path: Path) -> None:
    server = SentralServer(f"sqlite:///{tmp_path / 'sentral.db'}", tmp_path)
    server.cli("init", "--domain", DOMAIN)
    done = server.cli("serve", "--web", "0.0.0.0:8080", "--direct-media", check=False)
    assert done.returncode == 2
    assert "loopback" in done.stderr and "Traceback" not in done.stderr
