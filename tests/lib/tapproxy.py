"""A TCP proxy on loopback that keeps every byte it forwards, both ways: what
a packet capture of the link would show (tests of TLS: no plaintext). Also
a relay of TCP to a Unix socket (tests/python-dpr/dnssd_helpers.py)."""
import socket
import threading


class TapProxy:
    """Listens on 127.0.0.1:port and forwards each connection to target
    ((HOST, PORT), or the path of a Unix socket); self.captured() is
    everything seen so far, self.accepted the connections forwarded.
    close() stops it, its connections and its threads."""

    def __init__(self, target: "tuple[str, int] | str"):
        self.target = target
        self.accepted = 0
        self._lsock = socket.socket()
        self._lsock.bind(("127.0.0.1", 0))
        self._lsock.listen(16)
        self.port = self._lsock.getsockname()[1]
        self._lock = threading.Lock()
        self._bytes: list[bytes] = []
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._start(self._accept)

    @property
    def address(self) -> str:
        return "127.0.0.1:%d" % self.port

    def captured(self) -> bytes:
        with self._lock:
            return b"".join(self._bytes)

    def _start(self, fn, *args) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while True:
            try:
                a, _ = self._lsock.accept()
            except OSError:
                return  # closed
            try:
                b = self._connect()
            except OSError:
                a.close()
                continue
            with self._lock:
                if self._closed:
                    a.close()
                    b.close()
                    return
                self.accepted += 1
                self._socks += [a, b]
            self._start(self._pump, a, b)
            self._start(self._pump, b, a)

    def _connect(self) -> socket.socket:
        if isinstance(self.target, str):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.target)
            except OSError:
                s.close()
                raise
            return s
        s = socket.create_connection(self.target, timeout=10)
        s.settimeout(None)
        return s

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            with self._lock:
                self._bytes.append(data)
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        with self._lock:
            self._closed = True
            socks, self._socks = self._socks, []
        try:
            self._lsock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self._lsock.close()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(timeout=10)
