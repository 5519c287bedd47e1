"""``oqcs``: run, watch and cancel jobs from a terminal; serve vendor emulators.

```
oqcs demo                                   the tour of `make demo`
oqcs run bell.qasm [--backend oqc] [--target ID] [--shots N] [--save job.json] [--json]
oqcs run spec.json --backend databricks     JSON programs: Databricks run specs, Windmill scripts
oqcs submit bell.qasm --save job.json       send without waiting (not on local: its runs die with oqcs)
oqcs status|wait|result|cancel job.json     a job file remembers its backend
oqcs status|wait|result|cancel TASK_ID --backend oqc
oqcs jobs [--state S] [--since T] [--target ID] [--tag TAG] [--limit N] [--json]
oqcs attach TASK_ID [--save job.json]       follow a job made elsewhere (another tool, the web page)
oqcs targets [--backend oqc] [--json]
oqcs emulate oqc [--port N] [--job-duration S]
oqcs workflow run seed.arazzo.yaml [--workflow ID] --input k=v ... [--server NAME=URL]
```

Backend settings come from a config file (``--config``, ``$OQCS_CONFIG`` or ``~/.config/oqcs/config.toml``,
see :mod:`oqc_style_sdk.cli_config`) and the environment (``OQC_URL``, ``OQC_AUTHENTICATION_TOKEN`` ...),
as the backends document. ``run`` and ``wait`` show live progress on a terminal (not with ``--json`` or
``--quiet``). Exit codes: 0 the job completed (or the command succeeded), 1 the job failed,
2 bad usage or input, 3 the job was cancelled, 4 a deadline passed, 5 the backend or the network
failed, 130 interrupted (an interrupted ``run`` or ``wait`` prints how to resume or cancel the job).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn

import anyio

from .arazzo.cli import add_workflow_parser, run_workflow_command
from .cli_config import load_config, read_program
from .client import Sdk
from .composite import CompositeJob
from .exceptions import (
    BackendError,
    ConfigurationError,
    ForeignJobFileError,
    JobNotFoundError,
    JobTimeoutError,
    JobValidationError,
    PersistenceError,
    SdkError,
)
from .job import Job
from .job_output import JobCancellation, JobError, JobOutput, JobResult
from .state import JobState

__all__ = ["EXIT_CODES", "main"]

EXIT_CODES = {
    "ok": 0,
    "failed": 1,
    "usage": 2,
    "cancelled": 3,
    "timeout": 4,
    "backend": 5,
    "interrupted": 130,
}

EPILOG = """exit codes:
  0  the job completed (or the command succeeded)   1  the job failed
  2  bad usage or input                              3  the job was cancelled
  4  a deadline passed (the job is left running)     5  the backend or network failed

Programs: OpenQASM 2 or 3 text for local, oqc, ibm_quantum and azure_quantum; JSON (a .json file, or
text starting with '{') for databricks (a run spec or {"job_id": ...}) and windmill ({"path": ...,
"args": {...}} or {"code": ..., "language": ...}).

Backend: --backend, else $OQCS_BACKEND, else `backend` in the config file, else local. Settings come
from the config file's [backends.NAME] table (the keywords of Sdk(NAME, ...)) and, for those it leaves
out, the environment: OQC_URL and OQC_AUTHENTICATION_TOKEN for oqc (`oqcs emulate oqc` prints them
for a local emulator), DATABRICKS_HOST/DATABRICKS_TOKEN, WM_BASE_URL/WM_TOKEN/WM_WORKSPACE ...
Config file: --config FILE, else $OQCS_CONFIG, else $XDG_CONFIG_HOME/oqcs/config.toml
(~/.config/oqcs/config.toml):

  backend = "oqc"
  [backends.oqc]
  url = "https://..."
  authentication_token = "..."        # keep the file owner-only
  default_target = "qpu:uk:2:d865b5a184"

