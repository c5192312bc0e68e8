"""The seccomp program, run by a small classic-BPF interpreter on made-up syscalls."""

from __future__ import annotations

import struct

import pytest
from runner.seccomp import (
    AUDIT_ARCH,
    DENIED,
    RET_ALLOW,
    RET_ERRNO,
    SYSCALLS,
    X32_SYSCALL_BIT,
    filter_program,
)

EPERM_RESULT = RET_ERRNO | 1


def run_bpf(program: bytes, nr: int, arch: int) -> int:
    """Execute the subset of classic BPF the filter uses against one seccomp_data."""
    insns = [struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    data = {0: nr, 4: arch}
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:
            acc = data[k]
        elif code == 0x15:
            pc += jt if acc == k else jf
        elif code == 0x35:
            pc += jt if acc >= k else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        pc += 1


@pytest.mark.parametrize("machine", sorted(SYSCALLS))
def test_every_denied_call_gets_eperm_and_others_pass(machine: str) -> None:
    program = filter_program(machine)
    assert program is not None
    arch = AUDIT_ARCH[machine]
    for name in DENIED:
        assert run_bpf(program, SYSCALLS[machine][name], arch) == EPERM_RESULT, name
    denied = set(SYSCALLS[machine].values())
    for nr in range(0, 460):
        if nr not in denied:
            assert run_bpf(program, nr, arch) == RET_ALLOW, nr


def test_other_abis_get_nothing() -> None:
    program = filter_program("x86_64")
    assert program is not None
    assert run_bpf(program, 39, 0x40000003) == EPERM_RESULT  # i386 getpid via int 0x80
    assert run_bpf(program, X32_SYSCALL_BIT | 39, AUDIT_ARCH["x86_64"]) == EPERM_RESULT


def test_unknown_machines_get_no_filter_rather_than_a_wrong_one() -> None:
    assert filter_program("riscv64") is None


def test_the_tables_agree_on_names() -> None:
    assert set(DENIED) <= set(SYSCALLS["x86_64"]) and set(DENIED) <= set(SYSCALLS["aarch64"])
