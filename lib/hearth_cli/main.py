"""`hearth`: the command-line client. Commands talk to the gateway over gRPC."""

from __future__ import annotations

import typer

app = typer.Typer(help="hearth: your home lab's control plane.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print hearth's version."""
    typer.echo("hearth 0.1.0")


if __name__ == "__main__":
    app()
