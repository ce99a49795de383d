"""Media: the RTP relay and what it plays and hears.

Pure modules (no sockets, no clock of their own): ``rtp`` (RFC 3550 headers), ``g711`` (PCMU and
PCMA), ``dtmf`` (RFC 4733 events and SIP INFO bodies), ``latch`` (port pool and symmetric-RTP
latching), ``player`` (20 ms packet schedules; its ``Playback`` is the IO part) and ``wav``.
IO: ``relay`` (the sockets), ``anchor`` (what call control calls) and ``sounds`` (music on hold
and prompts, built with ``python -m sentral.media.sounds build DIR``).
"""
