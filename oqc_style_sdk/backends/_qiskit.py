"""qiskit for every quantum backend: its one-time import, OpenQASM version detection and parsing.

The local simulator, and the IBM Quantum and Azure Quantum adapters (which convert programs), all use
qiskit; this module is the one place that imports it first and the one place programs are parsed.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import threading
import warnings
from collections.abc import Callable
from importlib import util
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

from ..exceptions import JobValidationError

__all__ = [
    "aer_available",
    "as_circuit",
    "as_openqasm",
    "as_qasm3",
    "error_message",
    "in_qiskit_thread",
    "is_circuit",
    "load_qasm3",
    "parse_qasm",
    "qasm_major_version",
    "qiskit_imported",
    "qiskit_ready",
    "start_qiskit_loader",
    "wait_for_qiskit",
]

logger = logging.getLogger("oqc_style_sdk.backends.qiskit")

_T = TypeVar("_T")

_HEADER = re.compile(r"OPENQASM\s+([0-9]+)")


# qiskit's Rust extension (``qiskit._accelerate``) crashes the process (SIGSEGV, qiskit 2.6 on
# CPython 3.11) when the thread that first imported it has exited and another thread then uses
# qiskit. anyio's worker threads exit after 10 s idle, so qiskit must never be first imported by
# a simulation thread: one daemon thread that never exits imports it, and simulations wait for it.
qiskit_ready = threading.Event()
_qiskit_loader_lock = threading.Lock()
_qiskit_loader_started = False


#: Everything a simulation (or a vendor backend's QASM conversion) imports, loaded once, here.
#: Two threads importing the same qiskit submodule at once can hand one of them a partially
#: initialised module ("cannot import name ... from partially initialized module"), so nothing
#: of qiskit is ever imported for the first time anywhere else.
_QISKIT_MODULES = (
    "qiskit",
    "qiskit.qasm2",
    "qiskit.qasm3",
    "qiskit_qasm3_import",
    "qiskit.quantum_info",
    "qiskit.primitives",
    "qiskit_aer",
    "qiskit_aer.primitives",
)


def _load_qiskit_and_park() -> None:
    try:
        for name in _QISKIT_MODULES:
            if name.startswith("qiskit_aer") and not aer_available():
                continue
            importlib.import_module(name)
    except Exception:  # the simulation thread imports it again and reports the error
        logger.exception("qiskit could not be imported")
    finally:
        qiskit_ready.set()
    threading.Event().wait()  # park forever: this thread must outlive every use of qiskit


def start_qiskit_loader() -> None:
    """Import qiskit in the background, in a thread that never exits (idempotent, non-blocking)."""
    global _qiskit_loader_started
    with _qiskit_loader_lock:
        if _qiskit_loader_started:
            return
        _qiskit_loader_started = True
    if "qiskit._accelerate" in sys.modules:  # already imported by the application
        qiskit_ready.set()
        return
    threading.Thread(target=_load_qiskit_and_park, name="oqc_style_sdk qiskit loader", daemon=True).start()


def wait_for_qiskit(timeout_s: float | None = None) -> bool:
    """Block until qiskit (and what simulations use of it) is imported by the parked loader thread.

    For code outside an event loop that must see qiskit fully imported first (a test that
    snapshots ``sys.modules``, for one). Returns False if ``timeout_s`` passed first."""
    start_qiskit_loader()
    return qiskit_ready.wait(timeout_s)


def aer_available() -> bool:
    """Whether qiskit-aer is installed (without importing it)."""
    return util.find_spec("qiskit_aer") is not None


def qasm_major_version(program: str) -> int | None:
    """The major version of the ``OPENQASM x.y;`` header, after leading whitespace and comments."""
    i, n = 0, len(program)
    while i < n:
        if program[i].isspace():
            i += 1
        elif program.startswith("//", i):
            end = program.find("\n", i)
            i = n if end < 0 else end + 1
        elif program.startswith("/*", i):
            end = program.find("*/", i + 2)
            if end < 0:
                return None
            i = end + 2
        else:
            break
    match = _HEADER.match(program, i)
    return int(match.group(1)) if match else None


def error_message(exc: BaseException) -> str:
    # QiskitError's str() is the repr of its message (quoted); its ``message`` is the plain text.
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message:
        return message
    return str(exc) or type(exc).__name__


def parse_qasm(program: str) -> Any:
    """The QuantumCircuit of an OpenQASM 2 or 3 program."""
    if qasm_major_version(program) in (None, 3):
        import qiskit.qasm3

        return qiskit.qasm3.loads(program)
    # OpenQASM 2, or a version neither parser takes: qasm2 says which versions it handles.
    import qiskit.qasm2

    return qiskit.qasm2.loads(program)


async def qiskit_imported() -> None:
    """Wait (off the event loop) until the parked loader thread has imported qiskit."""
    start_qiskit_loader()
    if not qiskit_ready.is_set():  # the loader thread imports qiskit; this thread only waits
        await anyio.to_thread.run_sync(qiskit_ready.wait, abandon_on_cancel=True)


#: qiskit work (parsing, transpiling, converting) runs in one worker thread at a time per event loop.
#: It holds the GIL nearly all the time, so more threads add no speed — and with 24 of them the
#: event loop waited up to 0.65 s for the GIL between two of its turns (deadlines overshot by as
#: much); with one, it waits at most a switch interval or two (measured: 0.025 s).
_QISKIT_THREAD: RunVar[anyio.CapacityLimiter] = RunVar("oqcs_qiskit_thread")


async def in_qiskit_thread(func: Callable[..., _T], *args: Any) -> _T:
    """``func(*args)`` — qiskit CPU work without side effects — in the event loop's qiskit worker
    thread, once qiskit is imported. A cancel (a deadline, closing the Sdk) lets the thread go at
    once: its result is unused, and the next piece of work does not wait for it."""
    await qiskit_imported()
    try:
        limiter = _QISKIT_THREAD.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(1)
        _QISKIT_THREAD.set(limiter)
    return await anyio.to_thread.run_sync(func, *args, abandon_on_cancel=True, limiter=limiter)


def is_circuit(program: object) -> bool:
    """Whether ``program`` is a qiskit ``QuantumCircuit`` (without importing qiskit)."""
    circuit_class = getattr(sys.modules.get("qiskit.circuit"), "QuantumCircuit", None)
    return circuit_class is not None and isinstance(program, circuit_class)


def as_circuit(program: Any) -> Any:
    """A quantum program as a ``QuantumCircuit``: a circuit as it is, OpenQASM 2/3 text parsed.

    Call it off the event loop, after :func:`qiskit_imported` (parsing is CPU work)."""
    return program if is_circuit(program) else parse_qasm(program)


def as_qasm3(program: Any) -> str:
    """A quantum program as OpenQASM 3 text: text as it is, a circuit exported by ``qiskit.qasm3``.

    A circuit OpenQASM 3 cannot express (an opaque gate, ``initialize`` ...) raises
    :class:`JobValidationError` with the exporter's reason."""
    if isinstance(program, str):
        return program
    import qiskit.qasm3

    try:
        return str(qiskit.qasm3.dumps(program))
    except qiskit.qasm3.QASM3ExporterError as exc:
        reason = error_message(exc)
        raise JobValidationError(f"the circuit cannot be written as OpenQASM 3: {reason}") from None


