"""Health check of the FerretDB stand-in: `ping` over the MongoDB wire protocol (OP_MSG).

What the real mongo service's `mongosh --eval "db.adminCommand('ping').ok"` checks, with
Python's standard library only: exits 0 when the server answers ok: 1, else 1.
Usage: python3 mongo_ping.py [host:port] (default 127.0.0.1:27017).
"""

from __future__ import annotations

import socket
import struct
import sys

OP_MSG = 2013


def _bson(fields: dict[str, int | str]) -> bytes:
    body = b""
    for name, value in fields.items():
        key = name.encode() + b"\x00"
        if isinstance(value, int):
            body += b"\x10" + key + struct.pack("<i", value)
        else:
            raw = value.encode() + b"\x00"
            body += b"\x02" + key + struct.pack("<i", len(raw)) + raw
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def _ok(doc: bytes) -> float:
    """The reply's top-level `ok`; skips the other fields by their BSON type's size."""
    fixed = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x10: 4, 0x11: 8, 0x12: 8}
    pos = 4
    while doc[pos] != 0:
        kind = doc[pos]
        end = doc.index(b"\x00", pos + 1)
        name = doc[pos + 1 : end].decode()
        pos = end + 1
        if name == "ok":
            if kind == 0x01:
                return float(struct.unpack_from("<d", doc, pos)[0])
            if kind in (0x10, 0x12):
                return float(int.from_bytes(doc[pos : pos + fixed[kind]], "little", signed=True))
            if kind == 0x08:
                return float(doc[pos])
            return 0.0
        if kind in fixed:
            pos += fixed[kind]
        elif kind in (0x02, 0x0D, 0x0E):  # strings: int32 length, then the bytes
            pos += 4 + struct.unpack_from("<i", doc, pos)[0]
        elif kind in (0x03, 0x04):  # documents and arrays carry their own length
            pos += struct.unpack_from("<i", doc, pos)[0]
        elif kind == 0x05:  # binary: int32 length, subtype byte, bytes
            pos += 5 + struct.unpack_from("<i", doc, pos)[0]
        else:
            return 0.0
    return 0.0


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data


def ping(host: str, port: int, timeout: float = 4) -> bool:
    payload = struct.pack("<I", 0) + b"\x00" + _bson({"ping": 1, "$db": "admin"})
    header = struct.pack("<iiii", 16 + len(payload), 1, 0, OP_MSG)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(header + payload)
        length, _, _, opcode = struct.unpack("<iiii", _read(sock, 16))
        reply = _read(sock, length - 16)
    # flagBits (4 bytes), then section kind 0 and the reply document.
    return opcode == OP_MSG and reply[4] == 0 and _ok(reply[5:]) == 1.0


def main() -> int:
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:27017").rpartition(":")
    try:
        return 0 if ping(host or "127.0.0.1", int(port)) else 1
    except OSError as exc:
        print(f"mongo ping: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
