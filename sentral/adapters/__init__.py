"""The clinic's world: caller-ID lookups (contacts, CSV, SQL, FHIR) and national IDs.

``CallerLookup`` holds a ``LookupChain`` per clinic, built from the directory's adapter entries;
each adapter answers ``by_number`` (E.164) and ``by_national_id`` with a ``Match`` or None.
"""

from sentral.adapters.caller import Adapter, AdapterError, CallerKind, Match, parse_kind
from sentral.adapters.chain import ADAPTER_TIMEOUT, CACHE_TTL, LookupChain
from sentral.adapters.lookup import (
    DEFAULT_BUDGET,
    ENTRY_POINT_GROUP,
    CallerLookup,
    DirectoryReader,
    build_adapter,
    factories,
)

__all__ = [
    "ADAPTER_TIMEOUT",
    "CACHE_TTL",
    "DEFAULT_BUDGET",
    "ENTRY_POINT_GROUP",
    "Adapter",
    "AdapterError",
    "CallerKind",
    "CallerLookup",
    "DirectoryReader",
    "LookupChain",
    "Match",
    "build_adapter",
    "factories",
    "parse_kind",
]
