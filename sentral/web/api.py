"""The REST API: what the running server knows, as JSON, scoped to the caller's clinic.

Theory of operation. The web service runs in the engine's own loop, so the live state (calls,
lines, queues, park slots, trunks) is read straight from the engine's memory: what the answer
says is what the engine holds at that moment, not what it last published to the database. The
directory snapshot gives staff, groups and functions. Call records are read from the CDR store in
a worker thread. Every answer holds the principal's clinic only.

Actions (log in or out of a group or function, phone on or off) do what the feature codes do,
through ``Server.change``: the store's change in a worker thread, then the new directory in force
at once. A signed-in member of staff acts for themselves; an API token acts for anyone in its
clinic.

Times are epoch seconds (UTC); ``waited`` and ``elapsed`` are seconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sentral.config.cdr import CallRecord, CdrStore
from sentral.config.db import StoreError
from sentral.config.directory import Directory, GroupEntry, GroupKind
from sentral.pbx.features.click import ClickRefused
from sentral.web.auth import Principal, principal_of
from sentral.web.service import SERVER_KEY, ApiError, documented, json_body

if TYPE_CHECKING:
    from sentral.app import Server
    from sentral.pbx.call import LiveCall
    from sentral.pbx.endpoint import Endpoint

RECORDS_LIMIT = 50
RECORDS_MAX = 500


def _server(request: web.Request) -> Server:
    return request.app[SERVER_KEY]


def _endpoint(request: web.Request) -> Endpoint:
    endpoint = _server(request).endpoint
    if endpoint is None:
        raise ApiError(503, "the server is still starting; try again in a moment")
    return endpoint


def _wall_offset() -> float:
    """Add to a monotonic time to get epoch seconds."""
    return time.time() - time.monotonic()


def _list(key: str, items: list[dict[str, Any]]) -> web.Response:
    return web.json_response({key: items})


def _array_of(key: str, item: dict[str, Any], description: str) -> dict[str, Any]:
    """An operation object answering ``{key: [item...]}``."""
    return {
        "summary": description,
        "responses": {
            "200": {
                "description": description,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                key: {"type": "array", "items": {"type": "object", "properties": item}}
                            },
                        }
                    }
                },
            },
            "401": {"description": "not signed in and no token"},
        },
    }


_S: dict[str, Any] = {"type": "string"}
_SN: dict[str, Any] = {"type": ["string", "null"]}
_N: dict[str, Any] = {"type": "number"}
_NN: dict[str, Any] = {"type": ["number", "null"]}
_B: dict[str, Any] = {"type": "boolean"}
_I: dict[str, Any] = {"type": "integer"}


# -- calls ---------------------------------------------------------------------------------------

_CALL = {
    "call_id": _S, "caller": _S, "callee": _S, "state": _S, "parked": _SN, "legs": _I,
    "started_at": _N, "answered_at": _NN, "elapsed": _N, "duration": _N,
    "caller_name": _SN, "caller_kind": _SN, "caller_reference": _SN, "caller_source": _SN,
}  # fmt: skip


def _call_json(call: LiveCall, offset: float, now: float) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "caller": call.caller,
        "callee": call.callee,
        "state": "parked" if call.parked else call.state,
        "parked": call.parked or None,
        "legs": call.legs,
        "started_at": round(call.started + offset, 3),
        "answered_at": round(call.answered + offset, 3) if call.answered is not None else None,
        "elapsed": round(max(0.0, now - call.started), 3),
        "duration": round(max(0.0, now - call.answered), 3) if call.answered is not None else 0.0,
        # Who the clinic's records say calls: the platform opens the record by its reference.
        "caller_name": call.caller_name or None,
        "caller_kind": call.caller_kind or None,
        "caller_reference": call.caller_reference or None,
        "caller_source": call.caller_source or None,
    }


def _live_calls(endpoint: Endpoint, domain: str) -> dict[str, LiveCall]:
    return {call.call_id: call for call in endpoint.calls.live() if call.clinic == domain}


@documented(_array_of("calls", _CALL, "Calls in progress: ringing, answered, held or parked"))
async def get_calls(request: web.Request) -> web.Response:
    """Calls in progress."""
    principal = principal_of(request)
    endpoint = _endpoint(request)
    now, offset = time.monotonic(), _wall_offset()
    calls = sorted(_live_calls(endpoint, principal.domain).values(), key=lambda call: call.started)
    return _list("calls", [_call_json(call, offset, now) for call in calls])


# -- presence ------------------------------------------------------------------------------------

_PERSON = {
    "extension": _S, "name": _S, "phone_on": _B, "registered": _B, "line": _S, "acute": _B,
    "groups": {"type": "array"}, "functions": {"type": "array"}, "forwarded_to": _SN,
}  # fmt: skip


def _logged_in(directory: Directory, domain: str, extension: str) -> list[GroupEntry]:
    return [
        group
        for group in directory.memberships(domain, extension)
        if any(member.extension == extension and member.logged_in for member in group.members)
    ]


@documented(_array_of("staff", _PERSON, "Every member of staff: phone on, registered, line, logged in to"))
async def get_presence(request: web.Request) -> web.Response:
    """Presence of every member of staff."""
    principal = principal_of(request)
    server, endpoint = _server(request), _endpoint(request)
    directory = server.directory()
    lines = {line.extension: line for line in endpoint.presence.lines() if line.domain == principal.domain}
    wall = time.time()
    people = []
    for (domain, extension), staff in directory.staff.items():
        if domain != principal.domain:
            continue
        line = lines.get(extension)
        logged_in = _logged_in(directory, domain, extension)
        people.append(
            {
                "extension": extension,
                "name": staff.name,
                "phone_on": staff.phone_on,
                "registered": bool(server.location.bindings((domain, extension), wall)),
                "line": line.state.value if line is not None else "idle",
                "acute": bool(line is not None and line.acute),
                "groups": [g.name for g in logged_in if g.kind is GroupKind.GROUP],
                "functions": [g.name for g in logged_in if g.kind is GroupKind.FUNCTION],
                "forwarded_to": staff.forwards.always,
            }
        )
    people.sort(key=lambda person: (len(str(person["extension"])), str(person["extension"])))
    return _list("staff", people)


# -- groups and functions ------------------------------------------------------------------------

_GROUP = {
    "name": _S, "kind": _S, "number": _SN, "acute_number": _SN, "strategy": _S,
    "members": {"type": "array"}, "logged_in": {"type": "array"},
}  # fmt: skip


def _groups(directory: Directory, domain: str) -> list[GroupEntry]:
    return sorted(
        (group for (group_domain, _), group in directory.groups.items() if group_domain == domain),
        key=lambda group: (group.kind.value, group.name),
    )


@documented(_array_of("groups", _GROUP, "Groups and functions, their members and who is logged in"))
async def get_groups(request: web.Request) -> web.Response:
    """Groups and functions with their members."""
    principal = principal_of(request)
    directory = _server(request).directory()
    out = []
    for group in _groups(directory, principal.domain):
        members = []
        for position, member in enumerate(group.members, start=1):
            staff = directory.staff_for(principal.domain, member.extension)
            members.append(
                {
                    "position": position,
                    "extension": member.extension,
                    "name": staff.name if staff is not None else None,
                    "logged_in": member.logged_in,
                    "via_role": member.via_role,
                }
            )
        out.append(
            {
                "name": group.name,
                "kind": group.kind.value,
                "number": group.number,
                "acute_number": group.acute_number,
                "strategy": group.strategy.value,
                "members": members,
                "logged_in": [member.extension for member in group.members if member.logged_in],
            }
        )
    return _list("groups", out)


# -- queues --------------------------------------------------------------------------------------

_QUEUE = {"group": _S, "kind": _S, "number": _SN, "waiting": {"type": "array"}}


@documented(
    _array_of("queues", _QUEUE, "Callers waiting per group and function, acute first, with seconds waited")
)
async def get_queues(request: web.Request) -> web.Response:
    """Waiting callers per group."""
    principal = principal_of(request)
    server, endpoint = _server(request), _endpoint(request)
    now = time.monotonic()
    live = _live_calls(endpoint, principal.domain)
    waiting = endpoint.hunting.queues()
    out = []
    for group in _groups(server.directory(), principal.domain):
        callers = []
        for position, entry in enumerate(waiting.get((principal.domain, group.name), []), start=1):
            call = live.get(entry.call_key)
            callers.append(
                {
                    "position": position,
                    "call_id": entry.call_key,
                    "caller": call.caller if call is not None else None,
                    "acute": entry.acute,
                    "waited": round(max(0.0, now - entry.joined), 3),
                }
            )
        out.append(
            {"group": group.name, "kind": group.kind.value, "number": group.number, "waiting": callers}
        )
    return _list("queues", out)


# -- park slots ----------------------------------------------------------------------------------

_PARKED = {"lot": _S, "number": _S, "slot": _S, "call_id": _S, "caller": _SN}


@documented(_array_of("parked", _PARKED, "Calls waiting on park slots, to be picked up by dialling the slot"))
async def get_parked(request: web.Request) -> web.Response:
    """Parked calls."""
    principal = principal_of(request)
    endpoint = _endpoint(request)
    live = _live_calls(endpoint, principal.domain)
    out = []
    for lot, slot, call_key in endpoint.calls.lots.occupied():
        if lot.domain != principal.domain:
            continue
        call = live.get(call_key)
        out.append(
            {
                "lot": lot.name,
                "number": lot.number,
                "slot": slot,
                "call_id": call_key,
                "caller": call.caller if call is not None else None,
            }
        )
    return _list("parked", out)


# -- trunks --------------------------------------------------------------------------------------

_TRUNK = {"name": _S, "state": _S, "last_status": {"type": ["integer", "null"]}, "detail": _SN, "calls": _I}


@documented(_array_of("trunks", _TRUNK, "Trunks to carriers and their state"))
async def get_trunks(request: web.Request) -> web.Response:
    """Trunk states."""
    principal = principal_of(request)
    endpoint = _endpoint(request)
    out = [
        {"name": s.name, "state": s.state, "last_status": s.last_status, "detail": s.detail, "calls": s.calls}
        for s in endpoint.trunks.states()
        if s.domain == principal.domain
    ]
    return _list("trunks", out)


# -- call records --------------------------------------------------------------------------------


def _record_json(record: CallRecord) -> dict[str, Any]:
    return {
        "call_id": record.call_id,
        "caller": record.caller,
        "caller_name": record.caller_name,
        "caller_kind": record.caller_kind,
        "caller_reference": record.caller_reference,
        "caller_source": record.caller_source,
        "callee": record.callee,
        "callee_extension": record.callee_extension,
        "started_at": record.started_at,
        "ringing_at": record.ringing_at,
        "answered_at": record.answered_at,
        "ended_at": record.ended_at,
        "duration": round(record.duration, 3),
        "disposition": record.disposition,
        "hangup_by": record.hangup_by,
        "hangup_reason": record.hangup_reason,
        "status_to_caller": record.status_to_caller,
        "forwarded": [{"from": ext, "kind": kind, "to": number} for ext, kind, number in record.forwards],
        "transfers": [
            {"at": t.at, "by": t.by, "kind": t.kind, "target": t.target, "outcome": t.outcome}
            for t in record.transfers
        ],
    }


def _number_parameter(request: web.Request, name: str, default: float | None) -> float | None:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        raise ApiError(400, f"?{name}= must be a number, not {text!r}") from None


@documented(
    {
        "summary": "Call records, newest first, a page at a time",
        "parameters": [
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": RECORDS_MAX},
            },
            {
                "name": "before",
                "in": "query",
                "schema": {"type": "number"},
                "description": "only calls that started before this epoch time: the previous page's next_before",
            },
        ],
        "responses": {
            "200": {"description": "{records: [...], next_before: number or null}"},
            "400": {"description": "limit or before is not a number"},
        },
    }
)
async def get_records(request: web.Request) -> web.Response:
    """Call records, newest first."""
    principal = principal_of(request)
    limit = _number_parameter(request, "limit", RECORDS_LIMIT)
    assert limit is not None
    if limit != int(limit) or not 1 <= limit <= RECORDS_MAX:
        raise ApiError(400, f"?limit= must be a whole number from 1 to {RECORDS_MAX}")
    before = _number_parameter(request, "before", None)
    store = CdrStore(_server(request).engine)
    records = await _off_loop(store.list, None, int(limit), domain=principal.domain, before=before)
    records.reverse()
    next_before = records[-1].started_at if len(records) == int(limit) else None
    return web.json_response({"records": [_record_json(r) for r in records], "next_before": next_before})


async def _off_loop(function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(function, *args, **kwargs)
    except StoreError as exc:
        raise ApiError(503, f"the database cannot be read now: {exc}") from None


# -- actions -------------------------------------------------------------------------------------


def _acting_for(principal: Principal, extension: str, directory: Directory) -> None:
    """A member of staff acts for themselves only; a token for anyone of its clinic."""
    if principal.extension is not None and principal.extension != extension:
        raise ApiError(403, f"you are signed in as {principal.extension}; you can change only your own")
    if directory.staff_for(principal.domain, extension) is None:
        raise ApiError(404, f"there is no extension {extension} in {principal.domain}")


def _group_of(directory: Directory, domain: str, key: str) -> GroupEntry:
    """The group or function of ``domain`` with the number or name ``key``."""
    for (group_domain, name), group in directory.groups.items():
        if group_domain == domain and key in (name, group.number):
            return group
    raise ApiError(404, f"there is no group or function {key} in {domain}")


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if not isinstance(value, bool):
        raise ApiError(400, f'give {{"{key}": true}} or {{"{key}": false}}')
    return value


@documented(
    {
        "summary": "Log a member of staff in to or out of a group or function (by its number or name)",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "required": ["logged_in"], "properties": {"logged_in": _B}}
                }
            },
        },
        "responses": {
            "200": {"description": "{extension, group, kind, logged_in, changed}"},
            "400": {"description": "not a member, or a malformed body"},
            "403": {"description": "a member of staff may change only their own"},
            "404": {"description": "no such extension or group"},
        },
    }
)
async def set_group_login(request: web.Request) -> web.Response:
    """Log in to or out of a group or function."""
    principal = principal_of(request)
    server = _server(request)
    extension, key = request.match_info["ext"], request.match_info["group"]
    directory = server.directory()
    _acting_for(principal, extension, directory)
    group = _group_of(directory, principal.domain, key)
    logged_in = _flag(await json_body(request), "logged_in")
    if not any(member.extension == extension for member in group.members):
        raise ApiError(400, f"{extension} is not a member of {group.kind.value} {group.name}")
    domain = principal.domain
    try:
        changed = await server.change(
            lambda store: (store.login if logged_in else store.logout)(domain, extension, group.name)
        )
    except StoreError as exc:
        raise ApiError(400, str(exc)) from None
    return web.json_response(
        {
            "extension": extension,
            "group": group.name,
            "kind": group.kind.value,
            "logged_in": logged_in,
            "changed": changed,
        }
    )


@documented(
    {
        "summary": "Log a member of staff's phone on or off (off: it receives no calls)",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "required": ["on"], "properties": {"on": _B}}
                }
            },
        },
        "responses": {
            "200": {"description": "{extension, phone_on, changed}"},
            "403": {"description": "a member of staff may change only their own"},
            "404": {"description": "no such extension"},
        },
    }
)
async def set_phone(request: web.Request) -> web.Response:
    """Log a phone on or off."""
    principal = principal_of(request)
    server = _server(request)
    extension = request.match_info["ext"]
    _acting_for(principal, extension, server.directory())
    on = _flag(await json_body(request), "on")
    domain = principal.domain
    try:
        changed = await server.change(lambda store: store.set_phone(domain, extension, on))
    except StoreError as exc:
        raise ApiError(400, str(exc)) from None
    return web.json_response({"extension": extension, "phone_on": on, "changed": changed})


# A click-to-call refused with a SIP status: the HTTP status that says the same.
_CLICK_HTTP = {400: 400, 403: 403, 404: 404}


@documented(
    {
        "summary": "Click-to-call: ring a member of staff's phones, then connect the one that answers to a number",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "required": ["number"], "properties": {"number": _S}}
                }
            },
        },
        "responses": {
            "202": {
                "description": "{call, extension, number}: the phones ring; follow the call on /api/events"
            },
            "400": {"description": "no number, the extension's own number, or a feature code"},
            "403": {
                "description": "a member of staff may call only from their own phone; or the "
                "outbound policy does not let them call the number"
            },
            "404": {"description": "no such extension, or nobody has the number"},
            "409": {"description": "the extension has no phone to ring, or the number cannot be reached now"},
        },
    }
)
async def click_to_call(request: web.Request) -> web.Response:
    """Ring the member of staff's phones, then connect the one that answers to the number."""
    principal = principal_of(request)
    server = _server(request)
    extension = request.match_info["ext"]
    _acting_for(principal, extension, server.directory())
    body = await json_body(request)
    number = body.get("number")
    if not isinstance(number, str) or not number.strip():
        raise ApiError(400, 'give the number to call: {"number": "..."}')
    try:
        call_id = _endpoint(request).click_to_call(principal.domain, extension, number)
    except ClickRefused as refused:
        raise ApiError(_CLICK_HTTP.get(refused.status, 409), refused.sentence) from None
    return web.json_response({"call": call_id, "extension": extension, "number": number.strip()}, status=202)


def api_routes() -> list[web.RouteDef]:
    """Every route of the REST API."""
    return [
        web.get("/api/calls", get_calls),
        web.get("/api/presence", get_presence),
        web.get("/api/groups", get_groups),
        web.get("/api/queues", get_queues),
        web.get("/api/parked", get_parked),
        web.get("/api/records", get_records),
        web.get("/api/trunks", get_trunks),
        web.post("/api/staff/{ext}/groups/{group}", set_group_login),
        web.post("/api/staff/{ext}/phone", set_phone),
        web.post("/api/staff/{ext}/call", click_to_call),
    ]


__all__ = ["api_routes"]
