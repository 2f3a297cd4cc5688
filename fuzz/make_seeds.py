#!/usr/bin/env python3
"""Writes the valid seed inputs in seeds/<target>/ (committed; rerun to regenerate)."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

F_NEXT, F_WRITE = 1, 2
DESC, AVAIL, USED = 0x0, 0x100, 0x200
HDR, DATA, STATUS = 0x300, 0x400, 0x700


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def queue_image(chains, headers):
    """A memory image with `chains` (lists of (addr, len, writable)) published."""
    mem = bytearray(STATUS + 1)
    idx, heads = 0, []
    for chain in chains:
        heads.append(idx)
        for i, (addr, ln, w) in enumerate(chain):
            last = i + 1 == len(chain)
            flags = (F_WRITE if w else 0) | (0 if last else F_NEXT)
            struct.pack_into("<QIHH", mem, DESC + 16 * idx, addr, ln, flags, idx + 1)
            idx += 1
    struct.pack_into("<HH", mem, AVAIL, 0, len(heads))
    for i, h in enumerate(heads):
        struct.pack_into("<H", mem, AVAIL + 4 + 2 * i, h)
    for addr, data in headers:
        mem[addr:addr + len(data)] = data
    return bytes(mem)


def blk(kind, sector, data_len, writable):
    hdr = struct.pack("<IIQ", kind, 0, sector)
    chain = [(HDR, 16, False)]
    if data_len:
        chain.append((DATA, data_len, writable))
    chain.append((STATUS, 1, True))
    return queue_image([chain], [(HDR, hdr), (DATA, bytes(range(256)) * 2)])


write("block_request", "in", blk(0, 1, 512, True))
write("block_request", "out", blk(1, 2, 512, False))
write("block_request", "flush", blk(4, 0, 0, False))
write("block_request", "get_id", blk(8, 0, 20, True))
write("block_request", "two_requests", queue_image(
    [[(HDR, 16, False), (DATA, 512, True), (STATUS, 1, True)],
     [(HDR, 16, False), (STATUS, 1, True)]],
    [(HDR, struct.pack("<IIQ", 0, 0, 3))]))


def vsock(op, payload=b"", src=3, dst=2):
    return struct.pack("<QQIIIHHIII", src, dst, 1234, 5000, len(payload), 1, op, 0, 65536, 0) + payload


write("vsock_packet", "request", vsock(1))
write("vsock_packet", "rw", vsock(5, b"hello over vsock"))
write("vsock_packet", "credit_request", vsock(7))
write("vsock_packet", "shutdown", vsock(4))
write("vsock_packet", "connect_line", b"CONNECT 5000\n")

# vsock_device: the same packets in a TX queue (one readable descriptor each).
def vsock_queue(packets):
    mem = bytearray(0x800)
    struct.pack_into("<HH", mem, AVAIL, 0, len(packets))
    addr = 0x400
    for i, p in enumerate(packets):
        struct.pack_into("<QIHH", mem, DESC + 16 * i, addr, len(p), 0, 0)
        struct.pack_into("<H", mem, AVAIL + 4 + 2 * i, i)
        mem[addr:addr + len(p)] = p
        addr += (len(p) + 15) // 16 * 16
    return bytes(mem)


write("vsock_device", "request_rw_credit", vsock_queue([vsock(1), vsock(5, b"data"), vsock(7), vsock(3)]))
write("vsock_device", "shutdown", vsock_queue([vsock(4)]))

frame = bytes(12) + b"\xff" * 6 + b"\x06\x00\xac\x10\x00\x02" + b"\x88\xb5" + b"hello".ljust(46, b"\0")
write("net_header", "frame", frame)
write("net_header", "csum_offload", b"\x01" + frame[1:])

# mmio_registers: 0x800 bytes of memory (a queue with one IN request), then
# register writes that negotiate VERSION_1, set up queue 0 and notify it.
def w(off, val):
    return struct.pack("<BHI", 5, off, val)  # kind 5: write, 4 bytes


mem = blk(0, 1, 512, True).ljust(0x800, b"\0")
ops = b"".join([
    w(0x70, 0), w(0x70, 1), w(0x70, 3),
    w(0x24, 1), w(0x20, 1), w(0x70, 0xb),
    w(0x30, 0), w(0x38, 16),
    w(0x80, DESC), w(0x84, 0), w(0x90, AVAIL), w(0x94, 0), w(0xa0, USED), w(0xa4, 0),
    w(0x44, 1), w(0x70, 0xf), w(0x50, 0),
    struct.pack("<BHI", 4, 0x100, 0),  # 4-byte read of the capacity
])
write("mmio_registers", "block_in", mem + ops)

# http_request: a 2-byte prefix (payload-limit index, continue_sent), then one
# connection's bytes.
LIMIT_51200, LIMIT_100 = 5, 3
put_mc = b'{"vcpu_count": 2, "mem_size_mib": 256}'
write("http_request", "get", bytes([LIMIT_51200, 0]) + b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
write("http_request", "put_body", bytes([LIMIT_51200, 0]) + b"PUT /machine-config HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(put_mc) + put_mc)
write("http_request", "pipelined", bytes([LIMIT_100, 0]) + b"GET /version HTTP/1.1\r\n\r\nPATCH /vm HTTP/1.1\r\nContent-Length: 19\r\n\r\n{\"state\": \"Paused\"}GET / HTTP/1.0\r\n\r\n")
write("http_request", "expect", bytes([LIMIT_100, 0]) + b"PUT /actions HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 32\r\n\r\n")
write("http_request", "chunked", bytes([LIMIT_51200, 0]) + b"PUT /vm HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
write("http_request", "close", bytes([LIMIT_51200, 1]) + b"GET /machine-config HTTP/1.1\r\nConnection: close\r\n\r\n")

# api_body: the endpoint's index in api_body.rs's ENDPOINTS, then the body.
api_bodies = {
    4: b'{"vcpu_count": 2, "mem_size_mib": 1024, "smt": false, "track_dirty_pages": false, "huge_pages": "None"}',
    5: b'{"mem_size_mib": 64}',
    6: b'{"kernel_image_path": "/vmlinux", "boot_args": "console=ttyS0 reboot=k panic=1", "initrd_path": null}',
    7: b'{"log_path": "/log", "level": "Info", "show_level": true, "show_log_origin": false}',
    8: b'{"metrics_path": "/metrics"}',
    9: b'{"serial_out_path": "/serial"}',
    10: b'{"vsock_id": "vsock0", "guest_cid": 3, "uds_path": "/v.sock"}',
    11: b'{"rate_limiter": null}',
    12: b'{"drive_id": "rootfs", "path_on_host": "/rootfs.ext4", "is_root_device": true, "is_read_only": false, "cache_type": "Unsafe", "io_engine": "Sync"}',
    13: b'{"drive_id": "rootfs", "path_on_host": "/new.ext4"}',
    14: b'{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:10:00:02"}',
    15: b'{"iface_id": "eth0", "rx_rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 100}}}',
    16: b'{"action_type": "InstanceStart"}',
    17: b'{"state": "Paused"}',
}
for index, body in api_bodies.items():
    write("api_body", "endpoint_%02d" % index, bytes([index]) + body)
