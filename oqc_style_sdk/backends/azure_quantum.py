"""Azure Quantum: OpenQASM programs and qiskit circuits on IonQ and Quantinuum targets of a workspace.

Wire facts (``specs/VENDORS.md`` §2, ``specs/azure-quantum-data-plane.openapi.json``):

- Every operation lives under ``{endpoint}/subscriptions/{subscriptionId}/resourceGroups/
  {resourceGroupName}/providers/Microsoft.Quantum/workspaces/{workspaceName}`` (``{ws}`` below) and
  needs the ``api-version`` query parameter. Credentials: ``Authorization: Bearer <Entra token>`` or
  the workspace key in ``x-ms-quantum-api-key``.
- Submitting is three requests: ``POST {ws}/storage/sasUri {"containerName": "job-{jobId}"}`` gives a
  container SAS URL (the service creates the container); the input is uploaded to the blob
  ``inputData`` of that container (Azure Blob "Put Blob", ``x-ms-blob-type: BlockBlob``); then
  ``PUT {ws}/jobs/{jobId}`` creates the job from its JobDetails. The job id is a GUID the *client*
  chooses.
- ``GET {ws}/jobs/{jobId}`` reads a job; ``GET {ws}/jobs?filter=...`` lists jobs (paged by
  ``nextLink``); ``GET {ws}/providerStatus`` lists providers and their targets.
- Cancel: ``POST {ws}/jobs/{jobId}:cancel`` (200 JobDetails per the spec, 204 from the live service)
  from api-version 2025-12-01-preview; ``DELETE {ws}/jobs/{jobId}`` (204) before it.
- On success the provider writes its result to the blob ``outputDataUri``: IonQ
  (``ionq.quantum-results.v1``) a histogram of probabilities keyed by the integer basis state of all
  qubits (qubit 0 the least significant bit); Quantinuum (``honeywell.quantum-results.v1``) one
  bitstring per shot for each classical register.
- Errors are ``{"error": {"code", "message"}}`` with an ``x-ms-error-code`` header.

How this adapter uses them
    * ``local_idempotency_key()`` makes the job's GUID. It is saved with the job before anything is
      sent and becomes the Azure job id, so a create whose answer was lost is sent again with the
      same id: the service answers with the existing job (a 409 for an existing id is resolved by
      reading the job), never a second one.
    * A program is OpenQASM 2 or 3 text or a qiskit ``QuantumCircuit`` with its parameters bound;
      both are lowered in a worker thread (:mod:`~oqc_style_sdk.backends.azure_providers`). IonQ
      input is IonQ's ``qis`` JSON (``ionq.circuit.v1``): gates are lowered to IonQ's gate set,
      measurements become the ``meas_map`` kept in the job's metadata (IonQ measures every qubit at
      the end; mid-circuit measurement, reset and classical control are refused). Quantinuum input
      is OpenQASM 2 text (``honeywell.openqasm.v1``): OpenQASM 2 text as written, OpenQASM 3 and
      circuits lowered to qelib1 gates and written as OpenQASM 2. More qubits than the target's
      ``numQubits`` or a gate that cannot be lowered is a JobValidationError before anything is sent.
    * Results are counts per classical register, ``{"c": {"00": 503, "11": 497}}``. IonQ's
      probabilities become counts by multiplying with the job's shots and rounding by largest
      remainder (so the counts add up to the shots, and an emulator's sampled histogram comes back
      exactly); Quantinuum's per-shot bitstrings are counted per register.
    * Status reads of many jobs go through the jobs list, filtered by id (``Id eq '...' or ...``; the
      filter grammar is not documented, so a server that refuses it with 400 — or answers without
      some of the jobs — is read job by job instead). One job is read with ``GET {ws}/jobs/{id}``.
    * The output blob's SAS URL is refreshed through ``storage/sasUri`` when it has no signature or
      expires within five minutes, as azure-quantum does. Blob requests never carry the workspace
      credentials, and no SAS URL is logged, saved or put in an error message.

Settings (keyword arguments; each comes from its keyword, else the connection string, else its
environment variable — see :mod:`~oqc_style_sdk.backends.azure_settings`)

=======================  =====================================  ===========================================
keyword                 environment variable                    meaning
=======================  =====================================  ===========================================
``connection_string``   ``AZURE_QUANTUM_CONNECTION_STRING``     the portal's ``SubscriptionId=...;
                                                                ResourceGroupName=...;WorkspaceName=...;
                                                                ApiKey=...;QuantumEndpoint=...;`` (a secret)
``endpoint``            ``AZURE_QUANTUM_ENDPOINT``              the data-plane endpoint, e.g.
                                                                ``https://eastus.quantum.azure.com`` or
                                                                ``https://eastus-v2.quantum.azure.com``
``location``            ``AZURE_QUANTUM_LOCATION``              a region (``eastus``); used when no endpoint
                                                                is set: ``https://{location}.quantum.azure.com``
``workspace_kind``      ``AZURE_QUANTUM_WORKSPACE_KIND``        ``"V1"`` (default) or ``"V2"``: with
                                                                ``location``, V2 is ``{location}-v2``
``subscription_id``     ``AZURE_QUANTUM_SUBSCRIPTION_ID``       the workspace's subscription (a GUID)
``resource_group``      ``AZURE_QUANTUM_RESOURCE_GROUP``        the workspace's resource group
``workspace``           ``AZURE_QUANTUM_WORKSPACE``             the workspace name
``access_token``        ``AZURE_QUANTUM_ACCESS_TOKEN``          an Entra bearer token (scope
                                                                ``https://quantum.microsoft.com/.default``)
``token_provider``      —                                       ``async () -> str``: a fresh token, asked
                                                                once and again after a 401
``api_key``             ``AZURE_QUANTUM_API_KEY``               the workspace API key (used when no token)
``api_version``         ``AZURE_QUANTUM_API_VERSION``           default ``2026-01-15-preview``
``allow_insecure_http`` —                                       plain http beyond loopback (default False)
=======================  =====================================  ===========================================
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import partial
from ipaddress import ip_address
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._http import HttpClient, RetryPolicy, Secret
from ..exceptions import (
    BackendError,
    ConfigurationError,
    JobValidationError,
    ProtocolError,
    UnknownTargetError,
)
from ..state import JobState
from . import _azure_runs
from ._http_backend import HttpBackend
from ._qiskit import in_qiskit_thread, is_circuit, start_qiskit_loader
from .azure_providers import (
    PROVIDER_FORMATS,
    IonqProgram,
    ProviderFormat,
    counts_from_ionq,
    counts_from_quantinuum,
    ionq_program,
    provider_of_target,
    quantinuum_program,
)
from .azure_settings import ENV, from_env, resolve, secret
from .base import Diagnostics, FoundRun, Observation, RunQuery, RunRef, RunSpec

__all__ = [
    "API_KEY_HEADER",
    "AZURE_STATUS",
    "DEFAULT_API_VERSION",
    "DOCUMENTED_STATUSES",
    "ENV",
    "PROVIDER_FORMATS",
    "AzureQuantumBackend",
    "IonqProgram",
    "ProviderFormat",
    "counts_from_ionq",
    "counts_from_quantinuum",
    "ionq_program",
    "map_status",
    "quantinuum_program",
]

logger = logging.getLogger("oqc_style_sdk.backends.azure_quantum")

#: The api-version sent unless told otherwise (azure-quantum 3.13.0's default).
DEFAULT_API_VERSION: Final = "2026-01-15-preview"
#: From this api-version on, jobs are cancelled with ``POST …:cancel``; before it with ``DELETE``.
CANCEL_WITH_POST_SINCE: Final = date(2025, 12, 1)
#: From this api-version on ``storage/sasUri`` creates a missing container; before it the client does.
SAS_CREATES_CONTAINER_SINCE: Final = date(2026, 1, 15)
#: The workspace API key header (``AzureApiKeyAuth`` of the spec).
API_KEY_HEADER: Final = "x-ms-quantum-api-key"
#: The Azure Storage REST version sent with blob requests.
STORAGE_VERSION: Final = "2023-11-03"

DEFAULT_SHOTS: Final = 1000
MAX_SHOTS: Final = 1_000_000
MAX_PROGRAM_BYTES: Final = 1_000_000
CONFIG_KEYS: Final = frozenset({"shots", "name", "priority", "tags"})
PRIORITIES: Final = frozenset({"Standard", "High"})
#: Ids per list request (a filter of 50 ids stays well under URL length limits).
LIST_BATCH: Final = 50
#: Pages of a list answer followed at most (per request of :data:`LIST_BATCH` ids).
MAX_LIST_PAGES: Final = 10
#: A SAS URL expiring sooner than this is refreshed before use (azure-quantum's margin).
SAS_REFRESH_MARGIN: Final = timedelta(minutes=5)
#: Terminal job details kept for the result download that follows (bounded).
MAX_FINISHED_CACHE: Final = 10_000

_JOB_ID = re.compile(r"^[a-fA-F0-9]{8}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{12}$")
_API_VERSION = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(-preview)?$")


# --------------------------------------------------------------------------------------------------
# Statuses


#: Every documented ``JobStatus`` (spec enum order).
DOCUMENTED_STATUSES: Final = (
    "Queued",
    "Waiting",
    "Executing",
    "CancellationRequested",
    "Cancelling",
    "Finishing",
    "Completed",
    "Succeeded",
    "Failed",
    "Cancelled",
)

#: Every documented job status, mapped once. Cancel-in-progress statuses stay active: they are
#: SUBMITTED ("at the vendor, not ended"), so a job that was RUNNING stays RUNNING (states never go
#: back) and a job that never ran is not said to run. Completed and Succeeded are both success
#: (azure-quantum's ``has_completed``).
AZURE_STATUS: Final[Mapping[str, JobState]] = {
    "Queued": JobState.SUBMITTED,
    "Waiting": JobState.SUBMITTED,
    "Executing": JobState.RUNNING,
    "CancellationRequested": JobState.SUBMITTED,
    "Cancelling": JobState.SUBMITTED,
    "Finishing": JobState.RUNNING,
    "Completed": JobState.COMPLETED,
    "Succeeded": JobState.COMPLETED,
    "Failed": JobState.FAILED,
    "Cancelled": JobState.CANCELLED,
}


def map_status(status: str) -> JobState | None:
    """The job state of a documented Azure job status; None for an undocumented one."""
    return AZURE_STATUS.get(status)


# --------------------------------------------------------------------------------------------------
# Wire models (the fields this adapter reads; everything else is kept but ignored)


class _ErrorData(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str | None = None
    message: str | None = None


class _JobDetails(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    id: str
    status: str | None = None
    provider_id: str | None = Field(None, alias="providerId")
    target: str | None = None
    error_data: _ErrorData | None = Field(None, alias="errorData")
    output_data_uri: str | None = Field(None, alias="outputDataUri")
    output_data_format: str | None = Field(None, alias="outputDataFormat")
    input_params: dict[str, Any] | None = Field(None, alias="inputParams")
    metadata: dict[str, Any] | None = None
    creation_time: str | None = Field(None, alias="creationTime")
    begin_execution_time: str | None = Field(None, alias="beginExecutionTime")
    end_execution_time: str | None = Field(None, alias="endExecutionTime")
    cancellation_time: str | None = Field(None, alias="cancellationTime")
    usage: dict[str, Any] | None = None
    cost_estimate: dict[str, Any] | None = Field(None, alias="costEstimate")
    quantum_computing_data: dict[str, Any] | None = Field(None, alias="quantumComputingData")


class _Paged(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    value: list[dict[str, Any]]
    next_link: str | None = Field(None, alias="nextLink")


class _SasUri(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    sas_uri: str = Field(alias="sasUri")


def _model(cls: type[Any], body: Any, what: str) -> Any:
    try:
        return cls.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_input=False)[:2]
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in first)
        raise ProtocolError(f"Azure Quantum answered {what} with an unexpected body ({where})") from None


def _parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time as Azure writes it (7 fractional digits, ``Z`` or an offset), else None."""
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------------------
# URLs


