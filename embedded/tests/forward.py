#!/usr/bin/env python3
"""Loopback TCP forwarder: relays 127.0.0.1:LISTEN_PORT to TARGET_HOST:TARGET_PORT.

The shared conformance runner only talks to loopback hosts; inside the test's own network
namespace this forwarder lets it reach the device address on the TAP link. Each accepted
connection gets its own upstream connection; EOF is passed on as a half-close (so a server's
close after QUIT is seen by the client) and a reset as a reset. Runs until killed.

usage: forward.py LISTEN_PORT TARGET_HOST TARGET_PORT
"""
import socket
import struct
import sys
import threading


def pump(src, dst, done):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                break
            dst.sendall(data)
    except OSError:
        # Pass a reset on as a reset (SO_LINGER 0 then close).
        for s in (src, dst):
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass
    finally:
        done.release()


def relay(client, target):
    try:
        upstream = socket.create_connection(target, timeout=10)
    except OSError:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        return
    upstream.settimeout(None)
    for s in (client, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    done = threading.Semaphore(0)
    threading.Thread(target=pump, args=(client, upstream, done), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, client, done), daemon=True).start()
    done.acquire()
    done.acquire()
    for s in (client, upstream):
        try:
            s.close()
        except OSError:
            pass


def main():
    listen_port, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(256)
    print("forwarding 127.0.0.1:%d to %s:%d" % (listen_port, host, port), flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=relay, args=(client, (host, port)), daemon=True).start()


if __name__ == "__main__":
    main()