def as_openqasm(program: Any) -> str:
    """A quantum program as OpenQASM text: text as it is; a circuit as OpenQASM 2 where it can be
    written so (the version OQC documents and every vendor reads), else as OpenQASM 3
    (:class:`JobValidationError` if neither can express it).

    Call it off the event loop, after :func:`qiskit_imported` (exporting is CPU work)."""
    if isinstance(program, str):
        return program
    import qiskit.qasm2

    try:
        return str(qiskit.qasm2.dumps(program))
    except qiskit.qasm2.QASM2ExportError:  # control flow, classical expressions ...: OpenQASM 3 only
        return as_qasm3(program)


def load_qasm3(text: str) -> Any:
    """The circuit of OpenQASM 3 text that :func:`as_qasm3` wrote (a saved job's).

    qiskit's native importer is some forty times faster than the reference one (a sweep of a
    thousand circuits loads in a fraction of a second, not in many), but it reads a subset of the
    language: its circuit is kept only when it writes back to the very same text, else the
    reference importer reads it. Call it off the event loop, after :func:`qiskit_imported`."""
    import qiskit.qasm3

    native = getattr(qiskit.qasm3, "loads_experimental", None)
    if native is not None:
        from qiskit.exceptions import ExperimentalWarning

        try:
            # The filters are process-wide: for this one parse another thread's ExperimentalWarning
            # is hidden too, and a filter another thread adds meanwhile is undone on exit.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                circuit = native(text)
            if qiskit.qasm3.dumps(circuit) == text:
                return circuit
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # a construct it does not read yet (or a Rust panic): the reference
            logger.debug("the native OpenQASM 3 importer did not read a circuit", exc_info=True)
    return qiskit.qasm3.loads(text)
