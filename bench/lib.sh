# bench/lib.sh - shell helpers of the bench/*.sh scripts (sourced; needs $PY).

# free_port: a TCP port of 127.0.0.1 free right now
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
