"""What runs where a model is loaded: load it, predict, encode the answer.

This file is *standalone*: it imports the scientific stack and the standard library,
never the ``service`` package, because the strict level runs it inside the
bubblewrap sandbox where nothing of the service is visible but this one file
(bound read-only). It serves both levels:

* :func:`predict` and :func:`encode_answer`: the untrusted half of an evaluation.
  Given the feature columns only (never the labels), the child loads the model,
  calls ``predict`` (and ``predict_proba`` / ``classes_`` for classification) and
  encodes what it got as ``.npy`` blobs (``allow_pickle=False``) behind a JSON
  header. The worker decodes that with a size cap, checks it, and computes every
  metric itself (:mod:`modelreg.evaluation.answers`, :mod:`modelreg.evaluation.scoring`).
* :func:`serve`: the strict level's warm host, started once per worker inside
  bubblewrap. It reads one job at a time on stdin, forks a child per job, sends
  the child's answer on stdout, and before the next job kills every other process
  of the sandbox and wipes the scratch directories.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import mmap
import os
import pickle
import resource
import select
import signal
import struct
import sys
import time
import traceback
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

# Preloaded for every job: importing them costs more than a small evaluation.
import joblib
import numpy
import pandas
import sklearn.ensemble
import sklearn.linear_model
import sklearn.metrics
import sklearn.pipeline
import sklearn.preprocessing
import sklearn.tree

LOADABLE = ("joblib", "pickle", "skops")
# The child's exit status when it could not even send its answer (memory exhausted).
UNREPORTED_EXIT = 113
# Frames on the host's pipes: an 8-byte big-endian length, then that many bytes.
_LENGTH = struct.Struct(">Q")
_ARRAYS = ("y_pred", "proba", "classes")
_SCRATCH = ("/tmp", "/dev/shm")
_LOG = "/tmp/.child.log"
_LOG_TAIL_BYTES = 2000


class ModelRejected(Exception):
    """An artifact that is refused before any of its code runs."""


class NotAModel(ModelRejected):
    """Bytes that are not of the artifact's format at all: random bytes, a text file."""


# The modules that read a joblib or pickle file. An error of the kinds they raise on
# bytes that are no pickle (KeyError: 110 for random bytes), raised in them rather than
# in code the pickle calls, means the file is not one; anything else is a model failing
# to load, said as it is. (A C function that a valid pickle calls failing with one of
# these kinds looks the same: rare, and the message keeps the original error.)
_PICKLE_READERS = ("pickle.py", "gzip.py", "bz2.py", "lzma.py", "_compression.py")
_PICKLE_DATA_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    KeyError,  # an unknown opcode: pickle's dispatch table has no such key
    IndexError,
    ValueError,
    struct.error,
    UnicodeDecodeError,
    zlib.error,
    OSError,  # gzip's BadGzipFile
)


