"""StreamingSha256: the same digest as hashlib, inline or on its thread."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from modelreg.client.hashing import StreamingSha256


@pytest.mark.parametrize("size", [0, 1, 4 * 1024 * 1024, 4 * 1024 * 1024 + 1, 9_000_001])
def test_the_digest_is_hashlibs_whether_hashed_inline_or_on_the_thread(size: int) -> None:
    data = os.urandom(size)
    digest = StreamingSha256()
    for start in range(0, size, 65_536):
        digest.update(data[start : start + 65_536])

    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_buffer_reused_after_update_does_not_change_the_digest() -> None:
    # A caller may refill one bytearray for every chunk; the thread hashes later.
    chunks = [os.urandom(65_536) for _ in range(40)]
    buffer = bytearray(65_536)
    view = memoryview(buffer)
    digest = StreamingSha256(background_after=0)
    for chunk in chunks:
        buffer[:] = chunk
        digest.update(view)
    buffer[:] = bytes(65_536)

    assert digest.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()


def test_closing_an_abandoned_stream_leaves_no_thread_behind() -> None:
    before = threading.active_count()
    digest = StreamingSha256(background_after=0)
    digest.update(os.urandom(3 * 1024 * 1024))

    assert threading.active_count() == before + 1
    digest.close()
    assert threading.active_count() == before


def test_asking_for_the_digest_twice_gives_the_same_answer() -> None:
    digest = StreamingSha256(background_after=0)
    digest.update(b"x" * 2_000_000)

    assert digest.hexdigest() == digest.hexdigest() == hashlib.sha256(b"x" * 2_000_000).hexdigest()
