"""The registrar (RFC 3261 §10.3) with digest auth, RFC 5626 flows and Path (RFC 3327).

Theory of operation: ``Registrar.register`` decides what a REGISTER does without doing any IO:
it picks the clinic from the To domain (404 for a domain the server does not serve, or a
Request-URI naming another domain; an IP address stands for the server's own), authenticates the request (401 with one challenge per
algorithm offered, see below), checks that the authenticated extension is the one whose bindings
are being changed, computes every binding's expiry (423 below the minimum), and returns the
response together with the binding changes. The endpoint commits those changes to storage and
applies them to the location service before it sends the 200 OK, so an acknowledged
registration survives a crash.

Bindings are keyed per RFC 5626: by ``+sip.instance`` and ``reg-id`` when the phone uses
outbound, by ``+sip.instance`` alone when it sends only that (a rebooted phone replaces its old
binding rather than adding one), and by the contact URI otherwise. Each binding records the
transport, source address and listener the REGISTER came through, which is how requests reach a
phone behind NAT later. When an address of record would exceed ``max_contacts``, the binding
closest to expiry is replaced, so that a phone rebooted without unregistering is not locked out.

An unknown extension and a wrong password get the same answer and cost the same work: the digest
check runs against a dummy hash for unknown users.

The challenge offers the digest algorithms of the phone the request names (``offered``): the To
user of a REGISTER, the From user of an INVITE or SUBSCRIBE. A phone that cannot follow the
clinic's choice (MD5-only desk phones, a phone that answers only the first algorithm offered) has
one of its own; every other extension, known or not, gets the clinic's, so the challenge of an
unknown extension is that of a known one. The credentials are accepted only in an algorithm the
phone they name is offered.
"""

from __future__ import annotations

import email.utils
import ipaddress
from dataclasses import dataclass, field
from enum import Enum

from sentral.config.directory import ClinicEntry, Directory
from sentral.config.store import BindingRow
from sentral.pbx.location import Location
from sentral.pbx.sip.auth import Credentials, DigestAuthority, UnsupportedScheme, Verdict, parse_credentials
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.grammar import quote, unquote
from sentral.pbx.sip.headers import NameAddr
from sentral.pbx.sip.message import Request, Response, local_tag, make_response
from sentral.pbx.transport import Origin


@dataclass(frozen=True, slots=True)
class RegistrarPolicy:
    """Expiry bounds and the per-AOR contact limit."""

    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_contacts: int = 5


class AuthOutcome(Enum):
    """What authentication concluded, for the abuse guard and the security log."""

    NONE = "none"  # no credentials offered: challenged
    OK = "ok"
    FAILED = "failed"
    STALE = "stale"


@dataclass(slots=True)
class RegisterResult:
    """The response to send once ``upserts`` and ``deletes`` are durable."""

    response: Response
    auth: AuthOutcome = AuthOutcome.NONE
    username: str | None = None
    # Why authentication failed, for the log: see ``Registrar.failure_reason``.
    reason: str | None = None
    upserts: list[BindingRow] = field(default_factory=list)
    deletes: list[tuple[str, str, str]] = field(default_factory=list)
    # The bindings the 200 OK lists, completed once the change is applied.
    listed: list[BindingRow] = field(default_factory=list)
    # The extension's bindings, by key, as they were when the change was decided: what the log
    # compares the change with (a new binding, one that moved, a refresh).
    previous: dict[str, BindingRow] = field(default_factory=dict)


def names_this_server(host: str) -> bool:
    """True when a URI's host is an IP address. Sentral forwards nothing by Request-URI, so an
    address there can only be the one the phone reached it at, which behind NAT need not be one
    the server could list as its own."""
    bare = host[1:-1] if host.startswith("[") else host
    if not bare or not (bare[0].isdigit() or ":" in bare):
        return False  # a domain name: skip the parse
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        return False
    return True


