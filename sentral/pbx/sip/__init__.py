"""The sans-IO SIP protocol: messages, URIs, headers, digest auth, transactions.

Nothing in this package does IO, reads a clock or logs. Callers pass bytes and the current
time in and take events, bytes to send and timer deadlines out.
"""
