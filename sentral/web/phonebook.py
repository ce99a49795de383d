"""The remote phone book desk phones fetch over HTTP: the clinic's staff and contacts as XML.

``GET /phonebook.xml`` answers in the ``IPPhoneDirectory`` format most desk phones read as a
remote phone book (Yealink's ``YealinkIPPhoneDirectory``, which Fanvil and others read too):
one ``DirectoryEntry`` with ``Name`` and ``Telephone`` per member of staff (their extension) and
per contact of the clinic (their number in E.164, which dials out as any outside number), by name.

A phone signs in as a member of staff with HTTP Basic credentials, extension (or
``extension@clinic``) and SIP password, as its phone book URL can carry them; a signed-in member
of staff or a clinic platform's token works too. Without credentials the answer is 401 with
``WWW-Authenticate: Basic``, which is what makes a phone send them. The list is of the caller's
own clinic only, read from the directory in memory.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from aiohttp import web

from sentral.config.directory import Directory
from sentral.web.auth import PRINCIPAL_KEY, Principal
from sentral.web.service import SERVICE_KEY

PATH = "/phonebook.xml"
ROOT = "YealinkIPPhoneDirectory"


def phonebook_xml(directory: Directory, domain: str) -> str:
    """The clinic's staff and contacts as an IP phone directory document, by name."""
    entries = [(staff.name, extension) for (d, extension), staff in directory.staff.items() if d == domain]
    entries += [(contact.name, contact.number) for contact in directory.contacts.get(domain, ())]
    entries.sort(key=lambda entry: (entry[0].casefold(), entry[1]))
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f"<{ROOT}>"]
    for name, number in entries:
        lines.append(
            f"  <DirectoryEntry><Name>{escape(name)}</Name><Telephone>{escape(number)}</Telephone></DirectoryEntry>"
        )
    lines.append(f"</{ROOT}>")
    return "\n".join(lines) + "\n"


async def phonebook(request: web.Request) -> web.Response:
    """The clinic's phone book for desk phones (XML)."""
    service = request.app[SERVICE_KEY]
    principal: Principal | None = service.auth.basic_staff(request) or request[PRINCIPAL_KEY]
    if principal is None:
        return web.Response(
            status=401,
            text="Give your extension and SIP password.\n",
            headers={"WWW-Authenticate": 'Basic realm="sentral phone book", charset="UTF-8"'},
        )
    document = phonebook_xml(service.server.directory(), principal.domain)
    return web.Response(text=document, content_type="application/xml", charset="utf-8")


def phonebook_routes() -> list[web.RouteDef]:
    """``GET /phonebook.xml``."""
    return [web.get(PATH, phonebook)]


__all__ = ["PATH", "phonebook_routes", "phonebook_xml"]