`run` and `wait` show live progress on stderr when it is a terminal; --json and --quiet turn it off.
"""


def _version() -> str:
    try:
        return version("oqc-style-sdk")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oqcs",
        description="Run, find, watch and cancel jobs on the local simulator and vendor backends.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"oqcs {_version()}")
    verbose_option(parser, 0)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def backend_options(p: argparse.ArgumentParser, default: str = "the config file's, else 'local'") -> None:
        p.add_argument(
            "--backend", default=None, help=f"backend name (default: $OQCS_BACKEND, else {default})"
        )
        p.add_argument(
            "--config",
            type=Path,
            metavar="FILE",
            help="TOML config file (default: $OQCS_CONFIG or ~/.config/oqcs/config.toml)",
        )
        verbose_option(p, argparse.SUPPRESS)

    def json_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print JSON for scripts (no progress display)")

    def quiet_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--quiet", "-q", action="store_true", help="no live progress display")

    def timeout_option(p: argparse.ArgumentParser, default: float | None) -> None:
        p.add_argument(
            "--timeout",
            type=float,
            default=default,
            metavar="S",
            help=f"give up waiting after S seconds (default: {default or 'no deadline'})",
        )

    p = sub.add_parser("demo", help="a short tour on the local simulator")

    for name, what in (
        ("run", "run a program and wait for its result"),
        ("submit", "send a program without waiting (use --save; not on local)"),
    ):
        p = sub.add_parser(
            name, help=what, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        p.add_argument(
            "program",
            type=Path,
            help="an OpenQASM 2 or 3 file, or a JSON program (.json: Databricks, Windmill)",
        )
        backend_options(p)
        p.add_argument("--target", help="QPU or simulator id (default: the backend's)")
        p.add_argument("--shots", type=int, help="number of shots (default 1000)")
        p.add_argument("--tag", help="a tag for the job (oqcs jobs --tag finds it where the vendor keeps it)")
        p.add_argument(
            "--queue",
            action="store_true",
            help="queue for a target the vendor lists as inactive or offline (refused otherwise)",
        )
        p.add_argument("--save", type=Path, metavar="FILE", help="save the job to FILE")
        json_option(p)
        if name == "run":
            timeout_option(p, None)
            quiet_option(p)

    for name, what in (
        ("status", "read a job's status once"),
        ("wait", "wait for a job to end"),
        ("result", "print a job's result"),
        ("cancel", "cancel a job"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument(
            "job",
            metavar="FILE|TASK_ID",
            help="a job file (--save, job.save()) or the vendor's task id of a job made anywhere",
        )
        backend_options(p, default="the job file's backend, else the config file's, else 'local'")
        json_option(p)
        if name in ("wait", "cancel"):
            timeout_option(p, None if name == "wait" else 60.0)
        if name == "wait":
            quiet_option(p)

    p = sub.add_parser("jobs", help="list the backend's jobs, newest first")
    backend_options(p)
    p.add_argument(
        "--state", help="STATE[,STATE...]: submitted, running, completed, failed, cancelled, active, ended"
    )
    p.add_argument(
        "--since", metavar="T", help="created since T: an ISO 8601 time, or a duration ago (30m, 2h, 7d)"
    )
    p.add_argument("--target", help="only jobs on this target")
    p.add_argument("--tag", help="only jobs with this tag")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="at most N jobs (default 20)")
    json_option(p)

    p = sub.add_parser("attach", help="follow a job made elsewhere by its task id")
    p.add_argument("task_id", metavar="TASK_ID", help="the vendor's id of the job")
    backend_options(p)
    p.add_argument("--save", type=Path, metavar="FILE", help="save the job to FILE (then: oqcs wait FILE)")
    json_option(p)

    p = sub.add_parser("targets", help="list the backend's targets")
    backend_options(p)
    json_option(p)

    add_workflow_parser(sub)

    p = sub.add_parser("emulate", help="serve a vendor emulator on 127.0.0.1 until interrupted")
    p.add_argument("vendor", help="which vendor's API to serve, e.g. oqc")
    p.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    p.add_argument(
        "--job-duration",
        type=float,
        default=2.0,
        metavar="S",
        help="how long emulated jobs run (default 2 s)",
    )
    p.add_argument(
        "--max-lifetime",
        type=float,
        default=8 * 3600.0,
        metavar="S",
        help="stop by itself after S seconds (default 8 h)",
    )
    verbose_option(p, argparse.SUPPRESS)
    return parser


def verbose_option(p: argparse.ArgumentParser, default: Any) -> None:
    """``-v``: the SDK's log (INFO) on stderr; ``-vv``: DEBUG. Before or after the command."""
    p.add_argument(
        "-v", "--verbose", action="count", default=default, help="show the SDK's log on stderr (-vv: more)"
    )


# ---------------------------------------------------------------------------------- output
def _output_dict(output: JobOutput | None) -> dict[str, Any] | None:
    return None if output is None else output.model_dump(mode="json")


