"""``mlcp policy``: set and show a model's promotion policy."""

from __future__ import annotations

from pathlib import Path

import click

from controlplane.cli import Env, pass_env
from controlplane.cli.output import emit_json


@click.group()
def policy() -> None:
    """Set and show promotion policies (gates, approval, canary, SLO, drift)."""


@policy.command("set")
@click.argument("name")
@click.option("--file", "path", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--json", "as_json", is_flag=True, help="print the stored policy as JSON")
@pass_env
def set_(env: Env, name: str, path: Path, as_json: bool) -> None:
    """Validate the YAML policy in --file and store it as NAME's current policy."""
    from controlplane.errors import InvalidPolicy
    from controlplane.policy import Policy

    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidPolicy(str(path), "", f"cannot read it: {exc.strerror}") from exc
    stored = env.service.set_policy(name, Policy.from_yaml(text, source=str(path)))
    if as_json:
        emit_json(stored)
    else:
        click.echo(f"{name}: policy revision {stored['revision']} (sha256 {stored['sha256'][:12]})")


@policy.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_env
def show(env: Env, name: str, as_json: bool) -> None:
    """Show NAME's current policy."""
    import yaml

    stored = env.service.policy(name)
    if as_json:
        emit_json(stored)
        return
    click.echo(
        f"# {name}: revision {stored['revision']}, sha256 {stored['sha256']}, "
        f"by {stored['created_by']}"
    )
    click.echo(yaml.safe_dump(stored["policy"], sort_keys=False).rstrip())