def _blob_parts(url: str) -> tuple[str, str]:
    """(container, blob) of a blob URL: host style (``https://acct.blob.core.windows.net/c/b``) or
    path style with the account first (``http://127.0.0.1:10000/acct/c/b``, as Azurite serves)."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    host = parts.hostname or ""
    path_style = host == "localhost"
    try:
        ip_address(host)
        path_style = True
    except ValueError:
        pass
    if path_style:
        segments = segments[1:]
    if len(segments) < 2:
        raise ProtocolError("Azure Quantum gave a blob URL without a container and a blob name")
    return segments[0], "/".join(segments[1:])


def _sas_expiry(url: str) -> datetime | None:
    for key, value in parse_qsl(urlsplit(url).query):
        if key == "se":
            return _parse_time(value)
    return None


def _has_sas(url: str) -> bool:
    return any(key == "sig" for key, _ in parse_qsl(urlsplit(url).query))


def _blob_in_container(container_sas_url: str, blob: str) -> tuple[str, str]:
    """(blob URL with the container's SAS, blob URL without it)."""
    parts = urlsplit(container_sas_url)
    path = parts.path.rstrip("/") + "/" + blob
    bare = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, "")), bare


def _api_version_date(api_version: str) -> date:
    match = _API_VERSION.match(api_version)
    if match is None:
        raise ConfigurationError(
            f"api_version {api_version!r} is not an Azure api-version such as {DEFAULT_API_VERSION!r} "
            f"(pass api_version=... or set {ENV['api_version']})"
        )
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        raise ConfigurationError(f"api_version {api_version!r} is not a valid date") from None


