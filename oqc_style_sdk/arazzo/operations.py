"""Where an Arazzo step's operationId goes: an OpenAPI description when it can be read, else the
built-in operation map of the matching backend.

The vendor seeds name their OpenAPI descriptions by relative URLs (``../openapi/...``) that do not
resolve, so each backend the SDK knows has a built-in map here: operationId → method + path
template, relative to the API's base path. Paths follow the vendors' documents
(``shared/specs/VENDORS.md``).

Server URLs
    ``servers={"jobsApi": "https://host"}`` (by source-description name) or ``{"ibm": ...}`` (by
    backend key). A URL with no path gets the API's base path added (IBM ``/api/v1``, Databricks
    ``/api/2.2``, Windmill ``/api``, Azure none; an OpenAPI description's server path); a URL with a
    path is used as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import anyio
import anyio.to_thread
import yaml

__all__ = [
    "BUILTIN_BACKENDS",
    "BuiltinBackend",
    "OpenApiDescription",
    "OperationSpec",
    "choose_backend",
    "join_server",
    "parse_openapi",
    "path_parameters",
    "read_openapi",
    "resolve_source_url",
]

MAX_DESCRIPTION_BYTES: Final = 20_000_000
_METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """One operation: HTTP method and path template (relative to the API's base path)."""

    method: str
    path: str

    @property
    def path_params(self) -> tuple[str, ...]:
        return path_parameters(self.path)


def path_parameters(template: str) -> tuple[str, ...]:
    """The ``{name}`` placeholders of a path template, in order."""
    return tuple(_PLACEHOLDER.findall(template))


@dataclass(frozen=True, slots=True)
class BuiltinBackend:
    """A backend's built-in operation map."""

    key: str
    title: str
    base_path: str
    default_server: str | None
    operations: Mapping[str, OperationSpec]
    #: Words that, in a source description's name or URL, point at this backend.
    hints: tuple[str, ...] = ()


def _ops(*items: tuple[str, str, str]) -> dict[str, OperationSpec]:
    return {operation_id: OperationSpec(method, path) for operation_id, method, path in items}


_AZURE_WS: Final = (
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
    "/providers/Microsoft.Quantum/workspaces/{workspaceName}"
)

BUILTIN_BACKENDS: Final[Mapping[str, BuiltinBackend]] = {
    "ibm": BuiltinBackend(
        key="ibm",
        title="IBM Quantum (Qiskit Runtime REST API)",
        base_path="/api/v1",
        default_server="https://quantum.cloud.ibm.com",
        operations=_ops(
            ("get_job", "GET", "/jobs/{id}"),
            ("get_job_details_jid", "GET", "/jobs/{id}"),
            ("cancel_job_jid", "POST", "/jobs/{id}/cancel"),
            ("create_job", "POST", "/jobs"),
            ("list_jobs", "GET", "/jobs"),
            ("get_job_results_jid", "GET", "/jobs/{id}/results"),
            ("delete_job_jid", "DELETE", "/jobs/{id}"),
        ),
        hints=("ibm", "qiskit"),
    ),
    "azure": BuiltinBackend(
        key="azure",
        title="Azure Quantum (workspace data plane)",
        base_path="",
        default_server=None,
        operations=_ops(
            ("Jobs_Get", "GET", _AZURE_WS + "/jobs/{jobId}"),
            ("Jobs_Cancel", "POST", _AZURE_WS + "/jobs/{jobId}:cancel"),
            ("Jobs_Create", "PUT", _AZURE_WS + "/jobs/{jobId}"),
            ("Jobs_Delete", "DELETE", _AZURE_WS + "/jobs/{jobId}"),
            ("Jobs_List", "GET", _AZURE_WS + "/jobs"),
        ),
        hints=("azure-quantum", "microsoft-quantum", "quantum.azure", "data-plane", "dataplane"),
    ),
    "databricks": BuiltinBackend(
        key="databricks",
        title="Azure Databricks (Jobs API 2.2)",
        base_path="/api/2.2",
        default_server=None,
        operations=_ops(
            ("getJobRun", "GET", "/jobs/runs/get"),
            ("JobsRunsGet", "GET", "/jobs/runs/get"),
            ("cancelJobRun", "POST", "/jobs/runs/cancel"),
            ("JobsRunsCancel", "POST", "/jobs/runs/cancel"),
            ("submitJobRun", "POST", "/jobs/runs/submit"),
            ("JobsRunsSubmit", "POST", "/jobs/runs/submit"),
            ("getJobRunOutput", "GET", "/jobs/runs/get-output"),
            ("JobsRunsGetOutput", "GET", "/jobs/runs/get-output"),
            ("listJobRuns", "GET", "/jobs/runs/list"),
            ("JobsRunsList", "GET", "/jobs/runs/list"),
            ("cancelAllJobRuns", "POST", "/jobs/runs/cancel-all"),
            ("JobsRunsCancelAll", "POST", "/jobs/runs/cancel-all"),
        ),
        hints=("databricks",),
    ),
    "windmill": BuiltinBackend(
        key="windmill",
        title="Windmill",
        base_path="/api",
        default_server=None,
        operations=_ops(
            ("runScriptByPath", "POST", "/w/{workspace}/jobs/run/p/{path}"),
            ("runScriptPreview", "POST", "/w/{workspace}/jobs/run/preview"),
            ("getJob", "GET", "/w/{workspace}/jobs_u/get/{id}"),
            ("getJobUpdates", "GET", "/w/{workspace}/jobs_u/getupdate/{id}"),
            ("getCompletedJob", "GET", "/w/{workspace}/jobs_u/completed/get/{id}"),
            ("getCompletedJobResult", "GET", "/w/{workspace}/jobs_u/completed/get_result/{id}"),
            ("getCompletedJobResultMaybe", "GET", "/w/{workspace}/jobs_u/completed/get_result_maybe/{id}"),
            ("cancelQueuedJob", "POST", "/w/{workspace}/jobs_u/queue/cancel/{id}"),
            ("forceCancelQueuedJob", "POST", "/w/{workspace}/jobs_u/queue/force_cancel/{id}"),
        ),
        hints=("windmill",),
    ),
}


def choose_backend(operation_ids: Iterable[str], *, name: str = "", url: str = "") -> BuiltinBackend | None:
    """The built-in backend whose map has the most of ``operation_ids`` (so that an unknown one is
    reported against the right map); ties are broken by the source description's name and URL
    (``windmill``, ``databricks`` ...). ``None`` if none has any, or no single one is best."""
    wanted = set(operation_ids)
    scores = {key: len(wanted & set(b.operations)) for key, b in BUILTIN_BACKENDS.items()}
    best = max(scores.values(), default=0)
    if best == 0:
        return None
    candidates = [BUILTIN_BACKENDS[key] for key, score in scores.items() if score == best]
    if len(candidates) > 1:
        text = f"{name} {url}".lower()
        candidates = [b for b in candidates if any(h in text for h in b.hints)]
    return candidates[0] if len(candidates) == 1 else None


def join_server(server: str, base_path: str) -> str:
    """A server URL with the API's base path added when the URL has no path of its own."""
    server = server.strip()
    parts = urlsplit(server)
    if parts.path in ("", "/"):
        return server.rstrip("/") + "/" + base_path.strip("/") if base_path.strip("/") else server.rstrip("/")
    return server.rstrip("/")


# --------------------------------------------------------------------------------------------------
# OpenAPI descriptions


@dataclass(frozen=True, slots=True)
class OpenApiDescription:
    """What the executor needs from an OpenAPI (3.x) or Swagger (2.0) description."""

    location: str
    operations: Mapping[str, OperationSpec] = field(default_factory=dict)
    base_path: str = ""
    #: A usable absolute server URL (no unfilled variables), if the description gives one.
    default_server: str | None = None


def _server_from_openapi3(data: Mapping[str, Any], location: str) -> tuple[str, str | None]:
    servers = data.get("servers")
    if not (isinstance(servers, list) and servers and isinstance(servers[0], Mapping)):
        return "", None
    first = servers[0]
    url = str(first.get("url", ""))
    variables = first.get("variables")
    if isinstance(variables, Mapping):
        for name, spec in variables.items():
            if isinstance(spec, Mapping) and "default" in spec:
                url = url.replace("{" + str(name) + "}", str(spec["default"]))
    parts = urlsplit(url)
    base_path = parts.path.rstrip("/")
    if "{" in base_path or "<" in base_path:
        base_path = ""
    default: str | None = None
    if parts.scheme in ("http", "https") and parts.netloc and not re.search(r"[{}<>]", parts.netloc):
        default = f"{parts.scheme}://{parts.netloc}"
    elif not parts.scheme and location.startswith(("http://", "https://")):
        joined = urlsplit(urljoin(location, url))
        default = f"{joined.scheme}://{joined.netloc}"
    return base_path, default


def parse_openapi(data: Any, location: str) -> OpenApiDescription:
    """Index an OpenAPI 3.x or Swagger 2.0 description by operationId; ``ValueError`` if it is not one."""
    if not isinstance(data, Mapping) or not ("openapi" in data or "swagger" in data):
        raise ValueError("not an OpenAPI description (no 'openapi' or 'swagger' field)")
    paths = data.get("paths")
    if not isinstance(paths, Mapping):
        raise ValueError("an OpenAPI description without 'paths'")
    operations: dict[str, OperationSpec] = {}
    for path, item in paths.items():
        if not isinstance(item, Mapping):
            continue
        for method in _METHODS:
            op = item.get(method)
            if isinstance(op, Mapping) and isinstance(op.get("operationId"), str):
                operations.setdefault(op["operationId"], OperationSpec(method.upper(), str(path)))
    if "swagger" in data:
        base_path = str(data.get("basePath") or "").rstrip("/")
        host = data.get("host")
        schemes = data.get("schemes") or ["https"]
        default = f"{schemes[0]}://{host}" if isinstance(host, str) and host else None
    else:
        base_path, default = _server_from_openapi3(data, location)
    return OpenApiDescription(location, operations, base_path, default)


def resolve_source_url(url: str, document_location: str | None) -> str | None:
    """The absolute path or URL of a source description, or ``None`` if it cannot be located."""
    if url.startswith(("http://", "https://")):
        return url
    if url.startswith("file://"):
        return urlsplit(url).path
    if document_location is None:
        return url if Path(url).is_absolute() else None
    if document_location.startswith(("http://", "https://")):
        return urljoin(document_location, url)
    return str((Path(document_location).parent / url).resolve())


def _parse_bytes(raw: bytes) -> Any:
    text = raw.decode("utf-8")
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return json.loads(text)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)


async def read_openapi(
    location: str, *, fetch: Callable[[str], Awaitable[bytes]] | None = None
) -> OpenApiDescription:
    """Read and index a description from a file path or an http(s) URL (``fetch`` gets URLs; the
    runner passes one that goes through the SDK's HTTP layer). Raises ``OSError``/``ValueError``."""
    if location.startswith(("http://", "https://")):
        if fetch is None:
            raise OSError("no way to fetch URLs was given")
        raw = await fetch(location)
    else:
        path = anyio.Path(location)
        if not await path.is_file():
            raise FileNotFoundError(f"no file {location}")
        stat = await path.stat()
        if stat.st_size > MAX_DESCRIPTION_BYTES:
            raise ValueError(f"larger than {MAX_DESCRIPTION_BYTES} bytes")
        raw = await path.read_bytes()
    if len(raw) > MAX_DESCRIPTION_BYTES:
        raise ValueError(f"larger than {MAX_DESCRIPTION_BYTES} bytes")
    try:
        data = await anyio.to_thread.run_sync(_parse_bytes, raw)
    except (yaml.YAMLError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"neither JSON nor YAML ({type(exc).__name__})") from None
    return parse_openapi(data, location)
