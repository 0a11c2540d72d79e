"""What a client of hearth may import, shared by the CLI and the services' own tools: bearer
tokens (:mod:`hearth_client.tokens`) and the ci terminal dashboard reading the ci service
(:mod:`hearth_client.dash`). Imports no server package (`make lint` checks)."""
