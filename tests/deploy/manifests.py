"""Reading deploy/: the Kubernetes manifests, their containers, and the secrets script.

Shared by the offline checks (test_manifests.py) and the rehearsal that runs the manifests'
commands on loopback (test_rehearsal.py).
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
MLCP_IMAGE = "mlcp"  # the name kustomization.yaml's `images:` points at the pushed image
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def documents() -> list[dict[str, Any]]:
    """Every resource in deploy/k8s, in file order."""
    docs = []
    for path in manifest_files():
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def find(kind: str, name: str) -> dict[str, Any]:
    for doc in documents():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name} in deploy/k8s")


@dataclass(frozen=True)
class Container:
    """One container of a workload, with what it runs."""

    workload: str  # Kind/name
    pod: dict[str, Any]  # the pod spec
    spec: dict[str, Any]  # the container
    init: bool

    @property
    def argv(self) -> list[str]:
        return [str(a) for a in [*self.spec.get("command", []), *self.spec.get("args", [])]]

    @property
    def name(self) -> str:
        return f"{self.workload}/{self.spec['name']}"

    def port(self, ref: int | str) -> int:
        """A probe's or Service's port, resolving a named port."""
        if isinstance(ref, int):
            return ref
        for port in self.spec.get("ports", []):
            if port.get("name") == ref:
                return int(port["containerPort"])
        raise AssertionError(f"{self.name} has no port named {ref!r}")


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def containers_of(doc: dict[str, Any]) -> list[Container]:
    """A workload's init containers, then its containers."""
    pod = pod_spec(doc)
    workload = f"{doc['kind']}/{doc['metadata']['name']}"
    return [Container(workload, pod, s, init=True) for s in pod.get("initContainers", [])] + [
        Container(workload, pod, s, init=False) for s in pod["containers"]
    ]


def containers() -> Iterator[Container]:
    for doc in documents():
        if doc["kind"] in WORKLOAD_KINDS:
            yield from containers_of(doc)


def running(*words: str) -> Container:
    """The one main container whose mlcp command starts with ``words`` (e.g. "serve")."""
    found = [
        c
        for c in containers()
        if not c.init and c.argv[:1] == ["mlcp"] and c.argv[1 : 1 + len(words)] == list(words)
    ]
    assert len(found) == 1, f"expected one container running mlcp {' '.join(words)}: {found}"
    return found[0]


def option(argv: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` in argv (None when absent)."""
    for i, word in enumerate(argv[:-1]):
        if word == name:
            return argv[i + 1]
    return None


# -- commands -----------------------------------------------------------------------------------
_SHELL_OPERATORS = {";", "|", "||", "&&", "&", "(", ")"}


def mlcp_invocations(script: str) -> list[list[str]]:
    """The `mlcp ...` commands in a shell script, each up to the next shell operator."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words, found, current = list(lexer), [], None
    for word in words:
        if word in _SHELL_OPERATORS:
            if current is not None:
                found.append(current)
            current = None
        elif current is not None:
            current.append(word)
        elif word == "mlcp":
            current = []
    if current is not None:
        found.append(current)
    return found


def parse_cli(group: click.Group, args: list[str], prog: str = "mlcp") -> click.Context:
    """Resolve ``args`` to a leaf command of ``group`` and parse its options as click would,
    without running anything. Raises click.UsageError (or AssertionError) when they are wrong."""
    command: click.Command = group
    path = [prog]
    rest = list(args)
    while isinstance(command, click.Group):
        if not rest or rest[0].startswith("-"):
            raise click.UsageError(f"`{' '.join(path)}` needs a subcommand, got {rest}")
        name = rest.pop(0)
        sub = command.get_command(click.Context(command), name)
        if sub is None:
            raise click.UsageError(f"`{' '.join(path)}` has no subcommand {name!r}")
        command, path = sub, [*path, name]
    return command.make_context(" ".join(path), rest)


# -- secrets ------------------------------------------------------------------------------------
def run_create_secrets(tmp: Path) -> dict[str, dict[str, str]]:
    """Run deploy/k8s/create-secrets.sh against a kubectl that only records what it is asked,
    and return the secrets it would create: {name: {key: value}}."""
    log = tmp / "kubectl.log"
    fake = tmp / "kubectl"
    fake.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "sys.exit(1 if sys.argv[1:2] == ['get'] else 0)\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    subprocess.run(
        ["sh", str(K8S / "create-secrets.sh")],
        env={**os.environ, "KUBECTL": str(fake), "NAMESPACE": "mlcp"},
        check=True,
        capture_output=True,
        timeout=60,
    )
    import json

    secrets: dict[str, dict[str, str]] = {}
    for line in log.read_text().splitlines():
        call = json.loads(line)
        if "secret" not in call:
            continue
        at = call.index("secret")
        assert call[at - 1 : at + 2] == ["create", "secret", "generic"], call
        assert call[:2] == ["--namespace", "mlcp"], call
        values = secrets.setdefault(call[at + 2], {})
        for literal in call[at + 3 :]:
            assert literal.startswith("--from-literal="), call
            key, _, value = literal.removeprefix("--from-literal=").partition("=")
            values[key] = value
    return secrets


def secret_refs() -> set[tuple[str, str | None]]:
    """Every (secret, key) a container reads; key None for a whole secret (envFrom)."""
    refs: set[tuple[str, str | None]] = set()
    for c in containers():
        for env in c.spec.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.add((ref["name"], ref["key"]))
        for source in c.spec.get("envFrom", []):
            if "secretRef" in source:
                refs.add((source["secretRef"]["name"], None))
    return refs


def config_maps() -> dict[str, dict[str, str]]:
    return {
        d["metadata"]["name"]: d.get("data", {}) for d in documents() if d["kind"] == "ConfigMap"
    }


def environment(c: Container, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The environment Kubernetes would give container ``c`` (envFrom, then env)."""
    maps = config_maps()
    env: dict[str, str] = {}
    for source in c.spec.get("envFrom", []):
        if "configMapRef" in source:
            env.update(maps[source["configMapRef"]["name"]])
        if "secretRef" in source:
            env.update(secrets[source["secretRef"]["name"]])
    for var in c.spec.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        else:
            ref = var["valueFrom"].get("secretKeyRef") or var["valueFrom"]["configMapKeyRef"]
            table = secrets if "secretKeyRef" in var["valueFrom"] else maps
            env[var["name"]] = table[ref["name"]][ref["key"]]
    return env
