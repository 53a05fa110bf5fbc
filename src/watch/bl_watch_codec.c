#include <bl_core.h>
#include <bl_watch_codec.h>

#define BL_EV_FIXED  (4 + 4 * 3 + 8 * 8)

static u_char *
bl_put_u32(u_char *p, uint32_t v)
{
    memcpy(p, &v, 4);
    return p + 4;
}

static u_char *
bl_put_i64(u_char *p, int64_t v)
{
    memcpy(p, &v, 8);
    return p + 8;
}

bl_int_t
bl_watch_encode(bl_buf_t *b, const bl_log_event_t *ev)
{
    u_char  *p;
    size_t   need;

    need = BL_EV_FIXED + ev->kv.key.len + ev->kv.value.len
           + (ev->has_prev ? ev->prev.value.len : 0);
    if (bl_buf_reserve(b, need) != BL_OK) {
        return BL_ERROR;
    }
    p = b->last;
    *p++ = (u_char) (ev->deleted ? 1 : 0);
    *p++ = (u_char) (ev->has_prev ? 1 : 0);
    *p++ = 0;
    *p++ = 0;
    p = bl_put_u32(p, (uint32_t) ev->kv.key.len);
    p = bl_put_u32(p, (uint32_t) ev->kv.value.len);
    p = bl_put_u32(p, (uint32_t) (ev->has_prev ? ev->prev.value.len : 0));
    p = bl_put_i64(p, ev->kv.create_revision);
    p = bl_put_i64(p, ev->kv.mod_revision);
    p = bl_put_i64(p, ev->kv.version);
    p = bl_put_i64(p, ev->kv.lease);
    p = bl_put_i64(p, ev->has_prev ? ev->prev.create_revision : 0);
    p = bl_put_i64(p, ev->has_prev ? ev->prev.mod_revision : 0);
    p = bl_put_i64(p, ev->has_prev ? ev->prev.version : 0);
    p = bl_put_i64(p, ev->has_prev ? ev->prev.lease : 0);
    if (ev->kv.key.len) {
        memcpy(p, ev->kv.key.data, ev->kv.key.len);
        p += ev->kv.key.len;
    }
    if (ev->kv.value.len) {
        memcpy(p, ev->kv.value.data, ev->kv.value.len);
        p += ev->kv.value.len;
    }
    if (ev->has_prev && ev->prev.value.len) {
        memcpy(p, ev->prev.value.data, ev->prev.value.len);
        p += ev->prev.value.len;
    }
    b->last = p;
    return BL_OK;
}

static const u_char *
bl_get_u32(const u_char *p, uint32_t *v)
{
    memcpy(v, p, 4);
    return p + 4;
}

static const u_char *
bl_get_i64(const u_char *p, int64_t *v)
{
    memcpy(v, p, 8);
    return p + 8;
}

bl_int_t
bl_watch_decode(const u_char *payload, size_t len, size_t n,
    bl_watch_event_t *out)
{
    const u_char      *p, *end;
    bl_watch_event_t  *ev;
    uint32_t           klen, vlen, pvlen;
    size_t             i;

    p = payload;
    end = payload + len;

    for (i = 0; i < n; i++) {
        if ((size_t) (end - p) < BL_EV_FIXED) {
            return BL_ERROR;
        }
        ev = &out[i];
        memset(ev, 0, sizeof(*ev));
        ev->type = p[0] ? BL_WATCH_DELETE : BL_WATCH_PUT;
        ev->has_prev = p[1] ? 1 : 0;
        p += 4;
        p = bl_get_u32(p, &klen);
        p = bl_get_u32(p, &vlen);
        p = bl_get_u32(p, &pvlen);
        p = bl_get_i64(p, &ev->kv.create_revision);
        p = bl_get_i64(p, &ev->kv.mod_revision);
        p = bl_get_i64(p, &ev->kv.version);
        p = bl_get_i64(p, &ev->kv.lease);
        p = bl_get_i64(p, &ev->prev.create_revision);
        p = bl_get_i64(p, &ev->prev.mod_revision);
        p = bl_get_i64(p, &ev->prev.version);
        p = bl_get_i64(p, &ev->prev.lease);
        if ((uint64_t) klen + vlen + pvlen > (uint64_t) (end - p)) {
            return BL_ERROR;
        }
        ev->kv.key.data = (u_char *) p;
        ev->kv.key.len = klen;
        p += klen;
        ev->kv.value.data = (u_char *) p;
        ev->kv.value.len = vlen;
        p += vlen;
        ev->prev.key = ev->kv.key;
        ev->prev.value.data = (u_char *) p;
        ev->prev.value.len = pvlen;
        p += pvlen;
    }
    return p == end ? BL_OK : BL_ERROR;
}
