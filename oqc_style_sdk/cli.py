"""``oqcs``: run, watch and cancel jobs from a terminal; serve vendor emulators.

```
oqcs demo                                   the tour of `make demo`
oqcs run bell.qasm [--backend oqc] [--target ID] [--shots N] [--save job.json] [--json]
oqcs run spec.json --backend databricks     JSON programs: Databricks run specs, Windmill scripts
oqcs submit bell.qasm --save job.json       send without waiting
oqcs status job.json | wait job.json | result job.json | cancel job.json
oqcs targets [--backend oqc] [--json]
oqcs emulate oqc [--port N] [--job-duration S]
oqcs workflow run seed.arazzo.yaml [--workflow ID] --input k=v ... [--server NAME=URL]
```

Backend settings come from a config file (``--config``, ``$OQCS_CONFIG`` or ``~/.config/oqcs/config.toml``,
see :mod:`oqc_style_sdk.cli_config`) and the environment (``OQC_URL``, ``OQC_AUTHENTICATION_TOKEN`` ...),
as the backends document. ``run`` and ``wait`` show live progress on a terminal (not with ``--json`` or
``--quiet``). Exit codes: 0 the job completed (or the command succeeded), 1 the job failed,
2 bad usage or input, 3 the job was cancelled, 4 a deadline passed, 5 the backend or the network
failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import anyio

from .arazzo.cli import add_workflow_parser, run_workflow_command
from .cli_config import load_config, read_program
from .client import Sdk
from .exceptions import (
    BackendError,
    ConfigurationError,
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oqcs",
        description="Run, watch and cancel jobs on the local simulator and vendor backends.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def backend_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--backend",
            default=None,
            help="backend name (default: $OQCS_BACKEND, else the config file's, else 'local')",
        )
        p.add_argument(
            "--config",
            type=Path,
            metavar="FILE",
            help="TOML config file (default: $OQCS_CONFIG or ~/.config/oqcs/config.toml)",
        )

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
        ("submit", "send a program without waiting (use --save)"),
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
        p.add_argument("--save", type=Path, metavar="FILE", help="save the job to FILE")
        json_option(p)
        if name == "run":
            timeout_option(p, None)
            quiet_option(p)

    for name, what in (
        ("status", "read a saved job's status once"),
        ("wait", "wait for a saved job to end"),
        ("result", "print a saved job's result"),
        ("cancel", "cancel a saved job"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("file", type=Path, help="a job file written by --save or job.save()")
        backend_options(p)
        json_option(p)
        if name in ("wait", "cancel"):
            timeout_option(p, None if name == "wait" else 60.0)
        if name == "wait":
            quiet_option(p)

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
    return parser


# ---------------------------------------------------------------------------------- output
def _output_dict(output: JobOutput | None) -> dict[str, Any] | None:
    return None if output is None else output.model_dump(mode="json")


def _job_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state.value,
        "backend": job.sdk.backend.name,
        "target": job.target,
        "task_id": job.task_id,
        "vendor_status": job.vendor_status,
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


def _is_counts(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(n, int) for n in value.values())


def _exit_for(job: Job) -> int:
    return {
        JobState.COMPLETED: EXIT_CODES["ok"],
        JobState.FAILED: EXIT_CODES["failed"],
        JobState.CANCELLED: EXIT_CODES["cancelled"],
    }.get(job.state, EXIT_CODES["ok"])


# ---------------------------------------------------------------------------------- commands
def _sdk(args: argparse.Namespace) -> Sdk:
    """The Sdk the command line and the config file describe."""
    config = load_config(args.config)
    backend = config.resolve_backend(args.backend)
    return Sdk(backend, **config.settings(backend))


def _progress(args: argparse.Namespace) -> bool:
    """Live progress: only for a person at a terminal."""
    return not (args.json or getattr(args, "quiet", False)) and sys.stderr.isatty()


async def _run(args: argparse.Namespace) -> int:
    program = read_program(args.program)
    config = {} if args.shots is None else {"shots": args.shots}
    async with _sdk(args) as sdk:
        job = sdk.create_job(program=program, target=args.target, config=config)
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


async def _saved(args: argparse.Namespace) -> int:
    async with _sdk(args) as sdk:
        job = await sdk.load(args.file)
        if not isinstance(job, Job):
            raise JobValidationError(f"{args.file} holds a composite job; use the Python API")
        if args.command == "status":
            await job.refresh()
        elif args.command == "wait":
            try:
                await job.wait(timeout_s=args.timeout, progress=_progress(args))
            finally:
                await job.save(args.file)
        elif args.command == "cancel":
            try:
                await job.cancel_if_active(timeout_s=args.timeout)
            finally:
                await job.save(args.file)
        _print_job(job, args.json)
        return _exit_for(job) if job.ended else EXIT_CODES["ok"]


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
        return await _saved(args)
    if args.command == "targets":
        return await _targets(args)
    if args.command == "workflow":
        return await run_workflow_command(args)
    return await _emulate(args)


def _fail(code: str, message: str) -> int:
    print(f"oqcs: {message}", file=sys.stderr)
    return EXIT_CODES[code]


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        return anyio.run(_dispatch, args)
    except KeyboardInterrupt:
        return _fail("interrupted", "interrupted")
    except JobTimeoutError as exc:
        return _fail("timeout", f"{exc} (the job is still running; `oqcs wait` resumes it)")
    except (JobValidationError, ConfigurationError, PersistenceError) as exc:
        return _fail("usage", str(exc))
    except BackendError as exc:
        return _fail("backend", str(exc))
    except SdkError as exc:
        return _fail("backend", str(exc))


def main() -> NoReturn:
    sys.exit(run())
