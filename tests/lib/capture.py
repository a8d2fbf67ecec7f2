"""A packet capture without tcpdump: every frame on one interface
(AF_PACKET, root only), and the TCP payloads of one port from them, to
check that a known value never crosses a link in plain text.

As a program (inside a network namespace: ip netns exec NS python3
capture.py IFACE[,IFACE...] PORT STOPFILE OUT), it captures until STOPFILE
exists and writes the payloads of PORT to OUT, then the count of frames of
PORT to OUT.count. (On a Linux bridge, capture on its ports: the bridge's
own device does not see what it forwards between them.)"""
import os
import socket
import struct
import sys
import threading
import time


class Capture:
    """Every frame on iface while it runs (a thread)."""

    def __init__(self, iface: str = "lo"):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        # a large buffer: a busy interface must not drop frames while this
        # thread waits for the CPU (SO_RCVBUFFORCE: root, above rmem_max)
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
        self.sock.bind((iface, 0))
        self.sock.settimeout(0.2)
        self.frames: list[bytes] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            try:
                self.frames.append(self.sock.recv(65535))
            except socket.timeout:
                pass
        # what the kernel still holds (this thread may lag behind)
        self.sock.setblocking(False)
        while True:
            try:
                self.frames.append(self.sock.recv(65535))
            except BlockingIOError:
                break

    def stop(self):
        self.done.set()
        self.thread.join()
        self.sock.close()

    def tcp_payloads(self, port: int):
        """The TCP payloads (IPv4 over Ethernet) from or to port."""
        for f in self.frames:
            ip = f[14:]
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
                continue
            tcp = ip[(ip[0] & 15) * 4:]
            if len(tcp) < 20:
                continue
            sport, dport = struct.unpack("!HH", tcp[:4])
            if port in (sport, dport):
                yield tcp[(tcp[12] >> 4) * 4:]


def main():
    iface, port, stopfile, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    caps = [Capture(i) for i in iface.split(",")]
    while not os.path.exists(stopfile):
        time.sleep(0.2)
    payloads = []
    for cap in caps:
        cap.stop()
        payloads += cap.tcp_payloads(port)
    with open(out, "wb") as f:
        f.write(b"".join(payloads))
    with open(out + ".count", "w") as f:
        f.write("%d\n" % len(payloads))


if __name__ == "__main__":
    main()
