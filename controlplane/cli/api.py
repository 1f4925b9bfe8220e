"""``mlcp api`` serves the control-plane REST API; ``mlcp tokens`` manages its bearer tokens."""

from __future__ import annotations

import click

from controlplane.cli import Env, local_only, pass_env
from controlplane.cli.output import emit_json, progress, table


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@local_only
def api(env: Env, host: str, port: int) -> None:
    """Serve the control-plane REST API (OpenAPI at /docs and /openapi.json)."""
    import uvicorn

    from controlplane.api.app import create_app

    progress(f"control-plane API on http://{host}:{port} (OpenAPI: /docs)")
    uvicorn.run(create_app(env.cp), host=host, port=port, log_level="warning")


@click.group()
def tokens() -> None:
    """Create, list and revoke API tokens (roles: viewer, data-scientist, promoter, admin)."""


@tokens.command()
@click.argument("name")
@click.option(
    "--role", type=click.Choice(["viewer", "data-scientist", "promoter", "admin"]), required=True
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def create(env: Env, name: str, role: str, as_json: bool) -> None:
    """Create a token for NAME; it is printed once and only its hash is kept."""
    created = env.service.create_token(name, role)
    if as_json:
        emit_json(created)
    else:
        progress(f"token {created['id']} ({role}) for {name}; store it now, it is not shown again")
        click.echo(created["token"])


@tokens.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="revoked tokens too")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def list_tokens(env: Env, include_revoked: bool, as_json: bool) -> None:
    """List the active tokens (id, owner, role, who created them, when); never a token."""
    rows = env.service.tokens(include_revoked)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no tokens; create one with `mlcp tokens create NAME --role ROLE`")
        return
    table(
        [
            {**r, "created_at": r["created_at"][:19], "revoked_at": (r["revoked_at"] or "-")[:19]}
            for r in rows
        ],
        ["id", "name", "role", "created_by", "created_at"] + (["revoked_at"] * include_revoked),
    )


@tokens.command()
@click.argument("token_id", type=click.IntRange(1, 2**31 - 1))
@pass_env
def revoke(env: Env, token_id: int) -> None:
    """Revoke token TOKEN_ID."""
    env.service.revoke_token(token_id)
    click.echo(f"token {token_id} revoked")
