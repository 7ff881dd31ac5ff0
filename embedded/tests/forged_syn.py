#!/usr/bin/env python3
"""Sends TCP SYNs with a forged source address, for tests/tap.rs (needs root: a raw socket).

usage: forged_syn.py SOURCE DESTINATION PORT COUNT

Nobody answers for SOURCE, so the destination's SYN-ACKs go unanswered: each SYN leaves a
connection half-open there until the destination gives up on it.
"""
import random
import socket
import struct
import sys


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def syn(source, destination, source_port, port):
    src, dst = socket.inet_aton(source), socket.inet_aton(destination)
    data_offset, flags, window = 5 << 4, 0x02, 64240
    segment = struct.pack("!HHIIBBHHH", source_port, port, random.getrandbits(32), 0,
                          data_offset, flags, window, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(segment))
    segment = segment[:16] + struct.pack("!H", checksum(pseudo + segment)) + segment[18:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), random.getrandbits(16),
                         0, 64, socket.IPPROTO_TCP, 0, src, dst)
    return header + segment


def main():
    source, destination, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for i in range(count):
        raw.sendto(syn(source, destination, 40000 + i, port), (destination, 0))


if __name__ == "__main__":
    main()
