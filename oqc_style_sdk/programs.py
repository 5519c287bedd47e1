"""Quantum programs as users write them, made into what a backend runs: the one place for that rule.

A quantum program is OpenQASM 2/3 text, a qiskit ``QuantumCircuit``, or a parameterised circuit
with its values, ``(circuit, values)``, as in a PUB of IBM's sampler:

- ``values`` is a sequence of numbers in the order of ``circuit.parameters``, or a mapping from
  each ``Parameter`` (or its name) to its number: one binding, one job;
- a *sweep* — a sequence of such bindings (a 2-D list or array, or a list of mappings) — gives one
  job per binding: ``create_job`` makes a ``CompositeJob`` whose child ``i`` runs binding ``i``.

After :func:`one`, a backend's ``validate`` sees OpenQASM text, or a circuit (a copy of the user's,
so changing theirs later changes no job) with every parameter bound. Anything else passes as it is:
data and workflow backends take other programs, and a quantum backend refuses what is neither.

Nothing here imports qiskit: a user who has a circuit has imported it already, and every check
runs only on circuits (``import oqc_style_sdk`` stays fast).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

from .backends._qiskit import is_circuit
from .exceptions import JobValidationError

__all__ = ["expand", "is_pub", "one"]


class _Bound:
    """A circuit this module bound (so a copy of the user's already): :func:`one` takes it as is."""

    __slots__ = ("circuit",)

    def __init__(self, circuit: Any) -> None:
        self.circuit = circuit


#: How many parameter names an error message lists before it says how many more there are.
_NAMES_SHOWN = 8


def is_pub(program: object) -> bool:
    """Whether ``program`` is ``(circuit, values)``, rather than a tuple of programs (a composite)."""
    return (
        isinstance(program, tuple)
        and len(program) == 2
        and is_circuit(program[0])
        and not is_circuit(program[1])
        and not isinstance(program[1], str)
    )


def expand(program: Any) -> Any:
    """``create_job``'s program: a ``(circuit, sweep)`` becomes a list of bound circuits (one child
    each, in the sweep's order), a ``(circuit, values)`` one bound circuit; anything else is
    returned as it is (a list stays a list, its items bound later, one by one, by :func:`one`).
    Every job's program then goes through :func:`one`, which unwraps what this bound."""
    if not is_pub(program):
        return program
    circuit, values = program
    sweep = _sweep(values)
    if sweep is None:
        return _Bound(_bind(circuit, _plain(values)))
    if not sweep:
        raise JobValidationError("the sweep of parameter values is empty: give at least one binding")
    bound = []
    for i, binding in enumerate(sweep):
        try:
            bound.append(_Bound(_bind(circuit, binding)))
        except JobValidationError as exc:
            exc.add_note(f"(in binding {i} of the sweep)")
            raise
    return bound


def one(program: Any) -> Any:
    """One job's program as its backend's ``validate`` gets it.

    Text as it is; a circuit copied, refused if a parameter is unbound; ``(circuit, values)``
    bound (a sweep is refused: one job runs one binding); anything else as it is."""
    if isinstance(program, str):
        return program
    if isinstance(program, _Bound):
        return program.circuit
    if is_pub(program):
        circuit, values = program
        if _sweep(values) is not None:
            raise JobValidationError(
                "a sweep of parameter values makes one job per binding: pass it as "
                "sdk.create_job(program=(circuit, sweep)), which makes a CompositeJob"
            )
        return _bind(circuit, _plain(values))
    if is_circuit(program):
        _check_bound(program)
        return program.copy()
    return program


def _plain(values: Any) -> Any:
    """A numpy array (or alike) as nested lists; anything else as it is."""
    return values.tolist() if hasattr(values, "ndim") and hasattr(values, "tolist") else values


def _sweep(values: Any) -> list[Any] | None:
    """The bindings of a sweep, or None when ``values`` is one binding (a bad one is left to _bind).

    An array is a sweep when it has two dimensions or more (bindings × parameters)."""
    if hasattr(values, "ndim") and hasattr(values, "tolist"):
        return values.tolist() if values.ndim >= 2 else None
    if isinstance(values, Mapping | str | bytes) or not isinstance(values, Sequence):
        return None
    nested = [_is_binding(item) for item in values]
    if not any(nested):
        return None
    if not all(nested):
        raise JobValidationError(
            "parameter values mix numbers and bindings: give one binding (numbers, or a mapping) "
            "or a sweep (a list of bindings)"
        )
    return [_plain(item) for item in values]


def _is_binding(item: Any) -> bool:
    """Whether a sweep's item is a binding (a numpy number has ``ndim`` 0: it is a value)."""
    if isinstance(item, Mapping):
        return True
    if hasattr(item, "ndim"):
        return bool(item.ndim >= 1)
    return isinstance(item, Sequence) and not isinstance(item, str | bytes)


def _bind(circuit: Any, values: Any) -> Any:
    """A copy of ``circuit`` with ``values`` (one binding) assigned to its parameters."""
    parameters = list(circuit.parameters)
    if isinstance(values, Mapping):
        assignment = _from_mapping(circuit, parameters, values)
    elif isinstance(values, Sequence) and not isinstance(values, str | bytes):
        if len(values) != len(parameters):
            raise JobValidationError(
                f"the circuit has {len(parameters)} parameter(s) ({_names(parameters) or 'none'}, in "
                f"that order) but {len(values)} value(s) were given"
            )
        assignment = {p: _number(p.name, v) for p, v in zip(parameters, values, strict=True)}
    else:
        raise JobValidationError(
            "parameter values are a sequence of numbers in the order of circuit.parameters, or a "
            f"mapping from each parameter (or its name) to a number, not {type(values).__name__}"
        )
    if not parameters:
        return circuit.copy()
    return circuit.assign_parameters(assignment, inplace=False)


def _from_mapping(circuit: Any, parameters: list[Any], values: Mapping[Any, Any]) -> dict[Any, float]:
    by_name = {p.name: p for p in parameters}
    assignment: dict[Any, float] = {}
    for key, value in _vectors_spread(values).items():
        parameter = by_name.get(key) if isinstance(key, str) else key
        name = key if isinstance(key, str) else getattr(key, "name", repr(key))
        if parameter is not None and parameter not in circuit.parameters and name in by_name:
            raise JobValidationError(
                f"the circuit has another Parameter named {name!r} than the one given: give its own "
                "Parameter object, or the name"
            )
        if parameter is None or parameter not in circuit.parameters:
            raise JobValidationError(
                f"the circuit has no parameter {name!r}; its parameters are {_names(parameters) or 'none'}"
            )
        if parameter in assignment:
            raise JobValidationError(f"parameter {name!r} is given twice (by name and as a Parameter)")
        assignment[parameter] = _number(name, value)
    missing = [p for p in parameters if p not in assignment]
    if missing:
        raise JobValidationError(f"no value for parameter(s) {_names(missing)}")
    return assignment


def _vectors_spread(values: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """``{vector: [v0, v1 ...]}`` (a qiskit ``ParameterVector``) as ``{vector[0]: v0, ...}``."""
    if not any(hasattr(key, "params") for key in values):
        return values
    spread: dict[Any, Any] = {}
    for key, value in values.items():
        if not hasattr(key, "params"):
            spread[key] = value
            continue
        value = _plain(value)
        if not isinstance(value, Sequence) or len(value) != len(key.params):
            raise JobValidationError(
                f"parameter vector {key.name!r} has {len(key.params)} element(s); give as many values"
            )
        spread.update(zip(key.params, value, strict=True))
    return spread


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise JobValidationError(
            f"the value of parameter {name!r} must be a finite real number, not {value!r:.60}"
        )
    return float(value)


def _check_bound(circuit: Any) -> None:
    parameters = list(circuit.parameters)
    if parameters:
        raise JobValidationError(
            f"the circuit has unbound parameter(s) {_names(parameters)}: pass "
            "program=(circuit, values) with a value for each"
        )


def _names(parameters: list[Any]) -> str:
    names = ", ".join(p.name for p in parameters[:_NAMES_SHOWN])
    more = len(parameters) - _NAMES_SHOWN
    return f"{names} … and {more} more" if more > 0 else names
