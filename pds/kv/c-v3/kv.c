/*
 * kv v3 written in C: the same service as the Rust kv-v3 (pds/kv/v3,
 * pds/kv/core), against the generated headers of the module ABI and the
 * kv wire format. Same replies to every request, same state schemas
 * (exports and imports schema 2, with write counts; imports and, for a
 * rollback to v1, exports schema 1), so the service can be updated from a
 * Rust version to this one and back with its state intact.
 *
 * The store is a sorted array, not v3's hash table: the state schemas
 * are what versions share, never their data structures. Freestanding C
 * (no libc beyond memcpy/memset/memcmp/memmove), built for the host as a
 * shared object and for seL4 as an image linked to the slot's addresses.
 */
#include "upd_kv.h"
#include "upd_module.h"

#include <string.h>

#define VERSION 3
#define SCHEMA1 1
#define SCHEMA2 2
/* As many entries as the Rust versions' stores hold: Full at the same point. */
#define CAPACITY 256
#define HDR ((size_t)sizeof(upd_KvHeader))
/* Keys a List reply carries at most, as in the Rust serve(). */
#define LIST_MAX 64

struct entry {
    uint8_t key[upd_MAX_KEY];
    uint8_t value[upd_MAX_VALUE];
    uint8_t key_len;
    uint8_t value_len;
    /* Writes since the key was created (schema 2 carries them). */
    uint32_t writes;
};

/* Entries sorted by key, as Rust orders byte slices. */
static struct entry store[CAPACITY];
static size_t count;

/* Little-endian fields, byte by byte: the transfer region and messages
 * give no alignment guarantee. */
static uint32_t get16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t get32(const uint8_t *p) { return get16(p) | get16(p + 2) << 16; }
static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, v); put16(p + 2, v >> 16); }

static int key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
    int c = memcmp(a, b, al < bl ? al : bl);
    return c != 0 ? c : (al > bl) - (al < bl);
}

