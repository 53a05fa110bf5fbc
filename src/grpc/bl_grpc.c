/*
 * The services' side of the transport: the method table and the calls'
 * API (bl_grpc.h).
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_grpc.h>
#include <bl_grpc_frame.h>
#include <bl_h2.h>


typedef struct {
    bl_str_t                 path;
    const bl_grpc_method_t  *method;
} bl_grpc_entry_t;


static bl_int_t bl_grpc_find(const u_char *path, size_t len, size_t *at);


/* sorted by path (bytewise, shorter first), registered at process init */
static bl_grpc_entry_t  *bl_grpc_methods;
static size_t            bl_grpc_nmethods;
static size_t            bl_grpc_nalloc;


bl_int_t
bl_grpc_register(const bl_grpc_method_t *methods, size_t n)
{
    size_t            i, at, len;
    bl_grpc_entry_t  *e;

    for (i = 0; i < n; i++) {

        if (methods[i].path == NULL || methods[i].path[0] != '/'
            || methods[i].on_message == NULL)
        {
            bl_log_error(BL_LOG_ALERT, 0,
                         "gRPC method \"%s\" cannot be registered: it needs "
                         "a path \"/service/method\" and an on_message",
                         methods[i].path ? methods[i].path : "(null)");
            return BL_ERROR;
        }

        len = strlen(methods[i].path);

        if (bl_grpc_find((const u_char *) methods[i].path, len, &at)
            == BL_OK)
        {
            bl_grpc_methods[at].method = &methods[i];
            continue;
        }

        if (bl_grpc_nmethods == bl_grpc_nalloc) {
            bl_grpc_nalloc = bl_grpc_nalloc ? 2 * bl_grpc_nalloc : 64;

            e = realloc(bl_grpc_methods,
                        bl_grpc_nalloc * sizeof(bl_grpc_entry_t));
            if (e == NULL) {
                bl_log_error(BL_LOG_EMERG, errno,
                             "realloc() of the gRPC method table failed");
                return BL_ERROR;
            }

            bl_grpc_methods = e;
        }

        memmove(&bl_grpc_methods[at + 1], &bl_grpc_methods[at],
                (bl_grpc_nmethods - at) * sizeof(bl_grpc_entry_t));

        bl_grpc_methods[at].path.data = (u_char *) methods[i].path;
        bl_grpc_methods[at].path.len = len;
        bl_grpc_methods[at].method = &methods[i];
        bl_grpc_nmethods++;
    }

    return BL_OK;
}


/* BL_OK and its index, or BL_DECLINED and where it would go */

static bl_int_t
bl_grpc_find(const u_char *path, size_t len, size_t *at)
{
    int               rc;
    size_t            lo, hi, mid;
    bl_grpc_entry_t  *e;

    lo = 0;
    hi = bl_grpc_nmethods;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        e = &bl_grpc_methods[mid];

        rc = memcmp(e->path.data, path, bl_min(e->path.len, len));

        if (rc == 0) {
            rc = (e->path.len > len) - (e->path.len < len);
        }

        if (rc == 0) {
            *at = mid;
            return BL_OK;
        }

        if (rc < 0) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    *at = lo;

    return BL_DECLINED;
}


const bl_grpc_method_t *
bl_grpc_find_method(const bl_str_t *path)
{
    size_t  at;

    if (path->len == 0
        || bl_grpc_find(path->data, path->len, &at) != BL_OK)
    {
        return NULL;
    }

    return bl_grpc_methods[at].method;
}


void
bl_grpc_unknown_method_text(const bl_str_t *path, char *buf, size_t size)
{
    size_t         i, n, slen;
    const u_char  *p, *slash;

    /* grpc-go: an optional leading '/', the service up to the last '/' */

    p = path->data;
    n = path->len;

    if (n > 0 && p[0] == '/') {
        p++;
        n--;
    }

    slash = NULL;

    for (i = n; i > 0; i--) {
        if (p[i - 1] == '/') {
            slash = &p[i - 1];
            break;
        }
    }

    if (slash == NULL) {
        snprintf(buf, size, "malformed method name: \"%.*s\"",
                 (int) path->len, path->data ? (char *) path->data : "");
        return;
    }

    slen = (size_t) (slash - p);

    for (i = 0; i < bl_grpc_nmethods; i++) {
        if (bl_grpc_methods[i].path.len > slen + 1
            && memcmp(bl_grpc_methods[i].path.data + 1, p, slen) == 0
            && bl_grpc_methods[i].path.data[slen + 1] == '/')
        {
            snprintf(buf, size, "unknown method %.*s for service %.*s",
                     (int) (n - slen - 1), (const char *) slash + 1,
                     (int) slen, (const char *) p);
            return;
        }
    }

    snprintf(buf, size, "unknown service %.*s", (int) slen,
             (const char *) p);
}