def _job_dict(job: Job) -> dict[str, Any]:
    submitted = job.submitted_at
    return {
        "id": job.id,
        "state": job.state.value,
        "backend": job.sdk.backend.name,
        "target": job.target,
        "task_id": job.task_id,
        "vendor_status": job.vendor_status,
        "tag": job.tag,
        "submitted_at": None if submitted is None else submitted.isoformat(),
        "run": job.run,
        "output": _output_dict(job.outputs.first),
        "history": [_output_dict(o) for o in job.history],
    }


def _print_job(job: Job, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_job_dict(job), indent=2))
        return
    print(
        f"job {job.id[:8]}  {job.state.value}  on {job.sdk.backend.name}:{job.target}"
        f"  task {job.task_id or '-'}"
    )
    output = job.outputs.first
    if isinstance(output, JobResult):
        data = output.data
        if isinstance(data, dict) and data and all(_is_counts(c) for c in data.values()):
            for register, counts in data.items():
                shown = "  ".join(f"{k}:{v}" for k, v in sorted(counts.items()))
                print(f"  {register}: {shown}")
        else:  # a Databricks run's task outputs, a Windmill script's result ...
            for line in json.dumps(data, indent=2, default=str).splitlines():
                print(f"  {line}")
    elif isinstance(output, JobError):
        print(f"  error{f' {output.code}' if output.code else ''}: {output.message}")
    elif isinstance(output, JobCancellation):
        print(f"  cancelled{f': {output.reason}' if output.reason else ''}")


def _print(job: Job | CompositeJob, as_json: bool) -> None:
    """A job, or a composite: its summary line, then each child as a job."""
    if isinstance(job, Job):
        _print_job(job, as_json)
        return
    summary = {state.value: n for state, n in job.summary().items()}
    if as_json:
        doc = {
            "id": job.id,
            "state": job.state.value,
            "summary": summary,
            "jobs": [_job_dict(c) for c in job],
        }
        print(json.dumps(doc, indent=2))
        return
    shown = ", ".join(f"{n} {state}" for state, n in summary.items())
    print(f"composite {job.id[:8]}  {job.state.value}  {len(job)} jobs: {shown}")
    for child in job:
        _print_job(child, False)


def _is_counts(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(n, int) for n in value.values())


def _exit_for(job: Job | CompositeJob) -> int:
    return {
        JobState.COMPLETED: EXIT_CODES["ok"],
        JobState.FAILED: EXIT_CODES["failed"],
        JobState.CANCELLED: EXIT_CODES["cancelled"],
    }.get(job.state, EXIT_CODES["ok"])


# ---------------------------------------------------------------------------------- the CLI's words
#: Python advice in the SDK's messages, said the command line's way.
_CLI_WORDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), words)
    for pattern, words in (
        (
            r"pass (?:target|qpu_id)=\.\.\. to create_job(?:,? or default_(?:target|qpu_id)=\.\.\. to \w+)?",
            "pass --target ID (or set default_target in the config file; `oqcs targets` lists them)",
        ),
        (r"^unknown target", "--target: unknown target"),
        (r"^target must", "--target must"),
        (r"\bshots must", "--shots must"),
        (r"^tag must", "--tag must"),
        (r"^limit must", "--limit must"),
        (r"^unknown state", "--state: unknown state"),
        (r"Pass queue=True to create_job to queue", "Pass --queue to queue"),
        (r"cannot filter jobs by ([a-z, ]+):", r"cannot filter jobs by \1 (--\1):"),
        (
            r"give it with `job\.reconfigure\(program=\.\.\.\)` to run it again",
            "run the program again with `oqcs run PROGRAM`",
        ),
    )
)


def in_cli_words(message: str) -> str:
    """An SDK message with its Python keywords (``qpu_id=...``) turned into the flags (``--target``)."""
    for pattern, words in _CLI_WORDS:
        message = pattern.sub(words, message)
    return message


def parse_since(text: str | None) -> datetime | timedelta | None:
    """``--since``: an ISO 8601 time (naive is UTC) or how long ago (``90s``, ``30m``, ``2h``, ``7d``)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match[2]]
        ago = timedelta(**{unit: float(match[1])})
        if ago <= timedelta(0):
            raise JobValidationError("--since must be a time, or a positive duration ago such as 2h")
        return ago
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise JobValidationError(
            "--since must be an ISO 8601 time (2026-12-01T09:00) or a duration ago (30m, 2h, 7d), "
            f"not {text!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------- commands
def _sdk(args: argparse.Namespace, saved_for: str | None = None) -> Sdk:
    """The Sdk the command line and the config file describe; a job file's backend (``saved_for``)
    when no ``--backend`` names one. Only the name is taken from the file: the endpoint and the
    credentials come from the user's settings (the file is checked against them when loaded)."""
    config = load_config(args.config)
    backend = args.backend or saved_for or config.resolve_backend(None)
    return Sdk(backend, **config.settings(backend))


