"""The web side: aiohttp service in the engine's loop, sign-in, REST API and OpenAPI document."""

# The User-Agent of the browser phone's registrations: a binding with it lives only as long as
# the page and the server process that answered it, so a starting server drops those it finds.
BROWSER_PHONE_AGENT = "Sentral browser phone"
