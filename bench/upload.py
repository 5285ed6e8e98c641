"""A 1 GiB artifact through ``modelreg serve``: memory growth and throughput against ``cp``.

Starts ``modelreg serve --no-evaluation-worker`` (1 worker, SQLite) in a temporary
directory, writes a 1 GiB file there, times ``cp`` of it to the same disk (then
``fsync`` of the copy, as the artifact store fsyncs what it stores), uploads it as a
streamed multipart body (``http.client`` + ``MultipartStream``, never in memory),
downloads it back to a file in the same directory (streamed, fsynced, sha256 checked),
and samples the worker's VmRSS throughout. Targets (issue 6): worker memory growth
under 64 MiB; upload and download throughput at least half of ``cp``'s.

    .venv/bin/python bench/upload.py [--size-mib 1024] [--tmp DIR] [--keep]

A measurement, not a test: it always exits 0.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import (
    ADMIN_TOKEN,
    BLOCK,
    HOST,
    ModelregServer,
    RssSampler,
    call_json,
    log,
    machine_load,
    post_run,
    status_kib,
)

from modelreg.client import Registry
from modelreg.client.transport import sha256_of

MEMORY_TARGET_MIB = 64
THROUGHPUT_TARGET = 0.5
WARM_UP_MIB = 64


def make_file(path: Path, size: int) -> str:
    """``size`` bytes: 1 MiB of random bytes, each block stamped with its counter."""
    seed = os.urandom(BLOCK)
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for i in range(size // BLOCK):
            block = i.to_bytes(8, "big") + seed[8:]
            digest.update(block)
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())
    return digest.hexdigest()


def restamp(path: Path, stamp: int) -> str:
    """Change the file's first 8 bytes (a new blob for the store); its new sha256."""
    with path.open("r+b") as fh:
        fh.write((1 << 62 | stamp).to_bytes(8, "big"))
        fh.flush()
        os.fsync(fh.fileno())
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(BLOCK):
            digest.update(chunk)
    return digest.hexdigest()


