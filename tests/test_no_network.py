"""The test suite runs offline: pytest-socket's guard (pyproject addopts) is really active."""
from __future__ import annotations

import socket

import pytest
from pytest_socket import SocketBlockedError


@pytest.mark.filterwarnings("ignore:A test tried to use socket:UserWarning")
def test_internet_socket_is_blocked():
    """Opening a TCP connection to an internet address raises SocketBlockedError before any packet
    is sent, so a test that accidentally downloads something fails loudly instead of hanging or
    silently depending on the network."""
    with pytest.raises(SocketBlockedError):
        socket.create_connection(("1.1.1.1", 80), timeout=1)
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM)


def test_unix_sockets_stay_allowed():
    """Unix-domain sockets (local IPC only) are allowed by --allow-unix-socket."""
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        a.sendall(b"ok")
        assert b.recv(2) == b"ok"
