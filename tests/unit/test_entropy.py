"""Random tokens drawn from the pooled OS randomness (sentral.pbx.sip.entropy)."""

from __future__ import annotations

import os

from sentral.pbx.sip import entropy


def test_tokens_have_the_asked_length_and_never_repeat() -> None:
    tokens = [entropy.token_hex(8) for _ in range(20_000)]  # several refills of the pool
    assert all(len(token) == 16 and int(token, 16) >= 0 for token in tokens)
    assert len(set(tokens)) == len(tokens)
    assert len(entropy.token_bytes(3)) == 3
    assert len(entropy.token_bytes(entropy.BLOCK + 10)) == entropy.BLOCK + 10


def test_randbits_stays_in_range_and_uses_every_bit() -> None:
    values = [entropy.randbits(12) for _ in range(5_000)]
    assert all(0 <= value < 2**12 for value in values)
    # The top and the bottom bit are both set somewhere: no byte-rounding left them constant.
    assert any(value >> 11 for value in values)
    assert any(value & 1 for value in values)
    assert entropy.randbits(48) < 2**48


def test_a_forked_child_does_not_repeat_its_parents_tokens() -> None:
    entropy.token_hex(1)  # the parent's pool holds unused bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, entropy.token_hex(16).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 32
    assert child != entropy.token_hex(16)
