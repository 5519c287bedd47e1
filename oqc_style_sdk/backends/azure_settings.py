"""Where the ``azure_quantum`` backend finds its workspace and credentials.

Each setting comes from its keyword, else from the workspace's connection string, else from its own
environment variable. The connection string is the one the Azure portal shows under *Operations →
Access keys* and azure-quantum's ``Workspace.from_connection_string`` reads (also from
``AZURE_QUANTUM_CONNECTION_STRING``)::

    SubscriptionId=<guid>;ResourceGroupName=<group>;WorkspaceName=<name>;ApiKey=<key>;QuantumEndpoint=https://<region>.quantum.azure.com/;

Its ``QuantumEndpoint`` is the workspace's data-plane endpoint as it is: V2 workspaces live at
``https://{region}-v2.quantum.azure.com``, so the endpoint is never guessed from a region when one is
given. The connection string and the API key are secrets: they are kept as :class:`Secret`, and no
error message quotes them (nor any part of a malformed connection string).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from .._http import Secret
from ..exceptions import ConfigurationError

__all__ = [
    "CONNECTION_STRING_KEYS",
    "ENV",
    "WorkspaceSettings",
    "from_env",
    "parse_connection_string",
    "resolve",
    "secret",
]

#: The environment variables the backend reads, by keyword.
ENV: Final[Mapping[str, str]] = {
    "endpoint": "AZURE_QUANTUM_ENDPOINT",
    "location": "AZURE_QUANTUM_LOCATION",
    "workspace_kind": "AZURE_QUANTUM_WORKSPACE_KIND",
    "subscription_id": "AZURE_QUANTUM_SUBSCRIPTION_ID",
    "resource_group": "AZURE_QUANTUM_RESOURCE_GROUP",
    "workspace": "AZURE_QUANTUM_WORKSPACE",
    "access_token": "AZURE_QUANTUM_ACCESS_TOKEN",
    "api_key": "AZURE_QUANTUM_API_KEY",
    "connection_string": "AZURE_QUANTUM_CONNECTION_STRING",
    "api_version": "AZURE_QUANTUM_API_VERSION",
}
#: The parts of a connection string (names compared case-insensitively, as azure-quantum does),
#: and the keyword each one stands for.
CONNECTION_STRING_KEYS: Final[Mapping[str, str]] = {
    "SubscriptionId": "subscription_id",
    "ResourceGroupName": "resource_group",
    "WorkspaceName": "workspace",
    "ApiKey": "api_key",
    "QuantumEndpoint": "endpoint",
}
_BY_LOWER: Final = {name.lower(): name for name in CONNECTION_STRING_KEYS}

_SUBSCRIPTION = re.compile(r"^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$")
_RESOURCE_GROUP = re.compile(r"^[a-zA-Z][a-zA-Z0-9\-_\.]*$")
_WORKSPACE = re.compile(r"^[a-zA-Z][a-zA-Z0-9\-_]*$")
_LOCATION = re.compile(r"^[a-z0-9]+$")


@dataclass(frozen=True, slots=True)
class WorkspaceSettings:
    """One workspace: its endpoint, its path parts and its credentials (secrets stay wrapped)."""

    endpoint: str
    subscription_id: str
    resource_group: str
    workspace: str
    token: Secret | None
    api_key: Secret | None


def secret(value: str | Secret, what: str = "Azure Quantum credentials") -> Secret:
    """``value`` as a :class:`Secret` (stripped); ConfigurationError if it is empty."""
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{what} must be non-empty strings")
    return Secret(value.strip())


def parse_connection_string(text: str | Secret) -> dict[str, Any]:
    """The settings of a connection string, by keyword (``api_key`` a :class:`Secret`).

    Every part is required, once; order and the trailing ``;`` do not matter. Raises
    ConfigurationError naming the parts that are wrong, never quoting the text.
    """
    raw = secret(text, "an Azure Quantum connection string").reveal()
    found: dict[str, str] = {}
    for item in raw.split(";"):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        canonical = _BY_LOWER.get(name.strip().lower())
        if not sep or canonical is None:
            raise ConfigurationError(
                "the Azure Quantum connection string has a part that is not one of "
                f"{', '.join(CONNECTION_STRING_KEYS)} (written Name=value;)"
            )
        if canonical in found:
            raise ConfigurationError(f"the Azure Quantum connection string has {canonical} twice")
        if not value.strip():
            raise ConfigurationError(f"the Azure Quantum connection string has an empty {canonical}")
        found[canonical] = value.strip()
    missing = [name for name in CONNECTION_STRING_KEYS if name not in found]
    if missing:
        raise ConfigurationError(f"the Azure Quantum connection string has no {', '.join(missing)}")
    settings: dict[str, Any] = {CONNECTION_STRING_KEYS[name]: value for name, value in found.items()}
    settings["api_key"] = Secret(settings["api_key"])
    settings["endpoint"] = str(settings["endpoint"]).rstrip("/")
    if not re.match(r"^https?://[^/\s]+$", settings["endpoint"]):
        raise ConfigurationError(
            "the QuantumEndpoint of the Azure Quantum connection string is not a URL such as "
            "https://eastus.quantum.azure.com/"
        )
    return settings


def from_env(value: Any, keyword: str) -> Any:
    """``value`` if given, else the stripped environment variable of ``keyword`` (None if unset)."""
    if value is not None:
        return value
    raw = os.environ.get(ENV[keyword])
    return raw.strip() if isinstance(raw, str) and raw.strip() else None


def _endpoint(location: str | None, kind: str | None) -> str:
    """The endpoint of a region's workspaces: ``https://{location}.quantum.azure.com`` for V1,
    ``https://{location}-v2.quantum.azure.com`` for V2 (azure-quantum's own two forms)."""
    if location is None:
        raise ConfigurationError(
            "Azure Quantum needs the workspace endpoint: pass endpoint=... (or connection_string=..., "
            f"or location=...) or set {ENV['endpoint']} (or {ENV['connection_string']}, or "
            f"{ENV['location']})"
        )
    region = "".join(str(location).split()).lower()
    if not _LOCATION.match(region):
        raise ConfigurationError(f"location {region!r} is not an Azure region name such as 'eastus'")
    version = str(kind or "V1").upper()
    if version not in ("V1", "V2"):
        raise ConfigurationError(f"workspace_kind ({ENV['workspace_kind']}) is 'V1' or 'V2', not {kind!r}")
    return f"https://{region}{'-v2' if version == 'V2' else ''}.quantum.azure.com"


