"""SIP core and call control: transports, the endpoint driver, the registrar, calls and presence."""
