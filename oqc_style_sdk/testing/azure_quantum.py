"""An emulator of the Azure Quantum workspace data plane, with the blob storage behind its SAS URLs.

See :class:`AzureQuantumEmulator` for every endpoint and every choice made where the service's
behaviour is not documented (``VENDORS.md`` §2 lists what is known; the rest is marked "emulator
choice"). Jobs run on the embedded simulator, so IonQ and Quantinuum targets give real results in
each provider's output format.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final, Literal
from urllib.parse import quote_plus, urlencode, urlsplit

from aiohttp import web
from anyio.abc import TaskGroup

from ..backends.azure_quantum import DOCUMENTED_STATUSES
from ..backends.base import Observation, RunRef, RunSpec
from ..backends.local import MAX_SHOTS, SIMULATOR_TARGET, LocalBackend
from ..exceptions import ConfigurationError, JobValidationError
from ..state import JobState
from .azure_providers import (
    DEFAULT_PROVIDERS,
    EmulatedProvider,
    EmulatedTarget,
    ionq_to_qasm,
    provider_output,
)
from .azure_storage import STORAGE_ACCOUNT, BlobStorage
from .emulator import ApiError, Emulator, duration_option
from .handlers import read_json, same_secret
from .odata import order_key, parse_filter

__all__ = [
    "ACTIVE_STATUSES",
    "CANCEL_WITH_POST_SINCE",
    "DEFAULT_PROVIDERS",
    "DEFAULT_RESOURCE_GROUP",
    "DEFAULT_SUBSCRIPTION_ID",
    "DEFAULT_WORKSPACE",
    "JOB_STATUSES",
    "STORAGE_ACCOUNT",
    "TERMINAL_STATUSES",
    "AzureQuantumEmulator",
    "EmulatedProvider",
    "EmulatedTarget",
    "ReportedStatus",
    "ionq_to_qasm",
    "parse_filter",
]

#: The official examples' workspace (so their parameters replay unchanged).
DEFAULT_SUBSCRIPTION_ID: Final = "00000000-0000-0000-0000-000000000001"
DEFAULT_RESOURCE_GROUP: Final = "my-resource-group"
DEFAULT_WORKSPACE: Final = "my-workspace"

#: Every documented ``JobStatus``.
JOB_STATUSES: Final = DOCUMENTED_STATUSES
TERMINAL_STATUSES: Final = frozenset({"Completed", "Succeeded", "Failed", "Cancelled"})
ACTIVE_STATUSES: Final = frozenset(JOB_STATUSES) - TERMINAL_STATUSES
#: From this api-version on ``POST …:cancel`` exists and ``DELETE`` deletes; before it ``DELETE`` cancels.
CANCEL_WITH_POST_SINCE: Final = date(2025, 12, 1)
#: From this api-version on ``storage/sasUri`` creates a missing container.
SAS_CREATES_CONTAINER_SINCE: Final = date(2026, 1, 15)

_WS: Final = (
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Quantum/workspaces/{workspace}"
)
_JOB_ID = re.compile(r"^[a-fA-F0-9]{8}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{12}$")
_API_VERSION = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(-preview)?$")
#: JobDetails fields a client sets at creation (everything else in a PUT body is read-only: ignored;
#: ``id`` is read-only too, but older clients send it: it must then be the path's).
_CREATE_FIELDS: Final = (
    "id",
    "name",
    "itemType",
    "jobType",
    "sessionId",
    "providerId",
    "target",
    "containerUri",
    "inputDataUri",
    "inputDataFormat",
    "inputParams",
    "outputDataUri",
    "outputDataFormat",
    "metadata",
    "priority",
    "tags",
)
_REQUIRED_FIELDS: Final = ("name", "providerId", "target", "itemType", "containerUri")
#: Every JobDetails field the service answers with, in its order; one without a value is null
#: (as the official examples and azure-quantum's recordings of the live service show).
_DETAILS_FIELDS: Final = (
    *("id", "name", "itemType", "jobType", "sessionId", "providerId", "target", "containerUri"),
    *("inputDataUri", "inputDataFormat", "inputParams", "metadata", "outputDataUri"),
    *("outputDataFormat", "status", "isCancelling", "priority", "tags", "creationTime", "createdBy"),
    *("createdByType", "lastModifiedTime", "lastModifiedBy", "lastModifiedByType", "lastUpdatedTime"),
    *("beginExecutionTime", "endExecutionTime", "cancellationTime", "costEstimate", "errorData"),
    *("quantumComputingData", "usage"),
)
_ERROR_CODES: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    408: "RequestTimeout",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_ENGINE_STATUS: Final[Mapping[JobState, str]] = {
    JobState.CREATED: "Waiting",
    JobState.SUBMITTED: "Waiting",
    JobState.RUNNING: "Executing",
    JobState.COMPLETED: "Succeeded",
    JobState.FAILED: "Failed",
    JobState.CANCELLED: "Cancelled",
}


@dataclass(frozen=True, slots=True)
class ReportedStatus:
    """One job status the emulator sent: by which operation (``create``, ``get``, ``list``,
    ``cancel``), for which job, which status."""

    operation: str
    job_id: str
    status: str


@dataclass(slots=True, eq=False)
class _Job:
    id: str
    request: dict[str, Any]
    provider: EmulatedProvider
    target: str
    output_format: str
    output_uri: str
    created_by_type: str
    creation_time: datetime
    #: The last change a client made (creation, a cancel request): ``lastModifiedTime``.
    modified: datetime
    since: float
    shots: int
    output_blob: tuple[str, str] | None = None
    kind: Literal["ionq", "quantinuum"] | None = None
    zero_results: bool = False
    spec: RunSpec | None = None
    ref: RunRef | None = None
    #: errorData of an input the provider refuses: the job fails once ``job_duration_s`` has passed.
    rejection: dict[str, str] | None = None
    forced: str | None = None
    forced_error: dict[str, str] | None = None
    cancel_requested: bool = False
    cancel_reads: int = 0
    begin: datetime | None = None
    end: datetime | None = None
    cancelled_at: datetime | None = None
    last_status: str | None = None
    last_updated: datetime | None = None
    output_written: bool = False
    deleted: bool = False


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _azure_time(moment: datetime) -> str:
    """``2020-09-30T23:57:02.3737928+00:00``: seven fractional digits, as the service writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0+00:00"