# --------------------------------------------------------------------------------------------------
# The backend


class AzureQuantumBackend(HttpBackend):
    """The ``azure_quantum`` backend (see the module docstring for settings and environment)."""

    name = "azure_quantum"
    batch_status = True
    idempotent_submit = True
    min_poll_interval_s = 0.25
    max_poll_interval_s = 30.0

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        location: str | None = None,
        workspace_kind: Literal["V1", "V2"] | None = None,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        workspace: str | None = None,
        access_token: str | Secret | None = None,
        token_provider: Callable[[], Awaitable[str | Secret]] | None = None,
        api_key: str | Secret | None = None,
        connection_string: str | Secret | None = None,
        api_version: str | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        settings = resolve(
            endpoint=endpoint,
            location=location,
            workspace_kind=workspace_kind,
            subscription_id=subscription_id,
            resource_group=resource_group,
            workspace=workspace,
            access_token=access_token,
            api_key=api_key,
            connection_string=connection_string,
            has_token_provider=token_provider is not None,
        )
        endpoint = settings.endpoint
        subscription, group, name = settings.subscription_id, settings.resource_group, settings.workspace
        self._token: Secret | None = settings.token
        self._token_provider = token_provider
        self._api_key: Secret | None = settings.api_key
        self.api_version: str = str(from_env(api_version, "api_version") or DEFAULT_API_VERSION)
        version_date = _api_version_date(self.api_version)
        #: True: cancel with ``POST …:cancel``; False (api-versions before 2025-12-01-preview): ``DELETE``.
        self.cancel_with_post: bool = version_date >= CANCEL_WITH_POST_SINCE
        self._create_containers = version_date < SAS_CREATES_CONTAINER_SINCE
        self.subscription_id: str = subscription
        self.resource_group: str = group
        self.workspace: str = name
        self._ws = (
            f"/subscriptions/{subscription}/resourceGroups/{group}"
            f"/providers/Microsoft.Quantum/workspaces/{name}"
        )
        #: A bearer token when one (or a provider) is given, else the API key.
        self._uses_token = self._token_provider is not None or self._token is not None
        self._http = HttpClient(
            endpoint,
            vendor="Azure Quantum",
            auth=self._auth_headers,
            on_unauthorized=self._refresh_token if token_provider is not None else None,
            timeout_s=timeout_s,
            retry=retry,
            allow_insecure_http=allow_insecure_http,
            user_agent="oqc-style-sdk",
        )
        self.endpoint: str = self._http.base_url
        # Blob storage is reached through SAS URLs: a client of its own, without workspace credentials.
        self._blob = HttpClient(
            endpoint,
            vendor="Azure Blob Storage",
            timeout_s=timeout_s,
            retry=retry,
            allow_insecure_http=allow_insecure_http,
            user_agent="oqc-style-sdk",
        )
        self._targets: dict[str, dict[str, Any]] = {}
        self._finished: OrderedDict[str, _JobDetails] = OrderedDict()
        self._undocumented: set[str] = set()
        self._list_usable = True
        self._fresh_token: Secret | None = None

    def __repr__(self) -> str:
        return (
            f"<AzureQuantumBackend endpoint={self.endpoint!r} workspace={self.workspace!r} "
            f"api_version={self.api_version!r}>"
        )

    # ------------------------------------------------------------------ lifetime
    def _clients(self) -> tuple[HttpClient, ...]:
        return (self._http, self._blob)

    async def _check(self) -> None:
        start_qiskit_loader()  # program conversion needs qiskit: import it in the background now
        await self._http.check_reachable(f"{self._ws}/providerStatus")
        await self._refresh_targets()

    def identity(self) -> dict[str, str]:
        return {"backend": self.name, "endpoint": self.endpoint, "workspace": self._ws}

    # ------------------------------------------------------------------ credentials
    async def _auth_headers(self) -> dict[str, str | Secret]:
        if self._uses_token:
            token = await self._current_token()
            return {"Authorization": Secret(f"Bearer {token.reveal()}")}
        assert self._api_key is not None
        return {API_KEY_HEADER: self._api_key}

    async def _current_token(self) -> Secret:
        if self._token_provider is None:
            assert self._token is not None
            return self._token
        if self._fresh_token is None:
            self._fresh_token = secret(await self._token_provider())
        return self._fresh_token

    async def _refresh_token(self) -> None:
        self._fresh_token = None

    # ------------------------------------------------------------------ requests
    def _params(self, **extra: str | int) -> dict[str, str | int]:
        return {"api-version": self.api_version, **extra}

    def _job_path(self, job_id: str) -> str:
        return f"{self._ws}/jobs/{job_id}"

    async def _get_details(self, job_id: str) -> _JobDetails:
        body = (await self._http.get(self._job_path(job_id), params=self._params())).json()
        details: _JobDetails = _model(_JobDetails, body, f"GET job {job_id}")
        return details

    def _same_origin(self, url: str) -> str:
        """A ``nextLink``: refused unless it points at the endpoint (it will carry credentials)."""
        ours, theirs = urlsplit(self.endpoint), urlsplit(url)
        if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
            raise ProtocolError("Azure Quantum sent a nextLink to another host; it was not followed")
        query = parse_qsl(theirs.query, keep_blank_values=True)
        if not any(key == "api-version" for key, _ in query):
            query.append(("api-version", self.api_version))
        return urlunsplit((theirs.scheme, theirs.netloc, theirs.path, urlencode(query), ""))

    async def _pages(self, path: str, params: Mapping[str, str | int], what: str) -> list[dict[str, Any]]:
        """Every item of a paged list (``{"value": [...], "nextLink"}``), at most MAX_LIST_PAGES pages."""
        items: list[dict[str, Any]] = []
        body = (await self._http.get(path, params=params)).json()
        for _page in range(MAX_LIST_PAGES):
            page: _Paged = _model(_Paged, body, what)
            items.extend(item for item in page.value if isinstance(item, dict))
            if not page.next_link:
                return items
            body = (await self._http.get(self._same_origin(page.next_link))).json()
        logger.warning("Azure Quantum %s has more than %d pages; the rest was not read", what, MAX_LIST_PAGES)
        return items

    # ------------------------------------------------------------------ targets
    async def _refresh_targets(self) -> list[dict[str, Any]]:
        providers = await self._pages(f"{self._ws}/providerStatus", self._params(), "the provider list")
        targets: dict[str, dict[str, Any]] = {}
        for provider in providers:
            provider_id = provider.get("id")
            fmt = PROVIDER_FORMATS.get(str(provider_id).lower()) if isinstance(provider_id, str) else None
            if fmt is None:
                continue  # a provider whose formats this adapter does not write (QIR, Pasqal ...)
            for target in provider.get("targets") or []:
                if not isinstance(target, dict) or not isinstance(target.get("id"), str):
                    continue
                targets[target["id"]] = {
                    "id": target["id"],
                    "name": target["id"],
                    "provider": fmt.provider,
                    "status": target.get("currentAvailability"),
                    "provider_status": provider.get("currentAvailability"),
                    "input_format": fmt.input_format,
                    "output_format": fmt.output_format,
                    "num_qubits": target.get("numQubits"),
                    "average_queue_time_s": target.get("averageQueueTime"),
                    "target_profile": target.get("targetProfile"),
                    "status_page": target.get("statusPage"),
                }
        self._targets = targets
        return list(targets.values())

    async def list_targets(self) -> list[dict[str, Any]]:
        return [dict(target) for target in await self._refresh_targets()]

    def _num_qubits(self, target: str) -> int | None:
        """The target's qubits as ``providerStatus`` gave them (None when it did not say)."""
        known = self._targets.get(target, {}).get("num_qubits")
        return known if isinstance(known, int) and not isinstance(known, bool) and known > 0 else None

    def _format_for(self, target: str) -> ProviderFormat:
        known = self._targets.get(target)
        provider = str(known["provider"]) if known else provider_of_target(target)
        if provider is None or provider not in PROVIDER_FORMATS:
            raise UnknownTargetError(target, sorted(self._targets))
        return PROVIDER_FORMATS[provider]

    # ------------------------------------------------------------------ jobs
    def validate(self, spec: RunSpec) -> RunSpec:
        program = spec.program
        if is_circuit(program):
            if program.parameters:
                names = ", ".join(sorted(str(p) for p in program.parameters))
                raise JobValidationError(f"the circuit has unbound parameters: {names}")
        elif not isinstance(program, str):
            raise JobValidationError(
                "an Azure Quantum program is OpenQASM 2 or 3 text or a qiskit QuantumCircuit, "
                f"not {type(program).__name__}"
            )
        elif not program.strip():
            raise JobValidationError("the program is empty")
        elif (
            len(program) * 4 > MAX_PROGRAM_BYTES
            and len(program.encode("utf-8", "replace")) > MAX_PROGRAM_BYTES
        ):
            raise JobValidationError(f"the program is over the {MAX_PROGRAM_BYTES:,}-byte limit")
        if spec.target is None:
            raise JobValidationError(
                "no target for this job: pass target=... to create_job (e.g. 'ionq.simulator' or "
                "'quantinuum.sim.h2-1e'), or default_target=... to the Sdk"
            )
        if not isinstance(spec.target, str):
            raise JobValidationError(f"target must be a str, not {type(spec.target).__name__}")
        if self._targets and spec.target not in self._targets:
            raise UnknownTargetError(spec.target, sorted(self._targets))
        self._format_for(spec.target)
        limit = self._num_qubits(spec.target)
        if is_circuit(program) and limit is not None and program.num_qubits > limit:
            # a circuit's width is known without parsing; text is measured when it is lowered
            raise JobValidationError(
                f"the circuit uses {program.num_qubits} qubits; {spec.target} has {limit}"
            )
        unknown = set(spec.config) - CONFIG_KEYS
        if unknown:
            raise JobValidationError(
                f"unknown config key(s) {sorted(unknown)} for Azure Quantum; allowed: {sorted(CONFIG_KEYS)}"
            )
        shots = spec.config.get("shots", DEFAULT_SHOTS)
        if isinstance(shots, bool) or not isinstance(shots, int) or not 1 <= shots <= MAX_SHOTS:
            raise JobValidationError(f"shots must be a whole number from 1 to {MAX_SHOTS:,}")
        config: dict[str, Any] = {"shots": shots}
        name = spec.config.get("name")
        if name is not None:
            if not isinstance(name, str) or not name.strip():
                raise JobValidationError("name must be a non-empty string")
            config["name"] = name
        priority = spec.config.get("priority")
        if priority is not None:
            if priority not in PRIORITIES:
                raise JobValidationError(f"priority must be one of {sorted(PRIORITIES)}")
            config["priority"] = priority
        tags = spec.config.get("tags")
        if tags is not None:
            if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
                raise JobValidationError("tags must be a list of strings")
            config["tags"] = list(tags)
        return RunSpec(program=program, target=spec.target, config=config, tag=spec.tag)

    def local_idempotency_key(self, spec: RunSpec) -> str:
        """A fresh GUID: the Azure job id, saved with the job before anything is sent."""
        return str(uuid.uuid4())

    async def submit(self, spec: RunSpec, idempotency_key: str) -> RunRef:
        assert isinstance(spec.target, str)
        job_id = idempotency_key.lower()
        if not _JOB_ID.match(job_id):
            raise JobValidationError(f"an Azure job id is a GUID, not {idempotency_key!r}")
        fmt = self._format_for(spec.target)
        metadata: dict[str, str] = {}
        # CPU work (qiskit) off the event loop; a program the target cannot run is refused here,
        # before anything is sent.
        limits: dict[str, Any] = {"target": spec.target, "max_qubits": self._num_qubits(spec.target)}
        if fmt.provider == "ionq":
            lowered = partial(ionq_program, spec.program, **limits)
            converted = await in_qiskit_thread(lowered)
            payload = json.dumps(converted.payload, separators=(",", ":")).encode()
            metadata = converted.metadata()
        else:
            written = partial(quantinuum_program, spec.program, **limits)
            payload = (await in_qiskit_thread(written)).encode()
        container_sas = await self._sas_uri(f"job-{job_id}")
        if self._create_containers:  # older api-versions: the client creates the container
            await self._create_container(container_sas)
        upload_url, input_uri = _blob_in_container(container_sas, "inputData")
        await self._blob.put(
            upload_url,
            data=payload,
            headers={
                "x-ms-blob-type": "BlockBlob",
                "x-ms-version": STORAGE_VERSION,
                "Content-Type": fmt.content_type,
            },
        )
        shots = int(spec.config.get("shots", DEFAULT_SHOTS))
        body: dict[str, Any] = {
            "id": job_id,
            "name": spec.config.get("name") or spec.tag or "oqc-style-sdk",
            "itemType": "Job",
            "jobType": "QuantumComputing",
            "providerId": fmt.provider,
            "target": spec.target,
            "containerUri": container_sas,
            "inputDataUri": input_uri,
            "inputDataFormat": fmt.input_format,
            "outputDataFormat": fmt.output_format,
            "inputParams": {"shots": shots},
            "metadata": metadata,
        }
        if "priority" in spec.config:
            body["priority"] = spec.config["priority"]
        tags = spec.config.get("tags") or ([spec.tag] if spec.tag else None)
        if tags:
            body["tags"] = list(tags)
        try:
            response = await self._http.put(self._job_path(job_id), params=self._params(), json=body)
            _model(_JobDetails, response.json(), f"PUT job {job_id}")
        except BackendError as exc:
            if exc.status != 409:
                raise
            # The id is ours (a fresh GUID): the job exists because an earlier try created it.
            existing = await self._get_details(job_id)
            if existing.target != spec.target or (existing.provider_id or "").lower() != fmt.provider:
                raise
            logger.info("Azure job %s already existed (an earlier submission created it)", job_id)
        return RunRef(task_id=job_id, extra={"provider": fmt.provider, "target": spec.target})

    async def _create_container(self, container_sas: str) -> None:
        parts = urlsplit(container_sas)
        query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), ("restype", "container")])
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
        try:
            await self._blob.put(url, headers={"x-ms-version": STORAGE_VERSION})
        except BackendError as exc:
            if exc.status != 409:  # 409: it exists already (a resubmission)
                raise

    async def _sas_uri(self, container: str, blob: str | None = None) -> str:
        body: dict[str, str] = {"containerName": container}
        if blob is not None:
            body["blobName"] = blob
        response = await self._http.post(
            f"{self._ws}/storage/sasUri",
            params=self._params(),
            json=body,
            idempotent=True,  # asking for a SAS (and creating a container that exists) changes nothing
        )
        sas: _SasUri = _model(_SasUri, response.json(), "POST storage/sasUri")
        return sas.sas_uri

    # ------------------------------------------------------------------ status
    def _observe(self, details: _JobDetails) -> Observation:
        vendor = details.status
        if not isinstance(vendor, str) or not vendor:
            raise ProtocolError(f"Azure Quantum answered job {details.id} without a status")
        state = AZURE_STATUS.get(vendor)
        if state is None:
            if vendor not in self._undocumented:
                self._undocumented.add(vendor)
                logger.warning(
                    "Azure job %s has an undocumented status %r; the job is kept active", details.id, vendor
                )
            return Observation(JobState.SUBMITTED, vendor)
        ended = _parse_time(details.end_execution_time or details.cancellation_time)
        if state is JobState.COMPLETED:
            self._finished[details.id.lower()] = details
            while len(self._finished) > MAX_FINISHED_CACHE:
                self._finished.popitem(last=False)
            return Observation(state, vendor, ended_at=ended)
        if state is JobState.FAILED:
            error = details.error_data
            message = (error.message if error else None) or "the job failed (Azure gave no error data)"
            return Observation(
                state, vendor, message=message, code=error.code if error else None, ended_at=ended
            )
        if state is JobState.CANCELLED:
            return Observation(state, vendor, ended_at=ended)
        return Observation(state, vendor)

    async def status(self, ref: RunRef) -> Observation:
        return self._observe(await self._get_details(ref.task_id))

    async def statuses(self, refs: Sequence[RunRef]) -> dict[str, Observation | BaseException]:
        """One job: ``GET {ws}/jobs/{id}``. Several: the jobs list filtered by their ids, 50 a request;
        jobs the list did not return are read one by one."""
        if len(refs) <= 1 or not self._list_usable:
            return await super().statuses(refs)
        wanted = {ref.task_id.lower(): ref for ref in refs}
        out: dict[str, Observation | BaseException] = {}
        ids = list(wanted)
        for start in range(0, len(ids), LIST_BATCH):
            chunk = ids[start : start + LIST_BATCH]
            try:
                found = await self._list_jobs(chunk)
            except BackendError as exc:
                if exc.status == 400:
                    self._list_usable = False
                    logger.warning(
                        "Azure Quantum refused the jobs-list filter (%s); jobs are read one by one", exc
                    )
                    break
                for job_id in chunk:
                    out[wanted[job_id].task_id] = exc
                continue
            remaining = set(chunk)
            for item in found:
                job_id = str(item.get("id", "")).lower()
                if job_id not in remaining:
                    continue
                remaining.discard(job_id)
                try:
                    details: _JobDetails = _model(_JobDetails, item, "the jobs list")
                    out[wanted[job_id].task_id] = self._observe(details)
                except ProtocolError as exc:
                    out[wanted[job_id].task_id] = exc
        missing = [ref for ref in refs if ref.task_id not in out]
        if missing:
            out.update(await super().statuses(missing))
        return out

    async def _list_jobs(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        wanted = set(ids)
        query = " or ".join(f"Id eq '{job_id}'" for job_id in ids)
        items: list[dict[str, Any]] = []
        body = (await self._http.get(f"{self._ws}/jobs", params=self._params(filter=query))).json()
        for _page in range(MAX_LIST_PAGES):
            page: _Paged = _model(_Paged, body, "the jobs list")
            items.extend(item for item in page.value if isinstance(item, dict))
            wanted -= {str(item.get("id", "")).lower() for item in page.value if isinstance(item, dict)}
            if not wanted or not page.next_link:
                break
            body = (await self._http.get(self._same_origin(page.next_link))).json()
        return items

    # ------------------------------------------------------------------ finding jobs (_azure_runs.py)
    has_job_list = True

    def check_task_id(self, task_id: str) -> None:
        _azure_runs.check_job_id(task_id, _JOB_ID)

    async def find_run(self, task_id: str) -> FoundRun:
        return await _azure_runs.find_run(self, task_id)

    def list_runs(self, query: RunQuery) -> AsyncIterator[FoundRun]:
        return _azure_runs.list_runs(self, query, AZURE_STATUS)

    def target_unavailable(self, target: str) -> tuple[str, datetime | None] | None:
        """A target (or its provider) Azure lists as ``Unavailable``; ``Degraded`` still runs jobs."""
        listed = self._targets.get(target, {})
        for key in ("status", "provider_status"):
            if str(listed.get(key)).lower() == "unavailable":
                return "Unavailable", None
        return None

    # ------------------------------------------------------------------ cancel
    async def cancel(self, ref: RunRef, reason: str | None = None) -> None:
        """``POST …:cancel`` (200 JobDetails or 204) from api-version 2025-12-01-preview, ``DELETE``
        (204) before it. A 409 (the job already ended) is not an error: the next read says how."""
        path = self._job_path(ref.task_id)
        try:
            if self.cancel_with_post:
                await self._http.post(f"{path}:cancel", params=self._params(), idempotent=True)
            else:
                await self._http.delete(path, params=self._params())
        except BackendError as exc:
            if exc.status != 409:
                raise
            logger.info("Azure job %s could not be cancelled, it has ended: %s", ref.task_id, exc)

    # ------------------------------------------------------------------ results
    async def result(self, ref: RunRef, spec: RunSpec) -> Any:
        job_id = ref.task_id.lower()
        details = self._finished.get(job_id) or await self._get_details(job_id)
        if not details.output_data_uri:
            raise ProtocolError(f"Azure job {job_id} has no outputDataUri")
        url = await self._readable(details.output_data_uri)
        raw = (await self._blob.get(url)).body
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise ProtocolError(f"the output blob of Azure job {job_id} is not JSON") from None
        fmt = details.output_data_format
        if not fmt:
            provider = (
                ref.extra.get("provider") or details.provider_id or provider_of_target(spec.target or "")
            )
            known = PROVIDER_FORMATS.get((provider or "").lower())
            fmt = known.output_format if known is not None else ""
        if fmt == PROVIDER_FORMATS["quantinuum"].output_format:
            data = counts_from_quantinuum(body)
        elif fmt == PROVIDER_FORMATS["ionq"].output_format:
            data = await self._ionq_counts(details, spec, body)
        else:
            raise ProtocolError(f"Azure job {job_id} has output format {fmt!r}, which this SDK does not read")
        self._finished.pop(job_id, None)
        return data

    async def _ionq_counts(self, details: _JobDetails, spec: RunSpec, body: Any) -> dict[str, dict[str, int]]:
        params = details.input_params or {}
        raw_shots = params.get("shots", params.get("count", spec.config.get("shots", DEFAULT_SHOTS)))
        shots = raw_shots if isinstance(raw_shots, int) and not isinstance(raw_shots, bool) else DEFAULT_SHOTS
        metadata = details.metadata or {}
        try:
            meas_map = json.loads(metadata["meas_map"])
            cregs = [(str(name), [int(b) for b in bits]) for name, bits in json.loads(metadata["cregs"])]
            if not isinstance(meas_map, list):
                raise TypeError("meas_map")
        except (KeyError, TypeError, ValueError):
            # Not submitted by this SDK (or metadata lost): read the layout from the program again.
            converted = await in_qiskit_thread(ionq_program, spec.program)
            meas_map, cregs = converted.meas_map, converted.cregs
        return counts_from_ionq(body, shots=shots, meas_map=meas_map, cregs=cregs)

    async def _readable(self, url: str) -> str:
        """``url`` if it carries a SAS valid for 5 more minutes, else a fresh blob SAS URL."""
        expiry = _sas_expiry(url)
        if _has_sas(url) and (expiry is None or expiry - datetime.now(UTC) > SAS_REFRESH_MARGIN):
            return url
        container, blob = _blob_parts(url)
        return await self._sas_uri(container, blob)

    async def diagnostics(self, ref: RunRef, spec: RunSpec) -> Diagnostics:
        details = await self._get_details(ref.task_id)
        timings = {
            "created_at": details.creation_time,
            "started_at": details.begin_execution_time,
            "ended_at": details.end_execution_time,
            "cancelled_at": details.cancellation_time,
        }
        metrics: dict[str, Any] | None = None
        if details.usage or details.cost_estimate or details.quantum_computing_data:
            metrics = {
                "usage": details.usage,
                "cost_estimate": details.cost_estimate,
                "quantum_computing_data": details.quantum_computing_data,
            }
        metadata = {
            "provider": details.provider_id,
            "target": details.target,
            "output_data_format": details.output_data_format,
            "input_params": details.input_params,
            "metadata": details.metadata,
            "api_version": self.api_version,
        }
        return Diagnostics(timings=timings, metrics=metrics, metadata=metadata)
