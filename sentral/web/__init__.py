"""The web side: aiohttp service in the engine's loop, sign-in, REST API and OpenAPI document."""