def clinic_of_host(host: str, directory: Directory) -> ClinicEntry | None:
    """The clinic a URI host names: the clinic of that domain, or, for the server's own address
    while the server has a single clinic, that one."""
    clinic = directory.clinic(host)
    if clinic is None and len(directory.clinics) == 1 and names_this_server(host):
        clinic = next(iter(directory.clinics.values()))
    return clinic


@dataclass(frozen=True, slots=True)
class Addressing:
    """Where a new INVITE or SUBSCRIBE comes from and goes to, by domain."""

    caller: ClinicEntry | None  # the clinic of the From domain, if served
    callee: ClinicEntry | None  # the clinic the Request-URI is for, if known
    served: bool  # False when the Request-URI names a domain this server does not serve

    @property
    def realm(self) -> ClinicEntry | None:
        """The clinic whose staff the sender must prove to be: the caller's, else the callee's."""
        return self.caller or self.callee


class Registrar:
    """Handles REGISTER for every clinic the server serves."""

    def __init__(self, authority: DigestAuthority, location: Location, policy: RegistrarPolicy) -> None:
        self.authority = authority
        self.location = location
        self.policy = policy
        # The Date header of the last second a 200 OK went out in (formatting one costs more
        # than the rest of the response).
        self._date_second = -1
        self._date = ""

    def clinic_for(self, request: Request, directory: Directory) -> ClinicEntry | None:
        """The clinic whose address of record a REGISTER names: the To domain's. None (404) when
        that domain is not served, or when the Request-URI names another domain than the To's:
        RFC 3261 §10.3 steps 1 and 5. The server's own address stands in for the domain in either."""
        clinic = clinic_of_host(request.to.uri.host, directory)
        if clinic is None:
            return None
        host = request.uri.host
        if directory.clinic(host) is not clinic and not names_this_server(host):
            return None
        return clinic

    def addressing(self, request: Request, directory: Directory) -> Addressing:
        """Which clinic a new INVITE or SUBSCRIBE comes from and which it is for."""
        caller = clinic_of_host(request.from_.uri.host, directory)
        uri = request.uri
        host = uri.host
        callee = directory.clinic(host)
        if callee is None and (uri.scheme == "tel" or names_this_server(host)):
            # The number is the caller's clinic's: a tel: URI has no domain, and a phone that
            # reaches the server by its address (an outbound proxy without DNS) puts that there.
            return Addressing(caller, caller or clinic_of_host(host, directory), served=True)
        return Addressing(caller, callee, served=callee is not None)

    def offered(self, request: Request, clinic: ClinicEntry, directory: Directory) -> tuple[str, ...]:
        """The digest algorithms to challenge ``request`` with: those of the phone it names (the To
        user of a REGISTER, else the From user), or the clinic's when that is no known extension."""
        named = request.to if request.method == "REGISTER" else request.from_
        return directory.digest_algorithms(clinic, named.uri.user_unescaped or "")

    def challenge(
        self, request: Request, clinic: ClinicEntry, directory: Directory, now: float, *, stale: bool = False
    ) -> Response:
        """A 401 carrying one WWW-Authenticate per digest algorithm offered to the phone named."""
        algorithms = self.offered(request, clinic, directory)
        values = self.authority.challenge(clinic.domain, now, algorithms=algorithms, stale=stale)
        return make_response(
            request,
            401,
            to_tag=local_tag(request),
            headers=[("WWW-Authenticate", v) for v in values],
        )

    def authenticate(
        self, request: Request, clinic: ClinicEntry, directory: Directory, now: float, header: str
    ) -> tuple[AuthOutcome, Credentials | None]:
        """Check the credentials in ``header`` (Authorization or Proxy-Authorization)."""
        creds: Credentials | None = None
        elsewhere: Credentials | None = None
        for value in request.header_lines(header):
            try:
                candidate = parse_credentials(value)
            except UnsupportedScheme:
                continue  # another scheme's credentials: challenged as if absent (RFC 4475 §3.3.7)
            if candidate.realm == clinic.domain:
                creds = candidate
                break
            elsewhere = elsewhere or candidate
        if creds is None:
            # Credentials for another realm only: a phone set up with the wrong realm, which
            # would otherwise be challenged again and again without a word in the log.
            return (AuthOutcome.NONE, None) if elsewhere is None else (AuthOutcome.FAILED, elsewhere)
        if creds.algorithm not in directory.digest_algorithms(clinic, creds.username):
            return AuthOutcome.FAILED, creds
        staff = directory.staff_for(clinic.domain, creds.username)
        ha1 = staff.ha1(creds.algorithm) if staff is not None else None
        verdict = self.authority.verify(request.method, creds, ha1, now, realm=clinic.domain)
        if verdict is Verdict.OK:
            return AuthOutcome.OK, creds
        if verdict is Verdict.STALE:
            return AuthOutcome.STALE, creds
        return AuthOutcome.FAILED, creds

    def failure_reason(self, creds: Credentials | None, clinic: ClinicEntry, directory: Directory) -> str:
        """Why ``creds`` failed (``authenticate`` said FAILED), in words for the operator's log."""
        if creds is None:
            return "no credentials"
        if creds.realm != clinic.domain:
            return "wrong realm"
        if creds.algorithm not in directory.digest_algorithms(clinic, creds.username):
            return "unsupported algorithm"
        if directory.staff_for(clinic.domain, creds.username) is None:
            return "unknown extension"
        # Also a response computed over another nonce or URI, which phones get wrong far less often.
        return "wrong password"

    def register(self, request: Request, origin: Origin, directory: Directory, now: float) -> RegisterResult:
        """Decide the outcome of a REGISTER received from ``origin`` at wall-clock time ``now``."""
        clinic = self.clinic_for(request, directory)
        if clinic is None:
            return RegisterResult(make_response(request, 404, "Unknown Domain", to_tag=local_tag(request)))
        outcome, creds = self.authenticate(request, clinic, directory, now, "authorization")
        if outcome is AuthOutcome.NONE or outcome is AuthOutcome.FAILED:
            result = RegisterResult(self.challenge(request, clinic, directory, now), auth=outcome)
            result.username = creds.username if creds is not None else None
            if outcome is AuthOutcome.FAILED:
                result.reason = self.failure_reason(creds, clinic, directory)
            return result
        if outcome is AuthOutcome.STALE:
            return RegisterResult(self.challenge(request, clinic, directory, now, stale=True), auth=outcome)
        assert creds is not None
        extension = request.to.uri.user_unescaped
        if extension != creds.username:
            return RegisterResult(
                make_response(request, 403, "Forbidden", to_tag=local_tag(request)),
                auth=AuthOutcome.OK,
                username=creds.username,
            )
        result = self._bindings(request, origin, clinic, extension, now)
        result.auth = AuthOutcome.OK
        result.username = creds.username
        return result

    def _bindings(
        self, request: Request, origin: Origin, clinic: ClinicEntry, extension: str, now: float
    ) -> RegisterResult:
        policy = self.policy
        aor = (clinic.domain, extension)
        current = {row.key: row for row in self.location.bindings(aor, now)}
        call_id = request.call_id
        cseq = request.cseq.seq
        tag = local_tag(request)

        if request.contact_star:
            if request.expires != 0:
                raise SipError(400, "Contact * requires Expires: 0")
            removed: list[tuple[str, str, str]] = []
            for row in current.values():
                if row.call_id == call_id and row.cseq >= cseq:
                    return RegisterResult(make_response(request, 500, "Out of Order", to_tag=tag))
                removed.append((clinic.domain, extension, row.key))
            return RegisterResult(self._ok(request, tag, [], now), deletes=removed, previous=current)

        contacts = request.contacts
        if not contacts:
            return RegisterResult(self._ok(request, tag, list(current.values()), now))

        header_expires = request.expires
        supported = request.tokens("supported")
        outbound = "outbound" in supported
        path = tuple(request.header_values("path"))
        user_agent = request.header("user-agent")
        upserts: dict[str, BindingRow] = {}
        deletes: dict[str, tuple[str, str, str]] = {}
        for contact in contacts:
            expires = _contact_expires(contact, header_expires, policy.default_expires)
            if 0 < expires < policy.min_expires:
                return RegisterResult(
                    make_response(
                        request, 423, to_tag=tag, headers=[("Min-Expires", str(policy.min_expires))]
                    )
                )
            expires = min(expires, policy.max_expires)
            instance = contact.param("+sip.instance")
            reg_id_text = contact.param("reg-id")
            reg_id = None
            if reg_id_text is not None:
                if not reg_id_text.isdigit() or len(reg_id_text) > 9:
                    raise SipError(400, "Bad reg-id")
                reg_id = int(reg_id_text)
            instance = unquote(instance) if instance else None
            contact_text = str(contact.uri)
            key = _binding_key(contact_text, instance, reg_id if outbound else None)
            existing = current.get(key)
            if existing is not None and existing.call_id == call_id and existing.cseq >= cseq:
                return RegisterResult(make_response(request, 500, "Out of Order", to_tag=tag))
            if expires == 0:
                if existing is not None:
                    deletes[key] = (clinic.domain, extension, key)
                upserts.pop(key, None)
                continue
            upserts[key] = BindingRow(
                domain=clinic.domain,
                extension=extension,
                key=key,
                contact=contact_text,
                expires_at=now + expires,
                call_id=call_id,
                cseq=cseq,
                transport=origin.transport,
                source_host=origin.host,
                source_port=origin.port,
                local_listen=f"{origin.local}#{origin.conn_id}" if origin.conn_id else str(origin.local),
                updated_at=now,
                instance=instance,
                reg_id=reg_id if outbound else None,
                path=path,
                user_agent=user_agent[:200] if user_agent else None,
            )
            deletes.pop(key, None)

        # Over the contact limit: replace the bindings closest to expiry.
        remaining = {k: r for k, r in current.items() if k not in deletes}
        remaining.update(upserts)
        overflow = len(remaining) - policy.max_contacts
        if overflow > 0:
            victims = sorted(
                (r for k, r in current.items() if k not in deletes and k not in upserts),
                key=lambda r: r.expires_at,
            )[:overflow]
            for row in victims:
                deletes[row.key] = (clinic.domain, extension, row.key)
                remaining.pop(row.key, None)
        listed = list(remaining.values())
        headers: list[tuple[str, str]] = []
        if outbound and any(r.reg_id is not None for r in upserts.values()):
            headers.append(("Require", "outbound"))
        if path:
            headers.extend(("Path", value) for value in path)
        return RegisterResult(
            self._ok(request, tag, listed, now, headers),
            upserts=list(upserts.values()),
            deletes=list(deletes.values()),
            listed=listed,
            previous=current,
        )

    def _ok(
        self,
        request: Request,
        tag: str,
        bindings: list[BindingRow],
        now: float,
        extra: list[tuple[str, str]] | None = None,
    ) -> Response:
        headers = [("Contact", _listed_contact(row, now)) for row in bindings]
        headers.append(("Date", self._date_header(now)))
        if extra:
            headers.extend(extra)
        return make_response(request, 200, to_tag=tag, headers=headers)


    def _date_header(self, now: float) -> str:
        second = int(now)
        if second != self._date_second:
            self._date = email.utils.formatdate(second, usegmt=True)
            self._date_second = second
        return self._date


def _contact_expires(contact: NameAddr, header_expires: int | None, default: int) -> int:
    text = contact.param("expires")
    if text is not None:
        if not text.isdigit() or len(text) > 10:
            raise SipError(400, "Bad Contact expires")
        return int(text)
    return header_expires if header_expires is not None else default


def _binding_key(contact: str, instance: str | None, reg_id: int | None) -> str:
    if instance and reg_id is not None:
        return f"{instance};reg-id={reg_id}"
    if instance:
        return instance
    return contact


def _listed_contact(row: BindingRow, now: float) -> str:
    remaining = max(0, int(row.expires_at - now + 0.5))
    value = f"<{row.contact}>;expires={remaining}"
    if row.instance:
        value += f";+sip.instance={quote(row.instance)}"
    if row.reg_id is not None:
        value += f";reg-id={row.reg_id}"
    return value

