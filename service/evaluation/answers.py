"""Reading what an evaluation child answered, as untrusted bytes.

The child (either level) sends a JSON header and ``.npy`` blobs (see
:func:`modelreg.evaluation.host.encode_answer`). Nothing here runs code from the
answer: headers are JSON, arrays are read with ``allow_pickle=False`` after their
``.npy`` header was checked against the blob's size, and only plain numeric or
string arrays of the expected shape are accepted. A malformed answer raises
:class:`Malformed` with a sentence for the job's error.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy
from numpy.lib import format as npy

from modelreg.evaluation.scoring import Scores, score

_LENGTH = struct.Struct(">Q")
_MAX_HEADER = 64 * 1024
_MAX_CLASSES = 100_000
_LABEL_KINDS = "biufU"  # bool, integers, floats, unicode strings: never objects
_NUMERIC_KINDS = "biuf"


class Malformed(Exception):
    """An answer that is not what a model's predictions look like."""


@dataclass
class Answer:
    ok: bool
    header: dict[str, Any]
    arrays: dict[str, Any] = field(default_factory=dict)


def _array(blob: bytes, name: str) -> Any:
    stream = io.BytesIO(blob)
    try:
        version = npy.read_magic(stream)
        if version == (1, 0):
            shape, _fortran, dtype = npy.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _fortran, dtype = npy.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError) as exc:
        raise Malformed(f"the model's {name} is not a readable array ({exc})") from None
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in _LABEL_KINDS:
        raise Malformed(
            f"the model's {name} has dtype {dtype.str!r}; only numbers and strings are accepted"
        )
    count = 1
    for extent in shape:
        count *= int(extent)
    if count * dtype.itemsize != len(blob) - stream.tell():
        raise Malformed(f"the model's {name} does not hold as many values as its shape says")
    stream.seek(0)
    return numpy.load(stream, allow_pickle=False)


def decode(data: bytes) -> Answer:
    """Split an answer into its header and arrays; raises :class:`Malformed`."""
    if len(data) < _LENGTH.size:
        raise Malformed("the evaluation process sent an unreadable result")
    (length,) = _LENGTH.unpack_from(data)
    if length > _MAX_HEADER or _LENGTH.size + length > len(data):
        raise Malformed("the evaluation process sent an unreadable result")
    try:
        header = json.loads(data[_LENGTH.size : _LENGTH.size + length])
    except ValueError:
        raise Malformed("the evaluation process sent an unreadable result") from None
    if not isinstance(header, dict) or not isinstance(header.get("ok"), bool):
        raise Malformed("the evaluation process sent an unreadable result")
    lengths = header.get("arrays", {})
    if not isinstance(lengths, dict) or not all(
        k in ("y_pred", "proba", "classes") and isinstance(v, int) and v >= 0
        for k, v in lengths.items()
    ):
        raise Malformed("the evaluation process sent a malformed result")
    offset = _LENGTH.size + length
    if offset + sum(lengths.values()) != len(data):
        raise Malformed("the evaluation process sent a malformed result")
    arrays: dict[str, Any] = {}
    for name, size in lengths.items():
        arrays[name] = _array(data[offset : offset + size], name)
        offset += size
    return Answer(ok=header["ok"], header=header, arrays=arrays)


def _reasons(header: dict[str, Any]) -> dict[str, str]:
    missing = header.get("missing", {})
    if not isinstance(missing, dict):
        return {}
    return {str(k): str(v)[:500] for k, v in missing.items() if k in ("proba", "classes")}


def _reasons_any(header: dict[str, Any]) -> dict[str, str]:
    missing = header.get("missing", {})
    return {str(k): str(v)[:500] for k, v in missing.items()} if isinstance(missing, dict) else {}


def scores_of(answer: Answer, task: str, y_true: Any) -> Scores:
    """Check the predictions against the test set's shape and score them; :class:`Malformed`."""
    rows = len(y_true)
    y_pred = answer.arrays.get("y_pred")
    if y_pred is None:
        reason = _reasons_any(answer.header).get("y_pred", "none were sent")
        raise Malformed(f"the model's predictions are not usable: {reason}")
    if y_pred.ndim == 2 and y_pred.shape[1] == 1:
        y_pred = y_pred.ravel()
    if y_pred.ndim != 1 or y_pred.shape[0] != rows:
        raise Malformed(
            f"the model returned {y_pred.shape[0] if y_pred.ndim else 0} prediction(s) of shape "
            f"{tuple(y_pred.shape)} for {rows} row(s)"
        )
    if task == "regression" and y_pred.dtype.kind not in _NUMERIC_KINDS:
        raise Malformed(f"a regressor's predictions must be numbers, got dtype {y_pred.dtype.str}")
    missing = _reasons(answer.header)
    proba = answer.arrays.get("proba")
    if proba is not None:
        if proba.dtype.kind not in _NUMERIC_KINDS or proba.ndim != 2 or proba.shape[0] != rows:
            raise Malformed(
                f"the model's predict_proba returned shape {tuple(proba.shape)} and dtype "
                f"{proba.dtype.str} for {rows} row(s); expected numbers of shape ({rows}, classes)"
            )
        proba = proba.astype(numpy.float64)
        if not numpy.isfinite(proba).all():
            raise Malformed("the model's predict_proba returned probabilities that are not finite")
    classes = answer.arrays.get("classes")
    if classes is not None and (classes.ndim != 1 or classes.shape[0] > _MAX_CLASSES):
        raise Malformed(f"the model's classes_ has shape {tuple(classes.shape)}; expected a list")
    return score(task, y_true.to_numpy(), y_pred, proba, classes, missing)