/*
 * Room for one message of `size` bytes and its prefix in the call's
 * output, the prefix written; NULL if the call cannot send (then the
 * stream is being reset, or already gone: on_cancel follows).
 */
static u_char *
bl_grpc_reserve(bl_h2_stream_t *st, size_t size)
{
    bl_grpc_call_t  *call = &st->call;

    if (!st->active || st->closed || st->conn->closing) {
        return NULL;
    }

    if (size > UINT32_MAX) {
        bl_log_error(BL_LOG_ERR, 0,
                     "response of %zu bytes is too long for gRPC, "
                     "%s, client: %.*s", size, call->method->path,
                     BL_STR_ARGS(call->peer));
        bl_h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
        return NULL;
    }

    if (bl_buf_reserve(&st->out, BL_GRPC_PREFIX_LEN + size) != BL_OK) {
        bl_h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
        return NULL;
    }

    bl_grpc_frame_prefix(st->out.last, (uint32_t) size);
    return st->out.last + BL_GRPC_PREFIX_LEN;
}


bl_int_t
bl_grpc_send(bl_grpc_call_t *call, const ProtobufCMessage *msg)
{
    size_t           size, packed;
    u_char          *p;
    bl_h2_stream_t  *st;

    st = (bl_h2_stream_t *) call;

    if (!st->active || st->closed || st->conn->closing) {
        return BL_ERROR;
    }

    size = protobuf_c_message_get_packed_size(msg);

    /* packed in place, after its prefix */

    p = bl_grpc_reserve(st, size);
    if (p == NULL) {
        return BL_ERROR;
    }
    packed = protobuf_c_message_pack(msg, p);

    if (packed != size) {
        bl_log_error(BL_LOG_ALERT, 0,
                     "protobuf_c_message_pack() wrote %zu bytes instead of "
                     "%zu, %s", packed, size, call->method->path);
        bl_h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
        return BL_ERROR;
    }

    st->out.last += BL_GRPC_PREFIX_LEN + size;

    if (bl_h2_observer != NULL) {
        bl_h2_observer->msg_sent(call->method);
    }

    return bl_h2_stream_output(st);
}


bl_int_t
bl_grpc_send_parts(bl_grpc_call_t *call, const bl_str_t *parts,
    size_t nparts)
{
    size_t           size, i;
    u_char          *p;
    bl_h2_stream_t  *st;

    st = (bl_h2_stream_t *) call;

    size = 0;
    for (i = 0; i < nparts; i++) {
        size += parts[i].len;
    }

    p = bl_grpc_reserve(st, size);
    if (p == NULL) {
        return BL_ERROR;
    }
    for (i = 0; i < nparts; i++) {
        if (parts[i].len) {
            memcpy(p, parts[i].data, parts[i].len);
            p += parts[i].len;
        }
    }
    st->out.last = p;

    if (bl_h2_observer != NULL) {
        bl_h2_observer->msg_sent(call->method);
    }

    return bl_h2_stream_output(st);
}


size_t
bl_grpc_pending(bl_grpc_call_t *call)
{
    return bl_buf_size(&((bl_h2_stream_t *) call)->out);
}


void
bl_grpc_finish(bl_grpc_call_t *call, int status, const char *message)
{
    bl_h2_stream_t  *st;

    st = (bl_h2_stream_t *) call;

    if (!st->active) {
        /* cancelled already: the answer has nowhere to go */
        return;
    }

    st->active = 0;

    bl_h2_stream_end(st, status, (const u_char *) message,
                     message ? strlen(message) : 0);
}