def _error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, message, headers={"x-ms-error-code": code})


def _not_json(_: ValueError) -> ApiError:
    return _error(400, "InvalidRequestContent", "The request body is not valid JSON.")


# --------------------------------------------------------------------------------------------------
# The emulator


class AzureQuantumEmulator(Emulator):
    """The Azure Quantum workspace data plane (api-version ``2026-01-15-preview`` and older) on
    127.0.0.1, with an emulated blob service for its SAS URLs; jobs run on the embedded simulator.

    :param subscription_id, resource_group, workspace: the one workspace served (default: the
        official examples' ``00000000-0000-0000-0000-000000000001`` / ``my-resource-group`` /
        ``my-workspace``, so the examples replay unchanged); another workspace path → 404
        ``WorkspaceNotFound``.
    :param token: the bearer token accepted in ``Authorization`` (default random).
    :param api_key: the key accepted in ``x-ms-quantum-api-key`` (default random).
    :param principal: ``createdBy`` of jobs created with the token (default ``user1@example.com``).
    :param providers: the providers and targets (default :data:`DEFAULT_PROVIDERS`: IonQ and
        Quantinuum, which run, and ``microsoft-qc``, whose jobs are accepted then fail).
    :param cancel_progression: statuses a job reports after a cancel request before
        ``Cancelled``, one per read (default none: ``Cancelled`` at once, as the official example).
        E.g. ``("CancellationRequested", "Cancelling")``.
    :param cancel_response: ``"details"`` (default): ``POST …:cancel`` answers 200 JobDetails, as
        the spec says; ``"no_content"``: 204, as azure-quantum says the live service does.
    :param page_size: the most jobs one list page holds (more → ``nextLink``).
    :param sas_ttl_s: how long SAS URLs it hands out stay valid (default one day; wall clock).
    :param max_concurrency, seed: the simulator's.
    Other keyword options (``job_duration_s``, ``latency_s``, ``max_lifetime_s``, ``clock``,
    ``port`` ...) are the kit's.

    Authentication
        Every workspace request needs ``Authorization: Bearer <token>`` or
        ``x-ms-quantum-api-key: <api_key>``; missing or wrong → 401 ``Unauthorized``. Blob
        requests are authorized by their SAS alone (below).

    Errors
        ``{"error": {"code", "message"}}`` with the code also in ``x-ms-error-code`` (the spec's
        ``Azure.Core.Foundations.ErrorResponse``); codes are emulator choices where the service's
        are unknown. Every request needs ``api-version`` (missing → 400
        ``MissingApiVersionParameter``, not ``YYYY-MM-DD[-preview]`` → 400
        ``InvalidApiVersionParameter``).

    Workspace endpoints (under :attr:`workspace_path`, ``/subscriptions/{s}/resourceGroups/{g}/
    providers/Microsoft.Quantum/workspaces/{w}``)
        ``POST /storage/sasUri`` ``{"containerName", "blobName"?}`` → 200 ``{"sasUri"}``: a
        container SAS URL (``sr=c``), or a blob one (``sr=b``) when ``blobName`` is given, with
        ``sp=rcw``. From api-version 2026-01-15-preview the container is created if missing; before
        it the client creates it (``PUT {container}?restype=container``).
        ``PUT /jobs/{jobId}`` JobDetails → 200 JobDetails (status ``Waiting``; 200, not 201, as
        the live service answers). Required: ``name``, ``providerId``, ``target``, ``itemType``
        (``Job``), ``containerUri``; ``id`` is read-only (azure-quantum does not send it; if sent
        it must be the path's); an unknown provider or target, an input format the provider
        does not take or an output format it does not give → 400. Other read-only fields in the
        body are ignored. The same id again with the same create-time fields (URIs compared without their
        SAS query) → 200 with the existing job, nothing new is run: a create retried after a lost
        answer makes one job. Different fields → 409 ``JobAlreadyExists`` (emulator choice).
        ``outputDataUri`` defaults to the container's ``rawOutputData`` blob with the container's
        SAS, ``outputDataFormat`` to the provider's. The input is read from ``inputDataUri`` (else
        the container's ``inputData``); input the provider cannot run (a missing blob, bad IonQ
        JSON, bad ``inputParams.shots``/``count``, a provider not emulated) is accepted, and the
        job then fails (``errorData`` ``InvalidInputData`` / ``UnsupportedProvider``) once
        ``job_duration_s`` has passed.
        ``GET /jobs/{jobId}`` → 200 JobDetails; unknown → 404 ``JobNotFound``.
        ``GET /jobs?filter&skip&top&orderby`` → ``{"value": [JobDetails], "nextLink"?}``, oldest
        first unless ordered; at most ``page_size`` a page; ``top`` caps the total. ``filter`` is
        an OData subset (:func:`parse_filter`), ``orderby`` ``Field [asc|desc], ...``: both
        emulator choices (the grammar is undocumented); a bad one → 400 ``InvalidFilter``.
        ``POST /jobs/{jobId}:cancel`` (api-version ≥ 2025-12-01-preview; older → 400
        ``UnsupportedApiVersion``) → 200 JobDetails (or 204, ``cancel_response``); the job walks
        ``cancel_progression`` then ends ``Cancelled`` (its run stops at once). An ended job → 409
        ``InvalidJobState`` (undocumented: emulator choice). Cancelling again changes nothing.
        ``DELETE /jobs/{jobId}`` → 204: before 2025-12-01-preview it is the cancellation (as
        above, 409 for an ended job); from it on it deletes the job (its run stops; reads → 404).
        ``GET /providerStatus`` → ``{"value": [ProviderStatus]}``.
        JobDetails carry every field the service sends, a field without a value as null (the
        official examples and the live service's recordings do; the spec's schema does not say
        so): the create-time fields as sent, ``status``, ``isCancelling``, ``priority``
        (``Standard`` unless set), ``tags`` (``[]``), ``creationTime``, ``createdBy``/
        ``createdByType`` (``User`` with a token, ``Key`` with the API key), ``lastModified*``
        (creation or the cancel request), ``lastUpdatedTime``, ``beginExecutionTime``/
        ``endExecutionTime``/``cancellationTime`` once known, ``errorData`` when Failed,
        ``quantumComputingData`` ``{"count": 1}`` once succeeded.

    Statuses
        ``Waiting`` (queued in the simulator) → ``Executing`` → ``Succeeded`` | ``Failed``;
        ``Cancelled`` after a cancel (through ``cancel_progression``). Every documented status
        (and, with ``undocumented=True``, any other) can be forced with :meth:`set_status`.

    Outputs
        When a run succeeds the provider's output is written to the job's ``outputDataUri`` blob:
        IonQ ``{"histogram": {"<state>": probability}}`` (the state's bit q is qubit q; the
        probabilities are the sampled frequencies, so ``probability × shots`` gives the counts back);
        Quantinuum ``{"<register>": ["<bits>", ...]}``, one bitstring per shot, highest bit first.
        The simulator returns counts per register, so the per-shot lists of different registers are
        paired arbitrarily (only per-register counts are meaningful). Quantinuum's syntax checkers
        (targets ending ``sc``) return all zeros, as the real ones do.

    Blob storage (``{base_url}/devstoreaccount1/{container}/{blob}``, path style)
        :class:`~oqc_style_sdk.testing.azure_storage.BlobStorage` (:attr:`storage`): every request
        authorized by a SAS signed by the emulator, Azure Storage's XML errors.

    Knobs (besides the kit's)
        ``await set_status(job_id, status, error_code=..., error_message=...)`` (None: back to the
        simulator's status; a forced Failed/Cancelled stops the run, a forced success lets it
        finish and write its output); ``await status_of(job_id)`` (reads without advancing a
        cancel); ``reported``: every status sent, as :class:`ReportedStatus`; ``engine_runs``;
        ``job_ids``; ``blob(container, name)``; ``token``, ``api_key``, ``connection_string``,
        ``credentials``, ``env``.
    """

    vendor = "azure_quantum"

    def __init__(
        self,
        *,
        subscription_id: str = DEFAULT_SUBSCRIPTION_ID,
        resource_group: str = DEFAULT_RESOURCE_GROUP,
        workspace: str = DEFAULT_WORKSPACE,
        token: str | None = None,
        api_key: str | None = None,
        principal: str = "user1@example.com",
        providers: Sequence[EmulatedProvider] | None = None,
        cancel_progression: Sequence[str] = (),
        cancel_response: Literal["details", "no_content"] = "details",
        page_size: int = 100,
        sas_ttl_s: float = 24 * 3600.0,
        max_concurrency: int | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.workspace = workspace
        self.token = token if token is not None else secrets.token_urlsafe(32)
        self.api_key = api_key if api_key is not None else secrets.token_urlsafe(24)
        for label, value in (("token", self.token), ("api_key", self.api_key)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{label} must be a non-empty str")
        self.principal = principal
        self.providers: tuple[EmulatedProvider, ...] = tuple(
            DEFAULT_PROVIDERS if providers is None else providers
        )
        if not self.providers:
            raise ConfigurationError("an Azure Quantum emulator needs at least one provider")
        progression = tuple(cancel_progression)
        if not all(status in ACTIVE_STATUSES for status in progression):
            raise ConfigurationError(f"cancel_progression holds active statuses only, got {progression!r}")
        self.cancel_progression = progression
        if cancel_response not in ("details", "no_content"):
            raise ConfigurationError("cancel_response is 'details' or 'no_content'")
        self.cancel_response: Literal["details", "no_content"] = cancel_response
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ConfigurationError(f"page_size must be a positive int, got {page_size!r}")
        self.page_size = page_size
        self._secrets: tuple[str, ...] = ()
        self._output_owner: dict[tuple[str, str], _Job] = {}
        self.storage = BlobStorage(
            account_url=lambda: self.storage_url,
            sas_ttl_s=duration_option("sas_ttl_s", sas_ttl_s, positive=True),
            before_read=self._output_before_read,
        )
        self._jobs: dict[str, _Job] = {}
        self._engine = LocalBackend(max_concurrency=max_concurrency, seed=seed)
        #: How many runs were handed to the simulator (a retried create adds none).
        self.engine_runs = 0
        #: Every job status sent, in order.
        self.reported: list[ReportedStatus] = []
        super().__init__(**options)

    # -- what clients need ----------------------------------------------------------------------

    @property
    def workspace_path(self) -> str:
        """``/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.Quantum/workspaces/{w}``."""
        return _WS.format(
            subscription=self.subscription_id, group=self.resource_group, workspace=self.workspace
        )

    @property
    def storage_url(self) -> str:
        """The emulated storage account's URL (``{base_url}/devstoreaccount1``)."""
        return f"{self.base_url}/{STORAGE_ACCOUNT}"

    @property
    def credentials(self) -> dict[str, str]:
        """The keyword settings of ``AzureQuantumBackend`` (bearer token)."""
        return {
            "endpoint": self.base_url,
            "subscription_id": self.subscription_id,
            "resource_group": self.resource_group,
            "workspace": self.workspace,
            "access_token": self.token,
        }

    @property
    def connection_string(self) -> str:
        """The workspace's connection string, as the portal shows it (with the API key)."""
        return (
            f"SubscriptionId={self.subscription_id};ResourceGroupName={self.resource_group};"
            f"WorkspaceName={self.workspace};ApiKey={self.api_key};QuantumEndpoint={self.base_url}/;"
        )

    @property
    def env(self) -> dict[str, str]:
        """The environment ``Sdk("azure_quantum")`` reads (it uses the bearer token when one is
        set), with the API key too: azure-core sends bearer tokens over https only, so clients
        built on it authenticate to the emulator's plain http with the key."""
        return {
            "AZURE_QUANTUM_ENDPOINT": self.base_url,
            "AZURE_QUANTUM_SUBSCRIPTION_ID": self.subscription_id,
            "AZURE_QUANTUM_RESOURCE_GROUP": self.resource_group,
            "AZURE_QUANTUM_WORKSPACE": self.workspace,
            "AZURE_QUANTUM_ACCESS_TOKEN": self.token,
            "AZURE_QUANTUM_API_KEY": self.api_key,
        }

    def secrets(self) -> tuple[str, ...]:
        """The token, the API key and every SAS signature handed out (as sent and URL-encoded)."""
        signatures = self.storage.signatures
        if len(self._secrets) != 2 + 2 * len(signatures):
            self._secrets = (self.token, self.api_key, *signatures, *(quote_plus(s) for s in signatures))
        return self._secrets

    @property
    def job_ids(self) -> list[str]:
        """Every job id created (deleted ones included), oldest first."""
        return list(self._jobs)

    def blob(self, container: str, name: str) -> bytes | None:
        """A stored blob's bytes, or None."""
        return self.storage.blob(container, name)

    # -- kit hooks ------------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        ws = _WS
        router = app.router
        router.add_post(ws + "/storage/sasUri", self._sas_uri)
        router.add_get(ws + "/providerStatus", self._provider_status)
        router.add_get(ws + "/jobs", self._list_jobs)
        router.add_put(ws + "/jobs/{job_id:[^/:]+}", self._create_job)
        router.add_get(ws + "/jobs/{job_id:[^/:]+}", self._get_job)
        router.add_delete(ws + "/jobs/{job_id:[^/:]+}", self._delete_job)
        router.add_post(ws + "/jobs/{job_id:[^/:]+}:cancel", self._cancel_job)
        self.storage.add_routes(router)

    async def on_start(self, task_group: TaskGroup) -> None:
        await self._engine.start(task_group)

    async def on_stop(self) -> None:
        await self._engine.aclose()

    def is_authorized(self, request: web.Request) -> bool:
        if request.path.startswith(f"/{STORAGE_ACCOUNT}/"):
            return True  # the SAS decides, in the handler
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            return scheme.lower() == "bearer" and same_secret(token.strip(), self.token)
        key = request.headers.get("x-ms-quantum-api-key")
        return key is not None and same_secret(key, self.api_key)

    def unauthorized_response(self, request: web.Request) -> web.StreamResponse:
        return self.error_response(
            401,
            "Authentication failed: send a valid 'Authorization: Bearer <token>' or "
            "'x-ms-quantum-api-key' header.",
            headers={"x-ms-error-code": "Unauthorized", "WWW-Authenticate": 'Bearer realm="quantum"'},
        )

    def error_response(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        out = dict(headers or {})
        code = out.get("x-ms-error-code") or _ERROR_CODES.get(status, f"Http{status}")
        out["x-ms-error-code"] = code
        return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=out)

    # -- knobs ----------------------------------------------------------------------------------

    async def set_status(
        self,
        job_id: str,
        status: str | None,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        undocumented: bool = False,
    ) -> None:
        """Report ``status`` for the job from now on (None: the simulator's own status again).

        ``status`` must be a documented JobStatus unless ``undocumented=True``. A forced Failed
        (with ``errorData`` from ``error_code``/``error_message``) or Cancelled stops the run.
        """
        job = self._job_or_key_error(job_id)
        if status is not None:
            if not isinstance(status, str) or not status:
                raise ConfigurationError("status must be a non-empty str or None")
            if status not in JOB_STATUSES and not undocumented:
                raise ConfigurationError(
                    f"status must be one of {', '.join(JOB_STATUSES)} (or pass undocumented=True), "
                    f"got {status!r}"
                )
        job.forced = status
        job.forced_error = None
        if status == "Failed":
            job.forced_error = {
                "code": error_code or "JobFailed",
                "message": error_message or "The job failed (forced by the emulator).",
            }
        if status in ("Failed", "Cancelled") and job.ref is not None:
            await self._engine.cancel(job.ref, reason=f"the emulator set the job {status}")
        if status is not None:
            self._touch(job, status)

    async def status_of(self, job_id: str) -> str:
        """The job's status as a client would read it now (without advancing a cancel)."""
        status, _ = await self._status(self._job_or_key_error(job_id), read=False)
        return status

    def _job_or_key_error(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id.lower())
        if job is None:
            raise KeyError(f"the Azure Quantum emulator has no job {job_id!r}")
        return job

    # -- request helpers ------------------------------------------------------------------------

    def _api(self, request: web.Request) -> date:
        """The request's api-version as a date (400 if missing or malformed)."""
        raw = request.query.get("api-version")
        if raw is None:
            raise _error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        match = _API_VERSION.match(raw)
        try:
            if match is None:
                raise ValueError(raw)
            return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            raise _error(400, "InvalidApiVersionParameter", f"The api-version '{raw}' is invalid.") from None

    def _workspace(self, request: web.Request) -> date:
        """Check the api-version and that the path names the emulated workspace."""
        api = self._api(request)
        info = request.match_info
        if (
            info["subscription"].lower() != self.subscription_id.lower()
            or info["group"].lower() != self.resource_group.lower()
            or info["workspace"].lower() != self.workspace.lower()
        ):
            raise _error(
                404,
                "WorkspaceNotFound",
                f"Workspace '{info['workspace']}' was not found in resource group '{info['group']}' "
                f"of subscription '{info['subscription']}'.",
            )
        return api

    def _job(self, request: web.Request) -> _Job:
        job_id = request.match_info["job_id"]
        if not _JOB_ID.match(job_id):
            raise _error(400, "InvalidJobId", f"The job id '{job_id}' is not a GUID.")
        job = self._jobs.get(job_id.lower())
        if job is None or job.deleted:
            raise _error(404, "JobNotFound", f"Job '{job_id}' was not found.")
        return job

    def _provider(self, provider_id: str) -> EmulatedProvider | None:
        for provider in self.providers:
            if provider.id.lower() == provider_id.lower():
                return provider
        return None

    # -- workspace: storage and providers -------------------------------------------------------

    async def _sas_uri(self, request: web.Request) -> web.Response:
        api = self._workspace(request)
        body = await read_json(request, _not_json)
        container = body.get("containerName") if isinstance(body, dict) else None
        blob = body.get("blobName") if isinstance(body, dict) else None
        if (
            not isinstance(container, str)
            or not container
            or (blob is not None and not isinstance(blob, str))
        ):
            raise _error(
                400, "InvalidBlobDetails", "containerName (a string) is required; blobName is a string."
            )
        if not blob and api >= SAS_CREATES_CONTAINER_SINCE:
            self.storage.ensure_container(container)
        return web.json_response({"sasUri": self.storage.sas_url(container, blob or None)})

    async def _provider_status(self, request: web.Request) -> web.Response:
        self._workspace(request)
        value = []
        for provider in self.providers:
            targets = []
            for target in provider.targets:
                item: dict[str, Any] = {
                    "id": target.id,
                    "currentAvailability": target.availability,
                    "averageQueueTime": target.average_queue_time,
                    "numQubits": target.num_qubits,
                }
                if target.target_profile is not None:
                    item["targetProfile"] = target.target_profile
                targets.append(item)
            value.append(
                {"id": provider.id, "currentAvailability": provider.availability, "targets": targets}
            )
        return web.json_response({"value": value})

    # -- workspace: jobs ------------------------------------------------------------------------

    async def _create_job(self, request: web.Request) -> web.Response:
        self._workspace(request)
        job_id = request.match_info["job_id"]
        if not _JOB_ID.match(job_id):
            raise _error(400, "InvalidJobId", f"The job id '{job_id}' is not a GUID.")
        body = await read_json(request, _not_json)
        if not isinstance(body, dict):
            raise _error(400, "InvalidJobDefinition", "The body must be a JobDetails object.")
        fields = {key: body[key] for key in _CREATE_FIELDS if key in body and body[key] is not None}
        given_id = fields.pop("id", None)  # read-only in the spec: azure-quantum 3.x never sends it
        if given_id is not None and (not isinstance(given_id, str) or given_id.lower() != job_id.lower()):
            raise _error(400, "InvalidJobId", f"The body's id '{given_id}' is not the path's '{job_id}'.")
        missing = [key for key in _REQUIRED_FIELDS if key not in fields]
        if missing:
            raise _error(400, "InvalidJobDefinition", f"JobDetails is missing {', '.join(missing)}.")
        for key in _REQUIRED_FIELDS:
            if not isinstance(fields[key], str) or not fields[key]:
                raise _error(400, "InvalidJobDefinition", f"{key} must be a non-empty string.")
        if "tags" in fields and (
            not isinstance(fields["tags"], list) or not all(isinstance(t, str) for t in fields["tags"])
        ):
            raise _error(400, "InvalidJobDefinition", "tags must be a list of strings.")
        if fields["itemType"] != "Job":
            raise _error(400, "InvalidJobDefinition", "itemType must be 'Job'.")
        for key in ("inputParams", "metadata"):
            if key in fields and not isinstance(fields[key], dict):
                raise _error(400, "InvalidJobDefinition", f"{key} must be an object.")
        if "priority" in fields and fields["priority"] not in ("Standard", "High"):
            raise _error(400, "InvalidJobDefinition", "priority must be 'Standard' or 'High'.")
        provider = self._provider(fields["providerId"])
        if provider is None:
            raise _error(
                400, "InvalidProvider", f"Provider '{fields['providerId']}' is not in this workspace."
            )
        target = next((t for t in provider.targets if t.id.lower() == fields["target"].lower()), None)
        if target is None:
            raise _error(
                400, "InvalidTarget", f"Target '{fields['target']}' is not offered by '{provider.id}'."
            )
        if fields.get("inputDataFormat", provider.input_formats[0]) not in provider.input_formats:
            raise _error(
                400,
                "InvalidInputDataFormat",
                f"'{provider.id}' takes {', '.join(provider.input_formats)}, "
                f"not '{fields['inputDataFormat']}'.",
            )
        if fields.get("outputDataFormat", provider.output_format) != provider.output_format:
            raise _error(
                400,
                "InvalidOutputDataFormat",
                f"'{provider.id}' gives {provider.output_format}, not '{fields['outputDataFormat']}'.",
            )
        key = job_id.lower()
        existing = self._jobs.get(key)
        if existing is not None:
            if existing.deleted or _comparable(existing.request) != _comparable(fields):
                raise _error(409, "JobAlreadyExists", f"A different job with id '{job_id}' already exists.")
            return web.json_response(await self._details(existing, "create"), status=200)
        job = self._new_job(key, fields, provider, target, request)
        self._jobs[key] = job
        if job.output_blob is not None:
            self._output_owner[job.output_blob] = job
        await self._start_job(job, target)
        return web.json_response(await self._details(job, "create"))

    def _new_job(
        self,
        key: str,
        fields: dict[str, Any],
        provider: EmulatedProvider,
        target: EmulatedTarget,
        request: web.Request,
    ) -> _Job:
        container_uri = str(fields["containerUri"])
        output_uri = fields.get("outputDataUri")
        if not isinstance(output_uri, str) or not output_uri:
            parts = urlsplit(container_uri)
            base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/rawOutputData"
            output_uri = f"{base}?{parts.query}" if parts.query else base
        by_key = "x-ms-quantum-api-key" in request.headers and "Authorization" not in request.headers
        now = _utcnow()
        params = fields.get("inputParams") or {}
        shots = params.get("shots", params.get("count", 100))
        job = _Job(
            id=key,
            request=fields,
            provider=provider,
            target=target.id,
            output_format=provider.output_format,
            output_uri=output_uri,
            created_by_type="Key" if by_key else "User",
            creation_time=now,
            modified=now,
            since=self.clock(),
            shots=shots if isinstance(shots, int) and not isinstance(shots, bool) else -1,
            output_blob=self.storage.locate(output_uri),
            kind=provider.runs,
            zero_results=provider.runs == "quantinuum" and target.id.endswith("sc"),
        )
        self._touch(job, "Waiting")
        return job

    async def _start_job(self, job: _Job, target: EmulatedTarget) -> None:
        """Read the input and hand the job to the simulator, or mark it to fail as the provider would."""
        if job.kind is None:
            job.rejection = {
                "code": "UnsupportedProvider",
                "message": f"The emulator does not run '{job.provider.id}' jobs.",
            }
            return
        if not 1 <= job.shots <= MAX_SHOTS:
            job.rejection = {
                "code": "InvalidInputData",
                "message": f"inputParams.shots (or count) must be an integer from 1 to {MAX_SHOTS}.",
            }
            return
        location = self._input_location(job)
        data = None if location is None else self.blob(*location)
        if data is None:
            job.rejection = {"code": "InvalidInputData", "message": "The input blob was not found."}
            return
        try:
            if job.kind == "ionq":
                program, _ = ionq_to_qasm(json.loads(data), max_qubits=target.num_qubits)
            else:
                program = data.decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            job.rejection = {"code": "InvalidInputData", "message": f"The input is not valid: {exc}"}
            return
        spec = RunSpec(
            program=program,
            target=SIMULATOR_TARGET,
            config={"shots": job.shots, "min_duration_s": self.job_duration_s},
            tag=job.id,
        )
        try:
            spec = self._engine.validate(spec)
        except JobValidationError as exc:
            job.rejection = {"code": "InvalidInputData", "message": str(exc)}
            return
        job.spec = spec
        job.ref = await self._engine.submit(spec, job.id)
        self.engine_runs += 1

    def _input_location(self, job: _Job) -> tuple[str, str] | None:
        given = job.request.get("inputDataUri")
        if isinstance(given, str) and given:
            return self.storage.locate(given)
        parts = urlsplit(str(job.request["containerUri"]))
        return self.storage.locate(f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/inputData")

    async def _get_job(self, request: web.Request) -> web.Response:
        self._workspace(request)
        return web.json_response(await self._details(self._job(request), "get"))

    async def _list_jobs(self, request: web.Request) -> web.Response:
        self._workspace(request)
        query = request.query
        try:
            predicate = parse_filter(query["filter"]) if query.get("filter", "").strip() else None
            order = order_key(query["orderby"]) if query.get("orderby", "").strip() else []
            skip = int(query.get("skip", "0"))
            top = int(query["top"]) if "top" in query else None
            if skip < 0 or (top is not None and top < 1):
                raise ValueError("skip must be >= 0 and top >= 1")
        except ValueError as exc:
            raise _error(400, "InvalidFilter", f"The query is not valid: {exc}") from None
        records: list[tuple[dict[str, Any], _Job]] = []
        for job in list(self._jobs.values()):
            if job.deleted:
                continue
            status, _ = await self._status(job, read=False)
            record = {
                "id": job.id,
                "name": job.request.get("name"),
                "providerid": job.provider.id,
                "target": job.target,
                "status": status,
                "itemtype": "Job",
                "jobtype": job.request.get("jobType"),
                "sessionid": job.request.get("sessionId"),
                "creationtime": job.creation_time,
            }
            try:
                if predicate is None or predicate(record):
                    records.append((record, job))
            except ValueError as exc:
                raise _error(400, "InvalidFilter", f"The filter is not valid: {exc}") from None
        for key, descending in reversed(order):

            def sort_key(pair: tuple[dict[str, Any], _Job], k: str = key) -> tuple[bool, str]:
                return pair[0].get(k) is None, str(pair[0].get(k) or "")

            records.sort(key=sort_key, reverse=descending)
        window = records[skip:] if top is None else records[skip : skip + top]
        page = window[: self.page_size]
        value = [await self._details(job, "list") for _, job in page]
        answer: dict[str, Any] = {"value": value}
        if len(window) > len(page):
            params = [(k, v) for k, v in query.items() if k not in ("skip", "top")]
            params.append(("skip", str(skip + len(page))))
            if top is not None:
                params.append(("top", str(top - len(page))))
            answer["nextLink"] = f"{self.base_url}{request.path}?{urlencode(params)}"
        return web.json_response(answer)

    async def _cancel_job(self, request: web.Request) -> web.Response:
        api = self._workspace(request)
        if api < CANCEL_WITH_POST_SINCE:
            raise _error(
                400,
                "UnsupportedApiVersion",
                f"Jobs_Cancel is not available in api-version {request.query['api-version']}; "
                "cancel with DELETE in versions before 2025-12-01-preview.",
            )
        job = self._job(request)
        await self._cancel(job)
        if self.cancel_response == "no_content":
            return web.Response(status=204)
        return web.json_response(await self._details(job, "cancel", read=False))

    async def _delete_job(self, request: web.Request) -> web.Response:
        api = self._workspace(request)
        job = self._job(request)
        if api < CANCEL_WITH_POST_SINCE:
            await self._cancel(job)
        else:
            if job.ref is not None:
                await self._engine.cancel(job.ref, reason="the job was deleted")
            job.deleted = True
        return web.Response(status=204)

    async def _cancel(self, job: _Job) -> None:
        if job.cancel_requested:
            return
        status, _ = await self._status(job, read=False)
        if status in TERMINAL_STATUSES:
            raise _error(
                409, "InvalidJobState", f"Job '{job.id}' is {status}; only an active job can be cancelled."
            )
        job.cancel_requested = True
        job.modified = _utcnow()
        job.forced = None
        if job.ref is not None:
            await self._engine.cancel(job.ref, reason="cancelled through the Azure Quantum API")
        self._touch(job, self.cancel_progression[0] if self.cancel_progression else "Cancelled")

    # -- job state ------------------------------------------------------------------------------

    def _touch(self, job: _Job, status: str) -> None:
        now = _utcnow()
        if status != job.last_status:
            job.last_status = status
            job.last_updated = now
        if status in ("Executing", "Finishing") and job.begin is None:
            job.begin = now
        if status in TERMINAL_STATUSES and job.end is None:
            job.end = now
        if status == "Cancelled" and job.cancelled_at is None:
            job.cancelled_at = now

    async def _status(self, job: _Job, *, read: bool) -> tuple[str, dict[str, str] | None]:
        """(status, errorData) now; ``read`` advances a cancel in progress by one step."""
        observation: Observation | None = None
        if job.ref is not None:
            observation = await self._engine.status(job.ref)
            if observation.state is JobState.COMPLETED and not job.output_written:
                await self._write_output(job)
        error: dict[str, str] | None = None
        if job.forced is not None:
            status = job.forced
            error = job.forced_error if status == "Failed" else None
        elif job.cancel_requested:
            steps = self.cancel_progression
            status = steps[job.cancel_reads] if job.cancel_reads < len(steps) else "Cancelled"
            if read and job.cancel_reads < len(steps):
                job.cancel_reads += 1
        elif job.rejection is not None:
            if self.clock() - job.since >= self.job_duration_s:
                status, error = "Failed", dict(job.rejection)
            else:
                status = "Waiting"
        elif observation is None:
            status = "Waiting"
        else:
            status = _ENGINE_STATUS[observation.state]
            if observation.state is JobState.FAILED:
                code = "InvalidInputData" if observation.code == "PARSE_ERROR" else "ExecutionFailed"
                error = {"code": code, "message": observation.message or "The job failed."}
        if job.begin is None and status in ("Succeeded", "Completed", "Failed") and job.ref is not None:
            job.begin = _utcnow()  # it ran between two reads
        self._touch(job, status)
        return status, error

    async def _write_output(self, job: _Job) -> None:
        assert job.ref is not None
        assert job.spec is not None
        counts: Mapping[str, Mapping[str, int]] = await self._engine.result(job.ref, job.spec)
        assert job.kind is not None
        output = provider_output(job.kind, counts, job.shots, zero_results=job.zero_results)
        job.output_written = True
        if job.output_blob is not None:
            container, name = job.output_blob
            self.storage.write(
                container, name, json.dumps(output, separators=(",", ":")).encode(), "application/json"
            )

    async def _output_before_read(self, container: str, name: str) -> None:
        """A run that ended unseen: read its status first, so its output is written."""
        owner = self._output_owner.get((container, name))
        if owner is not None and not owner.output_written:
            await self._status(owner, read=False)

    async def _details(self, job: _Job, operation: str, *, read: bool = True) -> dict[str, Any]:
        status, error = await self._status(job, read=read)
        self.reported.append(ReportedStatus(operation, job.id, status))
        if len(self.reported) > self.max_log:
            del self.reported[: len(self.reported) - self.max_log]
        details: dict[str, Any] = dict.fromkeys(_DETAILS_FIELDS)
        details.update(job.request)
        by = self.principal if job.created_by_type == "User" else "api-key"
        details.update(
            id=job.id,
            tags=job.request.get("tags", []),
            priority=job.request.get("priority", "Standard"),
            outputDataUri=job.output_uri,
            outputDataFormat=job.output_format,
            status=status,
            isCancelling=job.cancel_requested and status not in TERMINAL_STATUSES,
            creationTime=_azure_time(job.creation_time),
            createdBy=by,
            createdByType=job.created_by_type,
            lastModifiedTime=_azure_time(job.modified),
            lastModifiedBy=by,
            lastModifiedByType=job.created_by_type,
            lastUpdatedTime=_azure_time(job.last_updated or job.creation_time),
            errorData=error,
        )
        if job.ref is not None and status in ("Succeeded", "Completed"):
            details["quantumComputingData"] = {"count": 1}
        if job.begin is not None:
            details["beginExecutionTime"] = _azure_time(job.begin)
        if status in TERMINAL_STATUSES and job.end is not None:
            details["endExecutionTime"] = _azure_time(job.end)
        if status == "Cancelled" and job.cancelled_at is not None:
            details["cancellationTime"] = _azure_time(job.cancelled_at)
        return details


def _comparable(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Create-time fields for the idempotency check: URIs without their SAS query, ids lower-cased."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key in ("containerUri", "inputDataUri", "outputDataUri") and isinstance(value, str):
            parts = urlsplit(value)
            value = f"{parts.scheme}://{parts.netloc}{parts.path}"
        elif key in ("id", "providerId", "target") and isinstance(value, str):
            value = value.lower()
        out[key] = value
    return out