def _not_a_pickle(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    if not isinstance(exc, _PICKLE_DATA_ERRORS) or not frames:
        return False
    where = frames[-1].filename
    return os.path.basename(where) in _PICKLE_READERS or f"{os.sep}joblib{os.sep}" in where


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    cpu_seconds: int
    output_bytes: int = 16 * 1024 * 1024
    open_files: int = 256


def load_model(source: Any, fmt: str, skops_trusted: tuple[str, ...] = ()) -> Any:
    """Load an artifact (a path or a binary file). ``.skops`` passes skops' type check first.

    A skops file is refused, before anything in it is constructed, when it holds a
    type that is neither trusted by skops nor listed in ``skops_trusted``. Bytes that
    are not of the format (random bytes, a text file) raise :class:`NotAModel` saying
    so, with the reader's error: ``this file is not a joblib/pickle model (KeyError:
    110)``, ``this file is not a skops file (BadZipFile: File is not a zip file)``.
    """
    if fmt == "skops":
        import skops.io as sio

        data = source.read() if hasattr(source, "read") else None
        try:
            found = sio.get_untrusted_types(data=data) if data is not None else None
            if found is None:
                found = sio.get_untrusted_types(file=source)
        except (zipfile.BadZipFile, KeyError) as exc:  # no zip, or one without a schema
            raise NotAModel(f"this file is not a skops file ({_cause(exc)})") from None
        untrusted = sorted(set(found) - set(skops_trusted))
        if untrusted:
            raise ModelRejected(
                "the skops artifact contains types that are not trusted: "
                + ", ".join(untrusted[:20])
                + " (MODELREG_SKOPS_TRUSTED_TYPES lists the extra types to accept)"
            )
        if data is not None:
            return sio.loads(data, trusted=list(skops_trusted))
        return sio.load(source, trusted=list(skops_trusted))
    if fmt not in LOADABLE:
        raise ModelRejected(
            f"artifacts of format {fmt!r} cannot be evaluated; use one of {', '.join(LOADABLE)}"
        )
    try:
        return joblib.load(source)
    except _PICKLE_DATA_ERRORS as exc:
        if _not_a_pickle(exc):
            raise NotAModel(f"this file is not a joblib/pickle model ({_cause(exc)})") from None
        raise


def predict(model: Any, X: Any, task: str) -> tuple[dict[str, Any], dict[str, str]]:
    """What the model says about ``X``: arrays by name, and why any is missing.

    ``predict`` failing is an error (nothing can be scored); ``predict_proba`` or
    ``classes_`` failing only leaves out the metrics that need them.
    """
    arrays: dict[str, Any] = {"y_pred": numpy.asarray(model.predict(X))}
    missing: dict[str, str] = {}
    if task != "classification":
        return arrays, missing
    if not hasattr(model, "predict_proba"):
        missing["proba"] = "the model has no predict_proba"
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arrays["proba"] = numpy.asarray(model.predict_proba(X))
        except Exception as exc:
            missing["proba"] = f"{type(exc).__name__}: {exc}"[:500]
    found = getattr(model, "classes_", None)
    if found is None:
        missing["classes"] = "the model has no classes_"
    else:
        arrays["classes"] = numpy.asarray(found)
    return arrays, missing


def encode_answer(header: dict[str, Any], arrays: dict[str, Any]) -> bytes:
    """A JSON header (with each blob's length) and the arrays as ``.npy``, no pickle.

    An array numpy cannot save without pickle (object dtype) is left out, with the
    reason, for the worker to report.
    """
    blobs: list[bytes] = []
    lengths: dict[str, int] = {}
    refused = dict(header.get("missing", {}))
    for name in _ARRAYS:
        if name not in arrays:
            continue
        buffer = io.BytesIO()
        array = arrays[name]
        if array.dtype.hasobject:  # string labels come back as objects: send them as text
            with contextlib.suppress(Exception):
                plain = numpy.array(array.tolist())
                if plain.dtype.kind in "biufU" and plain.shape == array.shape:
                    array = plain
        try:
            numpy.save(buffer, array, allow_pickle=False)
        except ValueError as exc:
            refused[name] = f"not a plain array ({exc})"[:500]
            continue
        blobs.append(buffer.getvalue())
        lengths[name] = len(blobs[-1])
    head = json.dumps({**header, "missing": refused, "arrays": lengths}, default=str).encode()
    return _LENGTH.pack(len(head)) + head + b"".join(blobs)


def run_untrusted(
    artifact: Any, artifact_format: str, features: Any, task: str, skops_trusted: tuple[str, ...]
) -> bytes:
    """Load, predict, encode; any failure becomes an error answer. ``features``: a pickle."""
    started = time.perf_counter()
    try:
        X = pickle.loads(features)  # written by the trusted worker, never by the model
        model = load_model(artifact, artifact_format, skops_trusted)
        loaded = time.perf_counter()
        arrays, missing = predict(model, X, task)
        done = time.perf_counter()
        seconds = {"load": round(loaded - started, 6), "predict": round(done - loaded, 6)}
        return encode_answer({"ok": True, "missing": missing, "seconds": seconds}, arrays)
    except MemoryError:
        return encode_answer({"ok": False, "kind": "memory", "error": "MemoryError"}, {})
    except ModelRejected as exc:
        return encode_answer({"ok": False, "kind": "rejected", "error": str(exc)}, {})
    except BaseException as exc:  # the model's code may raise anything, SystemExit included
        tail = "".join(traceback.format_exception(exc)[-3:])
        error = f"{type(exc).__name__}: {exc}"[:2000]
        return encode_answer({"ok": False, "kind": "error", "error": error, "traceback": tail}, {})


def apply_limits(limits: Limits) -> None:
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # SIGXCPU at the soft limit, SIGKILL a second later if it is ignored.
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.output_bytes, limits.output_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))


