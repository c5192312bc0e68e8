"""The seccomp program, run by a small classic-BPF interpreter on made-up syscalls."""

from __future__ import annotations

import struct

import pytest
from runner.seccomp import (
    AUDIT_ARCH,
    CLONE,
    CLONE3,
    DENIED,
    RET_ALLOW,
    RET_ERRNO,
    SYSCALLS,
    X32_SYSCALL_BIT,
    filter_program,
)

EPERM_RESULT = RET_ERRNO | 1
ENOSYS_RESULT = RET_ERRNO | 38
# linux/sched.h; SIGCHLD in the low byte as fork() passes it.
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x2000000, 0x4000000, 0x8000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
FORK_FLAGS = 0x01200000 | 17  # CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD
THREAD_FLAGS = 0x3D0F00  # glibc's pthread_create: VM, FS, FILES, SIGHAND, THREAD, SYSVSEM...


def run_bpf(program: bytes, nr: int, arch: int, arg0: int = 0) -> int:
    """Execute the subset of classic BPF the filter uses against one seccomp_data."""
    insns = [struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    data = {0: nr, 4: arch, 16: arg0 & 0xFFFFFFFF}
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:
            acc = data[k]
        elif code == 0x15:
            pc += jt if acc == k else jf
        elif code == 0x35:
            pc += jt if acc >= k else jf
        elif code == 0x45:
            pc += jt if acc & k else jf
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
    denied = set(SYSCALLS[machine].values()) | {CLONE3[machine]}
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


@pytest.mark.parametrize("machine", sorted(SYSCALLS))
def test_clone_makes_processes_and_threads_but_no_namespace(machine: str) -> None:
    program = filter_program(machine)
    assert program is not None
    arch, clone = AUDIT_ARCH[machine], CLONE[machine]
    assert run_bpf(program, clone, arch, FORK_FLAGS) == RET_ALLOW
    assert run_bpf(program, clone, arch, THREAD_FLAGS) == RET_ALLOW
    for flag in (
        CLONE_NEWNS,
        CLONE_NEWCGROUP,
        CLONE_NEWUTS,
        CLONE_NEWIPC,
        CLONE_NEWUSER,
        CLONE_NEWPID,
        CLONE_NEWNET,
    ):
        assert run_bpf(program, clone, arch, FORK_FLAGS | flag) == EPERM_RESULT, hex(flag)
    # Only the low 32 bits are read: the flags all live there.
    assert run_bpf(program, clone, arch, (1 << 40) | FORK_FLAGS) == RET_ALLOW


@pytest.mark.parametrize("machine", sorted(SYSCALLS))
def test_clone3_is_absent_so_the_c_library_falls_back_to_clone(machine: str) -> None:
    program = filter_program(machine)
    assert program is not None
    assert run_bpf(program, CLONE3[machine], AUDIT_ARCH[machine]) == ENOSYS_RESULT