def _progress(args: argparse.Namespace) -> bool:
    """Live progress: only for a person at a terminal."""
    return not (args.json or getattr(args, "quiet", False)) and sys.stderr.isatty()


async def _run(args: argparse.Namespace) -> int:
    program = read_program(args.program)
    config: dict[str, Any] = {} if args.shots is None else {"shots": args.shots}
    async with _sdk(args) as sdk:
        if args.command == "submit" and not sdk.backend.runs_outlive_process:
            raise JobValidationError(
                f"`oqcs submit` on {sdk.backend.name} would lose the job: its runs live in the process "
                "that runs them and end when oqcs exits. Use `oqcs run` (it waits for the result)."
            )
        job = sdk.create_job(
            program=program, target=args.target, config=config, tag=args.tag, queue=args.queue
        )
        args.following = job
        if args.command == "submit":
            await job.submit()
        else:
            try:
                await job.execute(timeout_s=args.timeout, progress=_progress(args))
            except JobTimeoutError:
                if args.save:
                    await job.save(args.save)
                raise
        if args.save:
            await job.save(args.save)
        _print_job(job, args.json)
        return _exit_for(job) if args.command == "run" else EXIT_CODES["ok"]


async def _saved_backend(path: Path) -> str | None:
    """The backend a job file names (None when the file cannot be read: loading then says why)."""
    from .persistence import read_document

    try:
        document = await anyio.to_thread.run_sync(read_document, path)
    except PersistenceError:
        return None
    return document.backend.get("backend")


async def _load(sdk: Sdk, path: Path) -> Job | CompositeJob:
    try:
        return await sdk.load(path)
    except ForeignJobFileError as exc:
        mine = ", ".join(f"{k} {v}" for k, v in sdk.backend.identity().items())
        raise ForeignJobFileError(
            f"{exc}".split("; this Sdk is")[0] + f"; oqcs is set up for {mine}. Give the settings of "
            "the job's backend and endpoint (--backend, --config, or the backend's environment variables)."
        ) from None


async def _follow(args: argparse.Namespace) -> int:
    """``status|wait|result|cancel`` of a job file or of a task id."""
    path = Path(args.job)
    from_file = path.suffix.lower() == ".json" or await anyio.Path(path).exists()
    saved_for = await _saved_backend(path) if from_file else None
    async with _sdk(args, saved_for) as sdk:
        job = await _load(sdk, path) if from_file else await sdk.job(args.job)
        args.following = job
        try:
            if args.command == "status":
                await job.refresh()
            elif args.command == "wait":
                await job.wait(timeout_s=args.timeout, progress=_progress(args))
            elif args.command == "cancel":
                await job.cancel_if_active(timeout_s=args.timeout)
        finally:
            if from_file and args.command in ("wait", "cancel"):
                with anyio.CancelScope(shield=True):
                    await job.save(path)
        _print(job, args.json)
        return _exit_for(job) if job.ended else EXIT_CODES["ok"]


async def _attach(args: argparse.Namespace) -> int:
    async with _sdk(args) as sdk:
        job = await sdk.job(args.task_id)
        if args.save:
            await job.save(args.save)
        _print_job(job, args.json)
        return _exit_for(job) if job.ended else EXIT_CODES["ok"]