# -- the strict level's warm host ---------------------------------------------------------


def _read_exact(fd: int, size: int, into: Any = None) -> Any:
    view = memoryview(into) if into is not None else memoryview(bytearray(size))
    got = 0
    while got < size:
        n = os.readv(fd, [view[got:size]])
        if n == 0:
            raise EOFError
        got += n
    return view.obj


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _send(fd: int, payload: bytes) -> None:
    _write_all(fd, _LENGTH.pack(len(payload)) + payload)


def _non_dumpable() -> None:
    """No ptrace, no /proc/<pid>/mem or fd/ of the host for its same-uid children."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_dumpable = 4
    if libc.prctl(pr_set_dumpable, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def _state() -> dict[str, Any]:
    """What a child could change about the host from outside it (same uid)."""
    limits = {
        name: resource.getrlimit(getattr(resource, name))
        for name in dir(resource)
        if name.startswith("RLIMIT_")
    }
    return {
        "limits": limits,
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "affinity": sorted(os.sched_getaffinity(0)),
    }


def _others() -> list[int]:
    """Every live process of the sandbox's pid namespace but the host and its init."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (1, me):
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            found.append(int(entry))
    return found


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _kill_others() -> bool:
    """SIGKILL everything else until nothing is left; ``False`` if it would not converge."""
    for _ in range(200):
        left = _others()
        if not left:
            return True
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.002)
        _reap()
    return False


def _wipe(top: str) -> bool:
    """Empty a scratch directory, whatever modes the model's code left on it."""
    ok = True
    for root, dirs, files in os.walk(top, topdown=False):
        for name in files:
            path = os.path.join(root, name)
            try:
                os.unlink(path)
            except OSError:
                ok = False
        for name in dirs:
            path = os.path.join(root, name)
            try:
                if os.path.islink(path):
                    os.unlink(path)
                else:
                    os.rmdir(path)
            except OSError:
                ok = False
    with contextlib.suppress(OSError):
        os.chmod(top, 0o700)
    return ok and not os.listdir(top)


def _open_up(top: str) -> None:
    """Restore write and search permission on every directory, so that it can be wiped."""
    for root, dirs, _files in os.walk(top):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
    with contextlib.suppress(OSError):
        os.chmod(top, 0o700)


