"""The `hearth` command-line client (talks to the gateway)."""
