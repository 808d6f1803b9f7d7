"""Makes this Python process (and, through PYTHONPATH, its children) unable to reach the
network beyond loopback and Unix sockets. Every refused attempt is appended to the file
named by PGKB_NETGUARD_LOG, so the tests can prove nothing even tried to download.
"""

import ipaddress
import os
import socket
import traceback

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _is_local(host) -> bool:
    if host is None:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(what: str):
    log = os.environ.get("PGKB_NETGUARD_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"pid {os.getpid()}: {what}\n{''.join(traceback.format_stack(limit=40))}\n")
    raise OSError(101, f"network unreachable (test guard): {what}")


def install() -> None:
    if getattr(socket, "_pgkb_guarded", False):
        return
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            _refuse(f"connect to {address!r}")
        return real_connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            _refuse(f"connect to {address!r}")
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_local(host):
            _refuse(f"name lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    socket._pgkb_guarded = True


install()