def _child(job: dict[str, Any], artifact: mmap.mmap, features: mmap.mmap, answer_fd: int) -> None:
    """The forked child of one job: never returns."""
    try:
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR)
        log = os.open(_LOG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        # The host's pipes to the worker are out of reach: the child only has its answer pipe.
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(answer_fd, 3)
        os.closerange(4, 1 << 16)
        apply_limits(Limits(**job["limits"]))
        source = io.BytesIO(artifact[: job["artifact_bytes"]])
        payload = run_untrusted(
            source,
            job["format"],
            features[: job["features_bytes"]],
            job["task"],
            tuple(job.get("skops_trusted", ())),
        )
    except BaseException:
        os._exit(UNREPORTED_EXIT)
    try:
        _write_all(3, payload)
    except BaseException:  # the memory limit can bite here too; the exit status tells then
        os._exit(UNREPORTED_EXIT)
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
    os._exit(0)


def _log_tail() -> str:
    try:
        with open(_LOG, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - _LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _collect(pid: int, read_fd: int, max_bytes: int) -> tuple[bytes | None, int]:
    """The child's answer (``None`` if too large) and its exit status.

    Read until the child has exited, not until end of file: a process it left behind
    may hold the pipe open (the host kills those afterwards).
    """
    chunks: list[bytes] = []
    size = 0
    status: int | None = None
    os.set_blocking(read_fd, False)
    while True:
        readable = select.select([read_fd], [], [], 0.05)[0]
        if not readable:
            done, found = os.waitpid(pid, os.WNOHANG)
            if done == 0:
                continue
            status = found
        try:
            while chunk := os.read(read_fd, 1 << 20):
                size += len(chunk)
                if size > max_bytes:
                    break
                chunks.append(chunk)
            else:
                if status is None:  # end of file: the child closed it, it ends soon
                    status = os.waitpid(pid, 0)[1]
        except BlockingIOError:
            pass
        if size > max_bytes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            status = os.waitpid(pid, 0)[1] if status is None else status
        if status is not None:
            break
    os.close(read_fd)
    code = os.waitstatus_to_exitcode(status)
    return (b"".join(chunks) if size <= max_bytes else None), code


def _one_job(job: dict[str, Any], artifact: mmap.mmap, features: mmap.mmap) -> dict[str, Any]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(job, artifact, features, write_fd)
    os.close(write_fd)
    answer, code = _collect(pid, read_fd, int(job["max_answer_bytes"]))
    return {"exit_code": code, "answer": answer, "output_tail": _log_tail()}


def _warm() -> None:
    """One small load-and-predict before the first job: pandas and scikit-learn import
    modules and build caches lazily on first use; every child then inherits them."""
    X = pandas.DataFrame({"a": [i % 7 + 0.5 for i in range(30)], "b": [i % 3 for i in range(30)]})
    y = [i % 3 for i in range(30)]
    buffer = io.BytesIO()
    joblib.dump(sklearn.ensemble.RandomForestClassifier(n_estimators=3).fit(X, y), buffer)
    buffer.seek(0)
    predict(load_model(buffer, "joblib"), pickle.loads(pickle.dumps(X)), "classification")
    regressor = sklearn.ensemble.RandomForestRegressor(n_estimators=2).fit(X, y)
    predict(regressor, X, "regression")
    encode_answer({"ok": True}, {"y_pred": numpy.zeros(3)})


def serve() -> None:
    """The warm host: one job at a time from stdin, answers on stdout, until stdin ends."""
    _non_dumpable()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    jobs_in, answers_out = os.dup(0), os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    _warm()
    for top in _SCRATCH:
        _wipe(top)
    initial = _state()
    _send(answers_out, json.dumps({"ready": True, "pid": os.getpid()}).encode())
    while True:
        try:
            (length,) = _LENGTH.unpack(_read_exact(jobs_in, _LENGTH.size))
            job = json.loads(bytes(_read_exact(jobs_in, length)))
            # Anonymous mappings, unmapped after the job: a later job's child, which
            # inherits the host's memory, finds nothing of this job's bytes in it.
            artifact = mmap.mmap(-1, max(1, job["artifact_bytes"]))
            features = mmap.mmap(-1, max(1, job["features_bytes"]))
            _read_exact(jobs_in, job["artifact_bytes"], artifact)
            _read_exact(jobs_in, job["features_bytes"], features)
        except EOFError:
            return
        result = _one_job(job, artifact, features)
        artifact.close()
        features.close()
        clean = _kill_others()
        for top in _SCRATCH:
            _open_up(top)
            clean = _wipe(top) and clean
        clean = clean and _state() == initial
        answer = result.pop("answer")
        header = json.dumps({**result, "clean": clean, "has_answer": bool(answer)}).encode()
        _send(answers_out, header)
        _send(answers_out, answer or b"")
        if not clean:
            return  # the worker starts a fresh host for the next job


if __name__ == "__main__":
    serve()
