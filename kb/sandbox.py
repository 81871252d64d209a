"""Take the network away from the process that runs queries, and bound its memory.

The second of two independent layers (the first is `kb.guard`): even if a query that reaches
another host got past the guard, the process that runs it cannot open a connection.

- **seccomp** (Linux, any user): a filter that makes `socket()` fail with EACCES for every
  family but AF_UNIX (the pipe to the server is a Unix socket pair made before the filter),
  and refuses io_uring (which can open sockets without `socket()`), foreign-architecture
  system calls and x32 ones. It cannot be undone: a filter is inherited by every thread
  and child and `no_new_privs` is set first.
- **a network namespace** (where the process may create one, e.g. as root): the process is
  moved into a namespace with no interface but a loopback that is down, so that even a
  socket that existed could not reach 127.0.0.1 or anything else.

Either one alone closes the network; `deny_network` applies every one it can and says which.
Where neither is available (not Linux, or seccomp disabled) it returns an empty list, and the
server warns at start-up that only the guard stands between a query and another host.

`limit_memory` caps the address space with RLIMIT_AS: an allocation past the cap fails, and
the engine (Rust) stops the process rather than grow; the pool answers and replaces it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import socket

# struct seccomp_data: nr at 0, arch at 4, args[0] at 16 (the low half on little-endian).
_NR, _ARCH, _ARG0 = 0, 4, 16
_LD_W_ABS, _JEQ, _JGE, _RET = 0x20, 0x15, 0x35, 0x06
_ALLOW, _DENY = 0x7FFF0000, 0x00050000 | errno.EACCES  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO
_PR_SET_NO_NEW_PRIVS, _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC = 38, 1, 1
_CLONE_NEWNET = 0x40000000
# machine: (AUDIT_ARCH_*, socket, io_uring_setup, seccomp, first x32 number or None)
_ARCHES = {
    "x86_64": (0xC000003E, 41, 425, 317, 0x40000000),
    "aarch64": (0xC00000B7, 198, 425, 277, None),
}


class _Instruction(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Instruction))]


def seccomp_program(machine: str) -> list[tuple[int, int, int, int]]:
    """The classic-BPF filter, as (code, jump if true, jump if false, k) instructions."""
    arch, sys_socket, sys_io_uring_setup, _, x32 = _ARCHES[machine]
    program = [
        (_LD_W_ABS, 0, 0, _ARCH), (_JEQ, 1, 0, arch), (_RET, 0, 0, _DENY),  # other ABIs: refused
        (_LD_W_ABS, 0, 0, _NR),
    ]
    if x32 is not None:
        program += [(_JGE, 0, 1, x32), (_RET, 0, 0, _DENY)]
    program += [
        (_JEQ, 0, 1, sys_io_uring_setup), (_RET, 0, 0, _DENY),
        (_JEQ, 1, 0, sys_socket), (_RET, 0, 0, _ALLOW),  # anything but socket(): allowed
        (_LD_W_ABS, 0, 0, _ARG0), (_JEQ, 0, 1, socket.AF_UNIX), (_RET, 0, 0, _ALLOW),
        (_RET, 0, 0, _DENY),  # socket() of any other family
    ]
    return program


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _install_seccomp() -> bool:
    machine = platform.machine()
    if platform.system() != "Linux" or machine not in _ARCHES:
        return False
    libc = _libc()
    instructions = seccomp_program(machine)
    array = (_Instruction * len(instructions))(*[_Instruction(*i) for i in instructions])
    program = _Program(len(instructions), array)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    sys_seccomp = _ARCHES[machine][3]
    if libc.syscall(sys_seccomp, _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC,
                    ctypes.byref(program)) == 0:
        return True
    # Without TSYNC (older kernels): this thread only, so call it before starting threads.
    return libc.syscall(sys_seccomp, _SECCOMP_SET_MODE_FILTER, 0, ctypes.byref(program)) == 0


def _enter_empty_network_namespace() -> bool:
    if platform.system() != "Linux":
        return False
    return _libc().unshare(_CLONE_NEWNET) == 0


def deny_network() -> list[str]:
    """Close the network to this process for good; the mechanisms that took effect."""
    applied = []
    if _enter_empty_network_namespace():
        applied.append("network namespace")
    if _install_seccomp():
        applied.append("seccomp")
    return applied


def network_is_closed() -> bool:
    """Whether this process can no longer open an Internet socket (a check, for tests and logs)."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    except OSError:
        return True
    return False


def address_space() -> int | None:
    """The bytes of address space this process maps now (VmSize), on Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def limit_memory(extra_bytes: int) -> int | None:
    """Cap the address space at what is mapped now plus `extra_bytes`; the cap, or None."""
    now = address_space()
    if now is None:
        return None
    cap = now + extra_bytes
    try:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (ValueError, OSError):
        return None
    return cap


if __name__ == "__main__":  # pragma: no cover - a quick look on a new machine
    print("applied:", deny_network(), "closed:", network_is_closed(), "pid:", os.getpid())
