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

# device_state: a device selector, the postcard-encoded state's length (u16),
# the state, then guest memory. postcard: LEB128 varints for integers, one
# byte per bool and Option tag, a varint length before each Vec, variant
# indexes as varints, fixed arrays as their bytes.
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def mmio_state(status, features, queues, device):
    out = b"".join(varint(v) for v in (status, 0, 1)) + varint(features)
    out += b"".join(varint(v) for v in (0, 0, 0))  # queue_sel, generation, interrupt
    out += varint(len(queues))
    for max_size, size, ready, desc, avail, used in queues:
        out += varint(max_size) + varint(size) + bytes([ready])
        out += varint(desc) + varint(avail) + varint(used)
        out += varint(0) + varint(0) + bytes([0])  # next_avail, next_used, event_idx
    return out + device


def device_state(kind, state, image=b""):
    return bytes([kind]) + struct.pack("<H", len(state)) + state + image


VERSION_1 = 1 << 32
ring = (256, 16, 1, DESC, AVAIL, USED)
block_dev = varint(0) + varint(64) + bytes([0])  # Block { capacity: 64, read_only: false }
write("device_state", "block_live", device_state(
    0, mmio_state(0xF, VERSION_1, [ring], block_dev), blk(0, 1, 512, True)))
write("device_state", "block_unstarted", device_state(
    0, mmio_state(0, 0, [(256, 256, 0, 0, 0, 0)], block_dev)))
write("device_state", "rng_live", device_state(
    1, mmio_state(0xF, VERSION_1, [ring], varint(2)), queue_image([[(DATA, 64, True)]], [])))
serial = bytes([0x0C, 0, 0x01, 0x04, 0x03, 0x61, 0x08, 0xB0, 0]) + varint(3) + b"abc"
write("device_state", "serial_input", device_state(2, serial))
kbd = bytes([1, 0, 0x2B, 2, 0, 0xAA])  # scanning, leds, typematic, set, no pending, last_sent
i8042 = bytes([0x05] + [0] * 31) + bytes([3, 1, 0xD1, 1]) + varint(1) + bytes([0xFA, 0, 0, 0]) + kbd
write("device_state", "i8042_pending", device_state(3, i8042))
