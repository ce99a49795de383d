"""Who rings: pure routing policies that take call events and return commands."""
