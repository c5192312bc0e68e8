"""A seccomp filter for the sandbox: system calls the code never needs fail with EPERM.

Defence in depth under the namespaces: most of these already fail without privileges,
but each is kernel attack surface that sandboxed code has no use for (keyrings, eBPF,
io_uring, userfaultfd, perf events, module and mount APIs, ptrace of the sandbox's own
supervisor process).  ``clone`` asking for a new namespace fails too, and ``clone3``
(whose flags are in memory a filter cannot read) says ENOSYS, so that the C library
falls back to ``clone``: no namespace of any kind is made inside a sandbox, whether or
not the kernel lets bubblewrap refuse nested user namespaces (gVisor does not:
runner.bwrap).  The program is classic BPF as bubblewrap's --seccomp expects it;
numbers come from the kernel headers (asm/unistd_64.h, asm-generic/unistd.h).
"""

from __future__ import annotations

import platform
import struct

DENIED = (
    "acct",
    "add_key",
    "adjtimex",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "delete_module",
    "fanotify_init",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "memfd_secret",
    "migrate_pages",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pidfd_getfd",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "syslog",
    "umount2",
    "unshare",
    "userfaultfd",
    "vhangup",
)

CLONE_NEW_NAMESPACES = 0x7E020000
"""CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
CLONE_NEWPID | CLONE_NEWNET (linux/sched.h): ``clone`` with any of them is refused."""
CLONE = {"x86_64": 56, "aarch64": 220}
CLONE3 = {"x86_64": 435, "aarch64": 435}

# x86_64 has a few more legacy calls worth closing.
DENIED_X86_64_ONLY = (
    "_sysctl",
    "create_module",
    "get_kernel_syms",
    "iopl",
    "ioperm",
    "nfsservctl",
    "query_module",
    "uselib",
)

SYSCALLS = {
    "x86_64": {
        "_sysctl": 156,
        "acct": 163,
        "add_key": 248,
        "adjtimex": 159,
        "bpf": 321,
        "clock_adjtime": 305,
        "clock_settime": 227,
        "create_module": 174,
        "delete_module": 176,
        "fanotify_init": 300,
        "finit_module": 313,
        "fsconfig": 431,
        "fsmount": 432,
        "fsopen": 430,
        "fspick": 433,
        "get_kernel_syms": 177,
        "init_module": 175,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "io_uring_setup": 425,
        "ioperm": 173,
        "iopl": 172,
        "kcmp": 312,
        "kexec_file_load": 320,
        "kexec_load": 246,
        "keyctl": 250,
        "lookup_dcookie": 212,
        "mbind": 237,
        "memfd_secret": 447,
        "migrate_pages": 256,
        "mount": 165,
        "mount_setattr": 442,
        "move_mount": 429,
        "move_pages": 279,
        "name_to_handle_at": 303,
        "nfsservctl": 180,
        "open_by_handle_at": 304,
        "open_tree": 428,
        "perf_event_open": 298,
        "pidfd_getfd": 438,
        "pivot_root": 155,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "ptrace": 101,
        "query_module": 178,
        "quotactl": 179,
        "quotactl_fd": 443,
        "reboot": 169,
        "request_key": 249,
        "set_mempolicy": 238,
        "setns": 308,
        "settimeofday": 164,
        "swapoff": 168,
        "swapon": 167,
        "syslog": 103,
        "umount2": 166,
        "unshare": 272,
        "uselib": 134,
        "userfaultfd": 323,
        "vhangup": 153,
    },
    "aarch64": {
        "acct": 89,
        "add_key": 217,
        "adjtimex": 171,
        "bpf": 280,
        "clock_adjtime": 266,
        "clock_settime": 112,
        "delete_module": 106,
        "fanotify_init": 262,
        "finit_module": 273,
        "fsconfig": 431,
        "fsmount": 432,
        "fsopen": 430,
        "fspick": 433,
        "init_module": 105,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "io_uring_setup": 425,
        "kcmp": 272,
        "kexec_file_load": 294,
        "kexec_load": 104,
        "keyctl": 219,
        "lookup_dcookie": 18,
        "mbind": 235,
        "memfd_secret": 447,
        "migrate_pages": 238,
        "mount": 40,
        "mount_setattr": 442,
        "move_mount": 429,
        "move_pages": 239,
        "name_to_handle_at": 264,
        "open_by_handle_at": 265,
        "open_tree": 428,
        "perf_event_open": 241,
        "pidfd_getfd": 438,
        "pivot_root": 41,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "ptrace": 117,
        "quotactl": 60,
        "quotactl_fd": 443,
        "reboot": 142,
        "request_key": 218,
        "set_mempolicy": 237,
        "setns": 268,
        "settimeofday": 170,
        "swapoff": 225,
        "swapon": 224,
        "syslog": 116,
        "umount2": 39,
        "unshare": 97,
        "userfaultfd": 282,
        "vhangup": 58,
    },
}

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000

# Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
JSET_K = 0x45
RET_K = 0x06
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
EPERM = 1
ENOSYS = 38
OFFSET_NR = 0
OFFSET_ARCH = 4
OFFSET_ARG0_LOW = 16
"""The low 32 bits of the first argument (both machines are little-endian): clone's flags."""


def denied_numbers(machine: str) -> list[int]:
    table = SYSCALLS[machine]
    names = DENIED + (DENIED_X86_64_ONLY if machine == "x86_64" else ())
    return sorted({table[name] for name in names})


def filter_program(machine: str | None = None) -> bytes | None:
    """The compiled filter for ``machine`` (default: this one); None where it is unknown."""
    machine = machine or platform.machine()
    if machine not in SYSCALLS:
        return None
    insns: list[tuple[int, int, int, int]] = [
        (LD_W_ABS, 0, 0, OFFSET_ARCH),
        (JEQ_K, 1, 0, AUDIT_ARCH[machine]),
        (RET_K, 0, 0, RET_ERRNO | EPERM),  # another ABI (i386 on x86_64): nothing at all
        (LD_W_ABS, 0, 0, OFFSET_NR),
    ]
    checks: list[tuple[int, int]] = []
    if machine == "x86_64":
        checks.append((JGE_K, X32_SYSCALL_BIT))  # the x32 ABI: nothing at all
    checks += [(JEQ_K, nr) for nr in denied_numbers(machine)]
    # Classic BPF jumps only forward: the checks, then clone and clone3 each to its own
    # tail, then ALLOW, the common EPERM, clone3's ENOSYS and clone's flags test.
    deny_at = len(insns) + len(checks) + 3
    for op, value in checks:
        insns.append((op, deny_at - (len(insns) + 1), 0, value))
    clone3_at, clone_at = deny_at + 1, deny_at + 2
    insns.append((JEQ_K, clone_at - (len(insns) + 1), 0, CLONE[machine]))
    insns.append((JEQ_K, clone3_at - (len(insns) + 1), 0, CLONE3[machine]))
    insns += [
        (RET_K, 0, 0, RET_ALLOW),
        (RET_K, 0, 0, RET_ERRNO | EPERM),
        (RET_K, 0, 0, RET_ERRNO | ENOSYS),
        (LD_W_ABS, 0, 0, OFFSET_ARG0_LOW),
        (JSET_K, 1, 0, CLONE_NEW_NAMESPACES),
        (RET_K, 0, 0, RET_ALLOW),
        (RET_K, 0, 0, RET_ERRNO | EPERM),
    ]
    return b"".join(struct.pack("=HBBI", *insn) for insn in insns)