/* The position of `key`, or where it would be inserted (*found = 0). */
static size_t find(const uint8_t *key, size_t len, int *found) {
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(store[mid].key, store[mid].key_len, key, len);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

/* Inserts or replaces; the caller has checked the lengths. */
static int store_put(const uint8_t *key, size_t kl, const uint8_t *value, size_t vl, uint32_t writes, int count_write) {
    int found;
    size_t at = find(key, kl, &found);
    if (!found) {
        if (count == CAPACITY)
            return 0;
        memmove(&store[at + 1], &store[at], (count - at) * sizeof store[0]);
        count++;
        memcpy(store[at].key, key, kl);
        store[at].key_len = (uint8_t)kl;
        store[at].writes = writes;
    } else if (count_write && store[at].writes != UINT32_MAX) {
        store[at].writes++; /* saturating, as in Rust */
    } else if (!count_write) {
        store[at].writes = writes;
    }
    memcpy(store[at].value, value, vl);
    store[at].value_len = (uint8_t)vl;
    return 1;
}

/* ---- Requests: every byte the caller wrote is checked. ---- */

static uint8_t *msg_bytes(upd_Message *m) { return (uint8_t *)m->words; }

/* Bytes the sender's `count` covers, clamped to the buffer. */
static size_t used_bytes(const upd_Message *m) {
    return (m->count < upd_MSG_WORDS ? m->count : upd_MSG_WORDS) * 8u;
}

static void reply(upd_Message *m, enum upd_KvStatus s, uint32_t aux, const uint8_t *data, size_t n) {
    uint8_t *b = msg_bytes(m);
    m->label = s;
    put16(b, 0);
    put16(b + 2, (uint32_t)n);
    put32(b + 4, aux);
    if (n != 0)
        memcpy(b + HDR, data, n);
    m->count = (uint32_t)((HDR + n + 7) / 8);
}

static void list(upd_Message *m, uint32_t cursor) {
    uint8_t *b = msg_bytes(m);
    size_t len = 0, n = 0;
    for (size_t i = cursor; i < count && n < LIST_MAX; i++, n++) {
        const struct entry *e = &store[i];
        if (HDR + len + 1 + e->key_len > upd_MSG_BYTES)
            break;
        b[HDR + len] = e->key_len;
        memcpy(b + HDR + len + 1, e->key, e->key_len);
        len += 1 + (size_t)e->key_len;
    }
    uint32_t next = cursor > UINT32_MAX - n ? UINT32_MAX : cursor + (uint32_t)n;
    m->label = upd_KvStatus_Ok;
    put16(b, (uint32_t)n); /* key_len: the entries; value_len: their bytes */
    put16(b + 2, (uint32_t)len);
    put32(b + 4, next < count ? next : upd_LIST_END);
    m->count = (uint32_t)((HDR + len + 7) / 8);
}

/* serve()'s result when it wrote the reply itself. */
#define REPLIED (-1)

/* Serves one call: writes a reply with data and returns REPLIED, or
 * returns the status of a reply without data. */
static int serve(upd_Message *m) {
    uint8_t *b = msg_bytes(m);
    size_t used = used_bytes(m);
    if (m->label < upd_KvOp_Get || m->label > upd_KvOp_Version)
        return upd_KvStatus_UnknownOp;
    if (used < HDR)
        return upd_KvStatus_BadRequest;
    size_t kl = get16(b), vl = get16(b + 2);
    if (m->label == upd_KvOp_List) {
        list(m, get32(b + 4));
        return REPLIED;
    }
    if (m->label == upd_KvOp_Version) {
        reply(m, upd_KvStatus_Ok, VERSION, NULL, 0);
        return REPLIED;
    }
    /* Get, Put, Delete: a key, checked as the Rust parser does, in order. */
    if (kl == 0)
        return upd_KvStatus_BadRequest;
    if (kl > upd_MAX_KEY)
        return upd_KvStatus_KeyTooLong;
    if (HDR + kl > used)
        return upd_KvStatus_BadRequest;
    const uint8_t *key = b + HDR;
    int found;
    size_t at = find(key, kl, &found);
    switch (m->label) {
    case upd_KvOp_Get:
        if (!found)
            return upd_KvStatus_NotFound;
        reply(m, upd_KvStatus_Ok, 0, store[at].value, store[at].value_len);
        return REPLIED;
    case upd_KvOp_Delete:
        if (!found)
            return upd_KvStatus_NotFound;
        memmove(&store[at], &store[at + 1], (count - at - 1) * sizeof store[0]);
        count--;
        return upd_KvStatus_Ok;
    default: /* Put */
        if (vl > upd_MAX_VALUE)
            return upd_KvStatus_ValueTooLong;
        if (HDR + kl + vl > used)
            return upd_KvStatus_BadRequest;
        return store_put(key, kl, key + kl, vl, 1, 1) ? upd_KvStatus_Ok : upd_KvStatus_Full;
    }
}

/* ---- State transfer: the layouts of pds/kv/core/src/schema1.rs and schema2.rs ---- */

static const uint8_t TAG2[4] = {'K', 'V', '2', 0};

/* Schema 2: "KV2\0", count: u32, then per entry key_len: u16,
 * value_len: u16, writes: u32, key, value; in key order.
 * Schema 1: count: u32, then per entry key_len: u8, value_len: u8, key,
 * value; in key order (write counts are dropped). */
static int32_t export_state(uint32_t schema, uint8_t *buf, size_t cap, size_t *out_len) {
    if (buf == NULL || out_len == NULL)
        return upd_STATUS_ERROR;
    if (schema != SCHEMA1 && schema != SCHEMA2)
        return upd_STATUS_UNSUPPORTED_SCHEMA;
    size_t head = schema == SCHEMA2 ? 8 : 4, per = schema == SCHEMA2 ? 8 : 2;
    size_t at = head;
    if (cap < head)
        return upd_STATUS_NO_SPACE;
    for (size_t i = 0; i < count; i++) {
        const struct entry *e = &store[i];
        size_t n = per + e->key_len + e->value_len;
        if (n > cap - at)
            return upd_STATUS_NO_SPACE;
        uint8_t *p = buf + at;
        if (schema == SCHEMA2) {
            put16(p, e->key_len);
            put16(p + 2, e->value_len);
            put32(p + 4, e->writes);
        } else {
            p[0] = e->key_len;
            p[1] = e->value_len;
        }
        memcpy(p + per, e->key, e->key_len);
        memcpy(p + per + e->key_len, e->value, e->value_len);
        at += n;
    }
    if (schema == SCHEMA2) {
        memcpy(buf, TAG2, 4);
        put32(buf + 4, (uint32_t)count);
    } else {
        put32(buf, (uint32_t)count);
    }
    *out_len = at;
    return upd_STATUS_OK;
}

/* Decodes state from the other slot: every length is checked against the
 * buffer and the limits before a byte is used, keys must come in strictly
 * ascending order (as every exporter writes them; this also refuses
 * duplicates), and nothing may follow the last entry. */
static int32_t decode(uint32_t schema, const uint8_t *buf, size_t len) {
    size_t head = schema == SCHEMA2 ? 8 : 4, per = schema == SCHEMA2 ? 8 : 2;
    if (len < head || (schema == SCHEMA2 && memcmp(buf, TAG2, 4) != 0))
        return upd_STATUS_BAD_STATE;
    uint32_t n = get32(buf + head - 4);
    size_t at = head;
    for (uint32_t i = 0; i < n; i++) {
        if (len - at < per)
            return upd_STATUS_BAD_STATE;
        const uint8_t *p = buf + at;
        size_t kl = schema == SCHEMA2 ? get16(p) : p[0];
        size_t vl = schema == SCHEMA2 ? get16(p + 2) : p[1];
        uint32_t writes = schema == SCHEMA2 ? get32(p + 4) : 0; /* v1 counts no writes */
        if (kl == 0 || kl > upd_MAX_KEY || vl > upd_MAX_VALUE || len - at - per < kl + vl)
            return upd_STATUS_BAD_STATE;
        const uint8_t *key = p + per;
        if (count > 0 && key_cmp(store[count - 1].key, store[count - 1].key_len, key, kl) >= 0)
            return upd_STATUS_BAD_STATE;
        if (count == CAPACITY)
            return upd_STATUS_NO_SPACE;
        store_put(key, kl, key + kl, vl, writes, 0); /* appends: keys ascend */
        at += per + kl + vl;
    }
    return at == len ? upd_STATUS_OK : upd_STATUS_BAD_STATE;
}

static int32_t import_state(uint32_t schema, const uint8_t *buf, size_t len) {
    if (schema != SCHEMA1 && schema != SCHEMA2)
        return upd_STATUS_UNSUPPORTED_SCHEMA;
    if (buf == NULL)
        return upd_STATUS_ERROR;
    count = 0;
    int32_t rc = decode(schema, buf, len);
    if (rc != upd_STATUS_OK)
        count = 0; /* all or nothing */
    return rc;
}

/* ---- Entry points ---- */

static int32_t init(const upd_ShellEnv *env) {
    if (env == NULL || env->abi_version != upd_ABI_VERSION)
        return upd_STATUS_ERROR;
    count = 0;
    return upd_STATUS_OK;
}

static void notified(uint32_t channel) { (void)channel; }

static void protected_call(uint32_t channel, upd_Message *msg) {
    (void)channel;
    if (msg == NULL)
        return;
    int s = serve(msg);
    if (s != REPLIED)
        reply(msg, (enum upd_KvStatus)s, 0, NULL, 0);
}

/* Every call completes within itself: always quiescent. */
static int32_t prepare(void) { return upd_STATUS_OK; }

UPD_EXPORT const upd_ModuleDescriptor UPD_MODULE_DESCRIPTOR = {
    .magic = upd_DESCRIPTOR_MAGIC,
    .abi_version = upd_ABI_VERSION,
    .descriptor_size = sizeof(upd_ModuleDescriptor),
    .service = {{'k', 'v'}},
    .module_version = VERSION,
    .state_schema = SCHEMA2,
    .import_schemas = {SCHEMA1},
    .n_import_schemas = 1,
    .export_schemas = {SCHEMA1},
    .n_export_schemas = 1,
};

UPD_EXPORT const upd_ModuleEntry UPD_MODULE_ENTRY = {
    .abi_version = upd_ABI_VERSION,
    .features = 0, /* no streamed transfer: the state is small */
    .init = init,
    .notified = notified,
    .protected_ = protected_call,
    .prepare = prepare,
    .export_state = export_state,
    .import_state = import_state,
};
