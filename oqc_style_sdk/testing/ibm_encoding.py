"""The Qiskit-encoded JSON of IBM's Qiskit Runtime: what the official client sends and asks for.

qiskit-ibm-runtime encodes a circuit as ``{"__type__": "QuantumCircuit", "__value__": <base64 of the
zlib-compressed QPY>}`` and an array as ``{"__type__": "ndarray", "__value__": <base64 of the
zlib-compressed .npy file>}`` (or a plain list); with ``support_qiskit: true`` it asks for the
sampler's result as a ``PrimitiveResult`` of ``SamplerPubResult`` s whose ``DataBin`` holds one
``BitArray`` per classical register (``specs/VENDORS.md`` §1 and
``ibm-quantum-sampler-v2-result-qiskit-encoded.generated-from-pydantic.schema.json``).

Nothing decoded here is executed: QPY is a data format (qiskit's loader builds a circuit from it),
and ``.npy`` arrays are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import base64
import binascii
import io
import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

__all__ = ["decode_array", "decode_circuit", "encode_array", "qiskit_result"]

#: The largest decompressed payload accepted (emulator choice, against zip bombs).
MAX_DECODED_BYTES: Final = 50_000_000


class EncodingError(ValueError):
    """A value is not in the encoding qiskit-ibm-runtime uses (the caller answers 400)."""


def _payload(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise EncodingError(f"{what}: __value__ must be a base64 string")
    try:
        raw = base64.standard_b64decode(value.encode("ascii"))
        inflater = zlib.decompressobj()
        data = inflater.decompress(raw, MAX_DECODED_BYTES)
    except (binascii.Error, UnicodeEncodeError, zlib.error):
        raise EncodingError(f"{what}: __value__ is not base64 of zlib-compressed data") from None
    if inflater.unconsumed_tail:
        raise EncodingError(f"{what}: more than {MAX_DECODED_BYTES:,} bytes once decompressed")
    return data


def decode_circuit(value: Mapping[str, Any]) -> Any:
    """The ``QuantumCircuit`` of a Qiskit-encoded circuit (raises :class:`EncodingError`)."""
    import qiskit.qpy

    data = _payload(value.get("__value__"), "QuantumCircuit")
    try:
        circuits = qiskit.qpy.load(io.BytesIO(data))
    except Exception as exc:
        raise EncodingError(f"QuantumCircuit: not a QPY payload this emulator reads ({exc})") from None
    if len(circuits) != 1:
        raise EncodingError(f"QuantumCircuit: the QPY payload holds {len(circuits)} circuits, not 1")
    return circuits[0]


def decode_array(value: object) -> Any:
    """The numpy array of an ``ndarray`` wrapper (or a plain list), or None for ``None``."""
    import numpy as np

    if value is None:
        return None
    if isinstance(value, list):
        return np.asarray(value)
    if not isinstance(value, Mapping) or value.get("__type__") != "ndarray":
        raise EncodingError("parameter values must be an ndarray wrapper, a list or null")
    inner = value.get("__value__")
    if isinstance(inner, list | int | float):
        return np.asarray(inner)
    try:
        return np.load(io.BytesIO(_payload(inner, "ndarray")), allow_pickle=False)
    except ValueError as exc:
        raise EncodingError(f"ndarray: not a .npy payload ({exc})") from None


def encode_array(array: Any) -> dict[str, str]:
    """An array as qiskit-ibm-runtime encodes it (``np.save``, zlib, base64)."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    value = base64.standard_b64encode(zlib.compress(buffer.getvalue())).decode("ascii")
    return {"__type__": "ndarray", "__value__": value}


def _bit_array(samples: Sequence[int], num_bits: int) -> dict[str, Any]:
    """A ``BitArray``: one row per shot, the bits packed big-endian into ``ceil(num_bits/8)`` bytes."""
    import numpy as np

    width = max(1, (num_bits + 7) // 8)
    packed = b"".join(value.to_bytes(width, "big") for value in samples)
    array = np.frombuffer(packed, dtype=np.uint8).reshape(len(samples), width)
    return {"__type__": "BitArray", "__value__": {"array": encode_array(array), "num_bits": num_bits}}


def _moment(moment: datetime) -> dict[str, str]:
    return {"__type__": "datetime", "__value__": moment.isoformat()}


def qiskit_result(
    pubs: Sequence[Mapping[str, tuple[Sequence[int], int]]],
    shots: Sequence[int],
    started: datetime,
    stopped: datetime,
) -> dict[str, Any]:
    """The Qiskit-encoded ``PrimitiveResult`` of a sampler job.

    ``pubs`` holds, per PUB, each classical register's samples (one int per shot) and width.
    """
    pub_results = []
    for registers in pubs:
        fields = {name: _bit_array(samples, bits) for name, (samples, bits) in registers.items()}
        data = {
            "__type__": "DataBin",
            "__value__": {
                "field_names": list(fields),
                "field_types": ["BitArray"] * len(fields),
                "shape": [],
                "fields": fields,
            },
        }
        value = {"data": data, "metadata": {"circuit_metadata": {}}}
        pub_results.append({"__type__": "SamplerPubResult", "__value__": value})
    span = {
        "__type__": "DoubleSliceSpan",
        "__value__": {
            "start": _moment(started),
            "stop": _moment(stopped),
            # per PUB: the data's shape (shots last), the slice of its parameter bindings, of its shots
            "data_slices": {str(i): [[n], 0, 1, 0, n] for i, n in enumerate(shots)},
        },
    }
    spans = {"__type__": "ExecutionSpans", "__value__": {"spans": [span]}}
    metadata = {"execution": {"execution_spans": spans}, "version": 2}
    return {"__type__": "PrimitiveResult", "__value__": {"pub_results": pub_results, "metadata": metadata}}