def resolve(
    *,
    endpoint: str | None,
    location: str | None,
    workspace_kind: Literal["V1", "V2"] | None,
    subscription_id: str | None,
    resource_group: str | None,
    workspace: str | None,
    access_token: str | Secret | None,
    api_key: str | Secret | None,
    connection_string: str | Secret | None,
    has_token_provider: bool,
) -> WorkspaceSettings:
    """The workspace settings from keywords, the connection string and the environment (in that
    order for each setting); ConfigurationError naming what is missing or malformed."""
    given = from_env(connection_string, "connection_string")
    parsed = parse_connection_string(given) if given is not None else {}
    keywords = {
        "endpoint": endpoint,
        "subscription_id": subscription_id,
        "resource_group": resource_group,
        "workspace": workspace,
        "api_key": api_key,
    }
    value = {key: from_env(kw if kw is not None else parsed.get(key), key) for key, kw in keywords.items()}
    url = value["endpoint"] or _endpoint(
        from_env(location, "location"), from_env(workspace_kind, "workspace_kind")
    )
    for keyword, what in (
        ("subscription_id", "subscription id"),
        ("resource_group", "resource group"),
        ("workspace", "workspace name"),
    ):
        if value[keyword] is None:
            raise ConfigurationError(
                f"Azure Quantum needs the workspace's {what}: pass {keyword}=... (or connection_string=...) "
                f"or set {ENV[keyword]} (or {ENV['connection_string']})"
            )
    subscription = str(value["subscription_id"]).lower()
    if not _SUBSCRIPTION.match(subscription):
        raise ConfigurationError(
            f"subscription_id ({ENV['subscription_id']}) must be a GUID such as "
            "00000000-0000-0000-0000-000000000001"
        )
    group, name = str(value["resource_group"]), str(value["workspace"])
    if not (1 <= len(group) <= 90 and _RESOURCE_GROUP.match(group)):
        raise ConfigurationError(
            f"resource_group ({ENV['resource_group']}) {group!r} is not a resource group name"
        )
    if not (2 <= len(name) <= 50 and _WORKSPACE.match(name)):
        raise ConfigurationError(f"workspace ({ENV['workspace']}) {name!r} is not a workspace name")
    token = from_env(access_token, "access_token")
    key = value["api_key"]
    if token is None and not has_token_provider and key is None:
        raise ConfigurationError(
            "Azure Quantum needs credentials: pass access_token=... (or token_provider=...), "
            f"api_key=... or connection_string=..., or set {ENV['access_token']}, {ENV['api_key']} "
            f"or {ENV['connection_string']}"
        )
    return WorkspaceSettings(
        endpoint=str(url),
        subscription_id=subscription,
        resource_group=group,
        workspace=name,
        token=None if token is None else secret(token),
        api_key=None if key is None else secret(key),
    )
