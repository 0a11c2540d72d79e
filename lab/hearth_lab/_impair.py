"""Userspace link impairment (loss, delay, jitter) for kernels without ``sch_netem``.

Run as a script inside a lab's bridge namespace::

    python3 _impair.py HOST_PORT BRIDGE_PORT LOSS_PERCENT DELAY_MS JITTER_MS

Frames received on HOST_PORT (what the host sends) are dropped with probability
LOSS_PERCENT and otherwise sent out of BRIDGE_PORT after DELAY_MS +/- JITTER_MS
(uniform, like netem's default). Frames received on BRIDGE_PORT go to HOST_PORT at once.
``PACKET_VNET_HDR`` carries checksum-offload and GSO metadata across, so veth offloads
can stay on. Prints ``ready`` on stdout once both sockets are bound. Standalone on
purpose: it imports nothing from hearth_lab.
"""

from __future__ import annotations

import heapq
import random
import select
import socket
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4
BUFSIZE = 1 << 18


def _open(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((ifname, 0))
    sock.setblocking(False)
    return sock


def _drain(sock: socket.socket) -> None:
    """Drop whatever was queued before bind() restricted the socket to one interface."""
    while True:
        try:
            sock.recv(BUFSIZE)
        except BlockingIOError:
            return


def _send(sock: socket.socket, frame: bytes) -> None:
    try:  # noqa: SIM105 - cheaper than contextlib.suppress per frame
        sock.send(frame)
    except OSError:
        pass  # link down, no buffer space: the frame is lost, as on a real wire


def main(argv: list[str]) -> int:
    host_if, bridge_if = argv[0], argv[1]
    loss, delay, jitter = float(argv[2]) / 100.0, float(argv[3]) / 1e3, float(argv[4]) / 1e3
    host_sock, bridge_sock = _open(host_if), _open(bridge_if)
    _drain(host_sock)
    _drain(bridge_sock)
    print("ready", flush=True)
    queue: list[tuple[float, int, bytes]] = []
    seq = 0
    while True:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else None
        readable, _, _ = select.select([host_sock, bridge_sock], [], [], timeout)
        for sock in readable:
            while True:
                try:
                    frame, addr = sock.recvfrom(BUFSIZE)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue  # our own transmissions
                if sock is bridge_sock:
                    _send(host_sock, frame)
                    continue
                if loss and random.random() < loss:
                    continue
                wait = delay + (random.uniform(-jitter, jitter) if jitter else 0.0)
                if wait <= 0:
                    _send(bridge_sock, frame)
                else:
                    seq += 1
                    heapq.heappush(queue, (time.monotonic() + wait, seq, frame))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _send(bridge_sock, heapq.heappop(queue)[2])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(0)
