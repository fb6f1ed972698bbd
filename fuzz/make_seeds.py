#!/usr/bin/env python3
"""Writes the seed corpora (fuzz/corpus/<target>/): small, hand-made inputs
that reach past each parser's first checks. Layouts follow the Rust sources
(upload/src/frame.rs, bundle/src/lib.rs, interfaces/src/{abi,elf}.rs,
pds/kv/core/src/schema.rs, fuzz/fuzz_targets/fs/harness.rs). Needs python3 and, for the module image
seed, a C compiler (cc); run again after a format changes."""
import hashlib, os, struct, subprocess, sys, tempfile, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- command: console lines as typed, and a frame sharing the line ---------
SOH = 1
BEGIN, DATA, END, ABORT, ACK, NAK = 0x10, 0x11, 0x12, 0x13, 0x20, 0x21


def frame(kind, seq, payload):
    body = struct.pack("<BHH", kind, seq, len(payload)) + payload
    return bytes([SOH]) + body + struct.pack("<I", zlib.crc32(body))


for i, line in enumerate([b"help\r\n", b"status\n", b"version\nimages\nlog\n",
                          b"update kv kv-v2 --timeout 500\n", b"rollback kv\n",
                          b"stx\x7fatus\r\n\x1b[Ahelp\x1b[1;5C\n\x03\x04",
                          b"update\tkv kv-v3\n", b"\x00\xff\x01status\n" + b"a" * 170 + b"\n"]):
    put("command", "line%d" % i, line)

# --- descriptor and module image --------------------------------------------


def name(s):
    return s.encode().ljust(32, b"\0")


def descriptor(service, version, schema, imports=(), exports=(), channels=(), regions=()):
    d = b"UPDMOD\x00\x01" + struct.pack("<II", 1, 0) + name(service)
    d += struct.pack("<II", version, schema)
    d += struct.pack("<4I", *(list(imports) + [0] * (4 - len(imports))))
    d += struct.pack("<4I", *(list(exports) + [0] * (4 - len(exports))))
    d += struct.pack("<4I", len(imports), len(exports), len(channels), len(regions))
    d += b"".join(name(c) for c in channels) + name("") * (8 - len(channels))
    d += b"".join(name(r) for r in regions) + name("") * (4 - len(regions))
    return d[:12] + struct.pack("<I", len(d)) + d[16:]


KV2 = descriptor("kv", 2, 2, imports=[1], exports=[1])


def module_image(desc):
    """A tiny x86-64 shared object exporting the descriptor and an entry."""
    src = "const unsigned char UPD_MODULE_DESCRIPTOR[%d] __attribute__((aligned(8))) = {%s};\n" % (
        len(desc), ",".join(str(b) for b in desc))
    src += "const unsigned long UPD_MODULE_ENTRY[4] = {1, 0, 0, 0};\n"
    with tempfile.TemporaryDirectory() as t:
        c, so = os.path.join(t, "m.c"), os.path.join(t, "m.so")
        open(c, "w").write(src)
        subprocess.run(["cc", "-shared", "-nostdlib", "-fPIC", "-Os", "-s", "-Wl,-z,norelro",
                        "-Wl,--hash-style=gnu", "-Wl,--build-id=none", "-o", so, c], check=True)
        return open(so, "rb").read()