async def _jobs(args: argparse.Namespace) -> int:
    async with _sdk(args) as sdk:
        if not sdk.backend.has_job_list:
            raise JobValidationError(
                f"{sdk.backend.name} keeps its jobs in the process that ran them: a new oqcs has none "
                "to list (list a vendor backend's jobs with --backend)"
            )
        states = None if args.state is None else [s for s in args.state.split(",") if s.strip()]
        jobs = [
            job
            async for job in sdk.jobs(
                state=states,
                since=parse_since(args.since),
                target=args.target,
                tag=args.tag,
                limit=args.limit,
            )
        ]
    if args.json:
        print(json.dumps([_job_dict(job) for job in jobs], indent=2))
        return EXIT_CODES["ok"]
    rows = [("TASK ID", "STATE", "TARGET", "SUBMITTED", "TAG")]
    for job in jobs:
        at = job.submitted_at
        when = "-" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        rows.append((job.task_id or "-", job.state.value, job.target or "-", when, job.tag or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if not jobs:
        print("(no jobs)")
    return EXIT_CODES["ok"]


async def _targets(args: argparse.Namespace) -> int:
    async with _sdk(args) as sdk:
        targets = await sdk.list_targets()
    if args.json:
        print(json.dumps(targets, indent=2))
    else:
        for t in targets:
            print(f"{t.get('id')}  {t.get('name', '')}  {t.get('status', '')}")
    return EXIT_CODES["ok"]


async def _emulate(args: argparse.Namespace) -> int:
    from .testing.emulator import serve_forever

    def ready(emulator: Any) -> None:
        for key, value in emulator.env.items():
            print(f"{key}={value}")
        print("ready", flush=True)

    await serve_forever(
        args.vendor,
        port=args.port,
        job_duration_s=args.job_duration,
        ready=ready,
        max_lifetime_s=args.max_lifetime,
    )
    return EXIT_CODES["ok"]


async def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import tour

        await tour()
        return EXIT_CODES["ok"]
    if args.command in ("run", "submit"):
        return await _run(args)
    if args.command in ("status", "wait", "result", "cancel"):
        return await _follow(args)
    if args.command == "jobs":
        return await _jobs(args)
    if args.command == "attach":
        return await _attach(args)
    if args.command == "targets":
        return await _targets(args)
    if args.command == "workflow":
        return await run_workflow_command(args)
    return await _emulate(args)


def _fail(code: str, message: str) -> int:
    print(f"oqcs: {message}", file=sys.stderr)
    return EXIT_CODES[code]


def resume_hint(args: argparse.Namespace) -> str | None:
    """What an interrupted ``run``/``wait`` leaves behind, and the commands that follow or cancel it:
    by its file where there is one (``--save``, or the file being waited on), else by its task id."""
    job = getattr(args, "following", None)
    if job is None or not job.active:
        return None
    name = job.sdk.backend.name
    if not job.sdk.backend.runs_outlive_process:
        return f"the {name} run ended with oqcs; nothing is left behind"
    waited = getattr(args, "job", None)
    if getattr(args, "save", None):
        handle = str(args.save)
    elif waited is not None and Path(waited).suffix.lower() == ".json":
        handle = str(waited)
    elif isinstance(job, Job) and job.task_id is not None:
        handle = job.task_id
    else:
        return "the job may have reached the vendor; `oqcs jobs` lists it"
    where = "" if handle.endswith(".json") else f" --backend {name}"
    return (
        f"the job is still {job.state.value} at {name} ({handle}):\n"
        f"  oqcs wait {handle}{where}     follows it\n"
        f"  oqcs cancel {handle}{where}   cancels it"
    )


def _log(verbosity: int) -> logging.Handler | None:
    """``-v``: the SDK's own log on stderr (it never carries a secret); the handler, to remove."""
    if not verbosity:
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("oqc_style_sdk")
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbosity == 1 else logging.DEBUG)
    return handler


def _interrupted(group: BaseExceptionGroup[BaseException]) -> bool:
    """A Ctrl-C raised inside the Sdk's task group reaches us wrapped in its group."""
    return group.subgroup(KeyboardInterrupt) is not None


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; return the exit code."""
    args = _parser().parse_args(argv)
    args.following = None
    handler = _log(args.verbose)
    try:
        try:
            return anyio.run(_dispatch, args)
        except BaseExceptionGroup as group:
            if _interrupted(group):
                raise KeyboardInterrupt from None
            raise
    except KeyboardInterrupt:
        hint = resume_hint(args)
        return _fail("interrupted", "interrupted" + (f"; {hint}" if hint else ""))
    except JobTimeoutError as exc:
        return _fail("timeout", f"{exc} (the job is still running; `oqcs wait` resumes it)")
    except (JobValidationError, ConfigurationError, PersistenceError) as exc:
        return _fail("usage", in_cli_words(str(exc)))
    except JobNotFoundError as exc:
        return _fail("usage", str(exc))
    except BackendError as exc:
        return _fail("backend", str(exc))
    except SdkError as exc:
        return _fail("backend", str(exc))
    finally:
        if handler is not None:
            logging.getLogger("oqc_style_sdk").removeHandler(handler)


def main() -> NoReturn:
    sys.exit(run())