def drop_from_cache(path: Path) -> None:
    """Ask the kernel to forget ``path``'s pages (clean after fsync), so reads hit the disk
    about as much for every contender. Best effort."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def prime_memory(work: Path, size: int) -> None:
    """Write ``size`` bytes to a scratch file and delete it, untimed, right before a
    contender runs, so that each one finds the same amount of freshly freed memory.

    Why: this VM's balloon driver hands free pages back to the hypervisor a couple
    of seconds after they are freed, and the first write into such a page faults it
    back in. Measured here: writing 1 GiB to a new file took 1.74-2.07 s when the
    process had paused 4 s first, 0.22-0.23 s right after another 1 GiB file was
    deleted (fsync 0.39-0.42 s either way). Without this, whichever contender came
    after a pause (often the download) paid that cost, and ``cp`` did or did not at
    random. A file, not anonymous memory: 2 GiB of anonymous memory freed just before
    made ``cp`` 2x and the download 2.7x slower (huge pages, returned at once).
    """
    scratch = work / "prime.bin"
    block = b"\xa5" * BLOCK
    with scratch.open("wb") as fh:
        for _ in range(size // BLOCK):
            fh.write(block)
    scratch.unlink()


def level(read: Path, work: Path) -> None:
    """The same start for every contender: what it reads is not cached, and there is
    freshly freed memory for a read and a written copy of it."""
    drop_from_cache(read)
    prime_memory(work, 2 * read.stat().st_size)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def time_cp(src: Path, dst: Path) -> tuple[float, float]:
    """Seconds for ``cp`` alone and for ``cp`` + fsync of the copy and its directory."""
    level(src, dst.parent)
    t0 = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    t1 = time.perf_counter()
    fsync_path(dst)
    fsync_path(dst.parent)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t0


def download(server: ModelregServer, run_id: int, dst: Path) -> tuple[float, str, int]:
    """The project's own client (``Registry.download_artifact``: streamed, sha256
    checked against the ETag), then fsync of the file and its directory."""
    t0 = time.perf_counter()
    with Registry(f"http://{HOST}:{server.port}", ADMIN_TOKEN, timeout=600) as registry:
        registry.download_artifact(run_id, dst)
    fsync_path(dst)
    fsync_path(dst.parent)
    elapsed = time.perf_counter() - t0
    return elapsed, sha256_of(dst), dst.stat().st_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--tmp", default=None, help="parent of the temporary directory")
    p.add_argument("--repeat", type=int, default=2, help="cp/upload/download rounds")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    size = args.size_mib * BLOCK

    work = Path(tempfile.mkdtemp(prefix="modelreg-upload-", dir=args.tmp))
    server = ModelregServer(work / "server")
    (work / "server").mkdir()
    rows: list[tuple[str, float, float, float]] = []  # name, cp, upload, download seconds
    try:
        src = work / "artifact.bin"
        log(f"writing {args.size_mib} MiB to {src} (load {machine_load()})")
        expected = make_file(src, size)
        server.start()
        (worker,) = server.workers()
        conn = server.connection()
        call_json(conn, "POST", "/models", {"name": "big"})
        call_json(conn, "POST", "/models/big/versions", {"version": "1.0"})
        tiny = work / "tiny.bin"
        tiny.write_bytes(b"warm-up" * 1000)
        run = post_run(conn, "big", "1.0", tiny, {})  # the worker imports everything first
        download(server, run["id"], work / "tiny.out")
        conn.close()
        rss_before = status_kib(worker, "VmRSS")
        hwm_before = status_kib(worker, "VmHWM")
        peak_rss = rss_before
        log(f"worker {worker}: VmRSS {rss_before / 1024:.1f} MiB, VmHWM {hwm_before / 1024:.1f}")
        sampler = RssSampler(worker)
        sampler.start()
        conn = server.connection()
        # Warm-up, untimed (its memory counts): both processes grow their heaps (read
        # buffers, the hashing thread's batches) to what a large transfer uses; without
        # it the first round alone paid for that (0.47 against 0.57).
        warm = work / "warm.bin"
        make_file(warm, min(size, WARM_UP_MIB * BLOCK))
        run = post_run(conn, "big", "1.0", warm, {})
        download(server, run["id"], work / "warm.out")
        warm.unlink()
        (work / "warm.out").unlink()
        conn.close()
        peak_rss = max(peak_rss, sampler.finish())

        for i in range(args.repeat):
            copy = work / f"copy-{i}.bin"
            cp_s, cp_sync_s = time_cp(src, copy)
            copy.unlink()
            log(f"round {i + 1}: cp {cp_s:.2f} s, cp+fsync {cp_sync_s:.2f} s")

            level(src, work)
            sampler = RssSampler(worker)
            sampler.start()
            conn = server.connection()
            t0 = time.perf_counter()
            run = post_run(conn, "big", "1.0", src, {"params": {"round": i}})
            up_s = time.perf_counter() - t0
            conn.close()
            if run["artifact"]["sha256"] != expected or run["artifact"]["size"] != size:
                raise RuntimeError(f"stored artifact differs: {run['artifact']}")
            log(f"round {i + 1}: upload {up_s:.2f} s (run {run['id']})")

            out = work / f"download-{i}.bin"
            blob = server.artifact_root / "sha256" / expected[:2] / expected[2:4] / expected
            level(blob, work)
            down_s, got, got_size = download(server, run["id"], out)
            peak_rss = max(peak_rss, sampler.finish())
            out.unlink()
            if got != expected or got_size != size:
                raise RuntimeError("downloaded artifact differs from the upload")
            log(f"round {i + 1}: download {down_s:.2f} s (sha256 ok)")
            rows.append((f"round {i + 1}", cp_sync_s, up_s, down_s))
            # New content for the next round: the store deduplicates by sha256.
            expected = restamp(src, i + 1)
        hwm_after = status_kib(worker, "VmHWM")
        rss_after = status_kib(worker, "VmRSS")
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")

    mib = size / BLOCK
    growth_hwm = (hwm_after - hwm_before) / 1024
    growth_rss = (peak_rss - rss_before) / 1024
    print(f"upload.py: {mib:.0f} MiB artifact, 1 worker, SQLite, load {machine_load()}")
    print(
        f"{'round':<9} {'cp+fsync s':>10} {'upload s':>9} {'download s':>10} {'cp MiB/s':>9} "
        f"{'up MiB/s':>9} {'down MiB/s':>10} {'up/cp':>6} {'down/cp':>7}"
    )
    for name, cp_s, up_s, down_s in rows:
        up, down = cp_s / up_s, cp_s / down_s
        print(
            f"{name:<9} {cp_s:>10.2f} {up_s:>9.2f} {down_s:>10.2f} {mib / cp_s:>9.0f} "
            f"{mib / up_s:>9.0f} {mib / down_s:>10.0f} {up:>6.2f} {down:>7.2f}"
        )
    med_up = sorted(r[1] / r[2] for r in rows)[len(rows) // 2]
    med_down = sorted(r[1] / r[3] for r in rows)[len(rows) // 2]

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print()
    print(f"{'measure':<44} {'value':>9} {'target':>8}  verdict")
    print(
        f"{'worker VmHWM growth (MiB)':<44} {growth_hwm:>9.1f} {'< 64':>8}  "
        f"{verdict(growth_hwm < MEMORY_TARGET_MIB)}"
    )
    print(
        f"{'worker peak sampled VmRSS growth (MiB)':<44} {growth_rss:>9.1f} {'< 64':>8}  "
        f"{verdict(growth_rss < MEMORY_TARGET_MIB)}"
    )
    print(f"{'worker VmRSS after (MiB)':<44} {rss_after / 1024:>9.1f}")
    print(
        f"{'upload throughput / cp+fsync (worst round)':<44} {min(r[1] / r[2] for r in rows):>9.2f}"
        f" {'>= 0.5':>8}  {verdict(min(r[1] / r[2] for r in rows) >= THROUGHPUT_TARGET)}"
    )
    print(
        f"{'download throughput / cp+fsync (worst round)':<44} "
        f"{min(r[1] / r[3] for r in rows):>9.2f} {'>= 0.5':>8}  "
        f"{verdict(min(r[1] / r[3] for r in rows) >= THROUGHPUT_TARGET)}"
    )
    print(f"(median over rounds: upload/cp {med_up:.2f}, download/cp {med_down:.2f})")


if __name__ == "__main__":
    main()