def minimal_elf():
    """The ELF reader's own test image: one PT_LOAD segment inside it."""
    img = bytearray(64 + 56 + 16)
    img[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HH", img, 16, 3, 62)  # ET_DYN, x86-64
    struct.pack_into("<Q", img, 32, 64)  # phoff
    struct.pack_into("<HH", img, 54, 56, 1)  # phentsize, phnum
    struct.pack_into("<IIQQQQQQ", img, 64, 1, 5, 120, 0, 0, 16, 32, 8)
    return bytes(img)


try:
    image = module_image(KV2)
except (OSError, subprocess.CalledProcessError) as e:
    sys.exit("make_seeds: cannot build the module image seed: %s" % e)
put("image", "module-kv2.so", image)
put("image", "minimal.elf", minimal_elf())
put("image", "truncated.so", image[:200])
put("image", "descriptor", KV2)

# --- frames: an upload as the sender sends it --------------------------------


def header(service, version, schema, image_len, key_id=b"\0" * 8, target=1, imports=(1,)):
    h = b"UPDBNDL1" + struct.pack("<II", 1, 104) + name(service)
    h += struct.pack("<4I", version, 1, target, schema)
    h += struct.pack("<4I", *(list(imports) + [0] * (4 - len(imports))))
    h += struct.pack("<IIQ", len(imports), 0, image_len) + key_id
    assert len(h) == 104
    return h


small = header("kv", 2, 2, 16)
total = len(small) + 16 + 32 + 64
bundle = small + bytes(range(16)) + bytes(96)
up = frame(BEGIN, 0, struct.pack("<Q", total) + small)
for seq, at in enumerate(range(0, total, 100), 1):
    up += frame(DATA, seq, struct.pack("<I", at) + bundle[at:at + 100])
up += frame(END, seq + 1, b"")
put("frame", "upload", b"\x00" + up)  # first byte: no "line quiet" byte
put("frame", "console-and-frames", b"\x7fstat" + frame(DATA, 7, b"\0\0\0\0hello") + b"us\n" + frame(END, 3, b""))
put("frame", "abort-ack-nak", b"\x00" + frame(ABORT, 1, b"") + frame(ACK, 2, b"ok") + frame(NAK, 3, b"\x04x"))

# --- bundle: mode byte, then header | image (| digest | signature) -----------
key7 = hashlib.sha256(bytes([7] * 32)).digest()[:8]
body = header("kv", 2, 2, len(image), key_id=key7) + image
put("bundle", "signed-here-kv2", b"\x01" + body)  # the harness signs it
put("bundle", "signed-here-wrong-target", b"\x01" + header("kv", 2, 2, len(image), target=2) + image)
h = header("kv", 2, 2, 16, key_id=key7)
raw = h + bytes(16)
raw += hashlib.sha256(raw).digest() + bytes(64)
put("bundle", "unsigned", b"\x00" + raw)
put("bundle", "header-only", b"\x00" + h)

# --- kv state: schema 1 and schema 2 -----------------------------------------
entries = [(b"a", b"1"), (b"b", b""), (b"k" * 32, b"v" * 128)]
s1 = struct.pack("<I", len(entries)) + b"".join(bytes([len(k), len(v)]) + k + v for k, v in entries)
s2 = b"KV2\0" + struct.pack("<I", len(entries)) + b"".join(
    struct.pack("<HHI", len(k), len(v), w) + k + v for w, (k, v) in enumerate(entries, 1))
put("kv_import", "schema1", s1)
put("kv_import", "schema2", s2)
put("kv_import", "schema1-empty", struct.pack("<I", 0))
put("kv_import", "schema2-dup", b"KV2\0" + struct.pack("<I", 2) + (struct.pack("<HHI", 1, 1, 3) + b"xy") * 2)

# --- pre-copy: a sealed incremental export, its change list after the state --
def transfer(state, ranges, base=4, token=5, changes=None, published=None):
    n = len(ranges) if changes is None else changes
    hdr = struct.pack("<IIQIIQQ", 0x58464552, 2, token, 1, n, len(state) if published is None else published, base)
    body = state + bytes(-len(state) % 8) + b"".join(struct.pack("<QQ", a, l) for a, l in ranges)
    return hdr + bytes(64 - len(hdr)) + body
put("precopy_changes", "two-ranges", transfer(bytes(range(40)), [(0, 8), (32, 8)]))
put("precopy_changes", "whole", transfer(bytes(16), [], base=0))
put("precopy_changes", "past-the-state", transfer(bytes(16), [(8, 16), (2**63, 2)]))
put("precopy_changes", "list-past-the-region", transfer(bytes(16), [(0, 1)], changes=2**31))

# --- fs adapters: an image (even: FAT16, odd: FAT32), then damage ------------
# Each patch is `offset: u24 LE, value: u8` within the image's first 512 KiB
# (see fuzz/fuzz_targets/fs/harness.rs).
def patch(offset, value):
    return struct.pack("<I", offset)[:3] + bytes([value])


for v in range(1, 6):
    t = "fs_v%d" % v
    put(t, "fat16-clean", b"\x00")
    put(t, "fat32-clean", b"\x01")
    # The boot sector's bytes-per-sector, sectors-per-cluster and FAT count.
    put(t, "fat16-geometry", b"\x00" + patch(11, 0) + patch(13, 0) + patch(16, 9))
    put(t, "fat32-geometry", b"\x01" + patch(12, 0x80) + patch(13, 255) + patch(44, 0xff))
    # Bytes spread over the FATs and the first directories.
    put(t, "fat16-scatter", b"\x00" + b"".join(patch(o, 0xff) for o in range(512, 200000, 7919)))
    put(t, "fat32-scatter", b"\x01" + b"".join(patch(o, 0xa5) for o in range(16384, 500000, 7919)))
