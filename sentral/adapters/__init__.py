"""The clinic's world: caller-ID lookups, national IDs, platform events."""
