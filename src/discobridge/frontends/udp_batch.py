"""UDP with recvmmsg/sendmmsg: one system call per batch of datagrams, not two per datagram.

Python's socket module has no batched calls, and one datagram per event-loop callback costs more
than the whole DNS answer (bench/RESULTS.md). Linux's recvmmsg(2)/sendmmsg(2) are reached through
ctypes on buffers allocated once; a reply goes back to the sender's raw sockaddr, never converted
to a Python tuple and back.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import socket
import sys
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

BATCH = 64  # datagrams per system call
DATAGRAM = 4096  # larger queries are cut here and answered FORMERR, as no DNS query needs more
_ROUNDS = 4  # batches per readiness callback, so a flood cannot starve the event loop
_NAME = 28  # sizeof(struct sockaddr_in6), room for either family
_MSG_DONTWAIT = 0x40


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_MSG = ctypes.sizeof(_MMsgHdr)
_IOV = ctypes.sizeof(_IoVec)
_MSG_INTS, _MSG_WORDS, _IOV_WORDS = _MSG // 4, _MSG // 8, _IOV // 8
# Field positions as indexes into the arrays seen as 32- or 64-bit words.
_NAMELEN = _MsgHdr.msg_namelen.offset // 4
_MSG_LEN = _MMsgHdr.msg_len.offset // 4
_IOV_LEN = _IoVec.iov_len.offset // 8


def _libc_calls() -> tuple[ctypes._CFuncPtr, ctypes._CFuncPtr] | None:  # type: ignore[name-defined]
    # The word-index arithmetic above assumes LP64 Linux, where these structures are laid out so.
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8 or _MSG % 8:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    recvmmsg.restype = sendmmsg.restype = ctypes.c_int
    return recvmmsg, sendmmsg


_CALLS = _libc_calls()


def available() -> bool:
    """Whether this platform has recvmmsg/sendmmsg with the expected structure layout."""
    return _CALLS is not None


class _Slots:
    """BATCH message headers, each with its own data buffer, in memory that never moves."""

    def __init__(self, names: ctypes.Array[ctypes.c_char]) -> None:
        self.data = ctypes.create_string_buffer(BATCH * DATAGRAM)
        self.iov = ctypes.create_string_buffer(BATCH * _IOV)
        self.msgs = ctypes.create_string_buffer(BATCH * _MSG)
        self.bytes = memoryview(self.data).cast("B")
        self.iov_words = memoryview(self.iov).cast("B").cast("Q")
        self.msg_words = memoryview(self.msgs).cast("B").cast("Q")
        self.msg_ints = memoryview(self.msgs).cast("B").cast("I")
        self.address = ctypes.addressof(self.msgs)
        data, iov, name = ctypes.addressof(self.data), ctypes.addressof(self.iov), ctypes.addressof(names)
        for slot in range(BATCH):
            self.iov_words[slot * _IOV // 8] = data + slot * DATAGRAM
            self.iov_words[slot * _IOV // 8 + _IOV_LEN] = DATAGRAM
            header = slot * _MSG // 8
            self.msg_words[header] = name + slot * _NAME  # msg_name
            self.msg_words[header + 2] = iov + slot * _IOV  # msg_iov
            self.msg_words[header + 3] = 1  # msg_iovlen
            self.msg_ints[slot * _MSG // 4 + _NAMELEN] = _NAME


class BatchedUdpServer:
    """Answers datagrams on a bound non-blocking socket, a batch per system call."""

    def __init__(self, sock: socket.socket, respond: Callable[[bytes], bytes | None]) -> None:
        assert _CALLS is not None, "check available() first"
        self._recvmmsg, self._sendmmsg = _CALLS
        self._sock = sock
        self._fd = sock.fileno()
        self._respond = respond
        self._names = ctypes.create_string_buffer(BATCH * _NAME)
        self._names_address = ctypes.addressof(self._names)
        self._rx = _Slots(self._names)
        self._tx = _Slots(self._names)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._on_readable)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
        self._sock.close()

    def _on_readable(self) -> None:
        for _ in range(_ROUNDS):
            count = self._recvmmsg(self._fd, self._rx.address, BATCH, _MSG_DONTWAIT, None)
            if count <= 0:
                if count < 0 and ctypes.get_errno() not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    log.debug("dns_udp_error", error=errno.errorcode.get(ctypes.get_errno(), "?"))
                return
            self._answer(count)
            if count < BATCH:
                return

    def _answer(self, count: int) -> None:
        # The per-datagram path: every attribute it touches is a local.
        respond, names = self._respond, self._names_address
        rx_ints, rx_bytes = self._rx.msg_ints, self._rx.bytes
        tx_ints, tx_words, tx_iov, tx_bytes = self._tx.msg_ints, self._tx.msg_words, self._tx.iov_words, self._tx.bytes
        replies = 0
        for slot in range(count):
            header = slot * _MSG_INTS
            start = slot * DATAGRAM
            query = bytes(rx_bytes[start : start + rx_ints[header + _MSG_LEN]])
            namelen = rx_ints[header + _NAMELEN]
            rx_ints[header + _NAMELEN] = _NAME  # the kernel shrinks it; restore for the next batch
            try:
                reply = respond(query)
            except Exception:
                log.debug("dns_query_failed", exc_info=True)
                continue
            if reply is None:
                continue
            size = len(reply)
            if size > DATAGRAM:
                continue
            out = replies * DATAGRAM
            tx_bytes[out : out + size] = reply
            tx_iov[replies * _IOV_WORDS + _IOV_LEN] = size
            tx_words[replies * _MSG_WORDS] = names + slot * _NAME  # msg_name: the sender's address
            tx_ints[replies * _MSG_INTS + _NAMELEN] = namelen
            replies += 1
        sent = 0
        while sent < replies:
            done = self._sendmmsg(self._fd, self._tx.address + sent * _MSG, replies - sent, _MSG_DONTWAIT)
            if done > 0:
                sent += done
            elif ctypes.get_errno() in (errno.EAGAIN, errno.EWOULDBLOCK):
                return  # send buffer full: drop the rest, as UDP may; clients retry
            else:
                sent += 1  # this reply cannot be sent (say, to an unreachable address): the next can
