/*
 * gRPC length-prefixed message framing and grpc-timeout parsing.
 *
 * Error texts are grpc-go's: etcd clients are Go programs and people
 * search for these strings.
 */
#include <bl_core.h>
#include <bl_grpc.h>
#include <bl_grpc_frame.h>

/* a reassembly buffer bigger than this is freed between messages */
#define BL_GRPC_FRAME_KEEP  (64 * 1024)


static bl_int_t bl_grpc_frame_fail(bl_grpc_frame_parser_t *p, int status,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));


void
bl_grpc_frame_parser_init(bl_grpc_frame_parser_t *p, size_t max_size)
{
    memset(p, 0, sizeof(bl_grpc_frame_parser_t));
    p->max_size = max_size;
}


void
bl_grpc_frame_parser_free(bl_grpc_frame_parser_t *p)
{
    bl_buf_release(&p->msg);
}


bl_int_t
bl_grpc_frame_parse(bl_grpc_frame_parser_t *p, const u_char **pos,
    const u_char *last, bl_str_t *msg)
{
    size_t         have, need, avail;
    uint32_t       len;
    const u_char  *s;

    if (p->failed) {
        return BL_ERROR;
    }

    s = *pos;

    if (!p->in_payload) {

        while (p->prefix_len < BL_GRPC_PREFIX_LEN && s < last) {
            p->prefix[p->prefix_len++] = *s++;
        }

        if (p->prefix_len < BL_GRPC_PREFIX_LEN) {
            *pos = s;
            return BL_AGAIN;
        }

        *pos = s;

        len = ((uint32_t) p->prefix[1] << 24)
              | ((uint32_t) p->prefix[2] << 16)
              | ((uint32_t) p->prefix[3] << 8)
              | (uint32_t) p->prefix[4];

        /* grpc-go checks the size before the compressed flag */

        if (len > p->max_size) {
            return bl_grpc_frame_fail(p, BL_GRPC_RESOURCE_EXHAUSTED,
                           "grpc: received message larger than max "
                           "(%" PRIu32 " vs. %zu)", len, p->max_size);
        }

        if (p->prefix[0] == 1) {
            /* no grpc-encoding was negotiated: we advertise none */
            return bl_grpc_frame_fail(p, BL_GRPC_INTERNAL,
                           "grpc: compressed flag set with identity or "
                           "empty encoding");
        }

        if (p->prefix[0] != 0) {
            return bl_grpc_frame_fail(p, BL_GRPC_INTERNAL,
                           "grpc: received unexpected payload format %d",
                           (int) p->prefix[0]);
        }

        p->msg_len = len;
        p->in_payload = 1;

        /* the previous message (if it was buffered) is no longer needed */

        if ((size_t) (p->msg.end - p->msg.data) > BL_GRPC_FRAME_KEEP) {
            bl_buf_release(&p->msg);
            memset(&p->msg, 0, sizeof(bl_buf_t));

        } else {
            p->msg.pos = p->msg.data;
            p->msg.last = p->msg.data;
        }
    }

    have = bl_buf_size(&p->msg);
    need = p->msg_len - have;
    avail = (size_t) (last - s);

    if (have == 0 && avail >= need) {
        /* the whole payload is in the input: no copy */
        msg->data = (u_char *) s;
        msg->len = need;
        s += need;

    } else {
        need = bl_min(need, avail);

        if (need > 0 && bl_buf_append(&p->msg, s, need) != BL_OK) {
            return bl_grpc_frame_fail(p, BL_GRPC_RESOURCE_EXHAUSTED,
                           "grpc: out of memory while receiving a message "
                           "of %" PRIu32 " bytes", p->msg_len);
        }

        s += need;

        if (bl_buf_size(&p->msg) < p->msg_len) {
            *pos = s;
            return BL_AGAIN;
        }

        msg->data = p->msg.pos;
        msg->len = p->msg_len;
    }

    p->in_payload = 0;
    p->prefix_len = 0;
    *pos = s;

    return BL_OK;
}


static bl_int_t
bl_grpc_frame_fail(bl_grpc_frame_parser_t *p, int status, const char *fmt,
    ...)
{
    va_list  args;

    va_start(args, fmt);
    vsnprintf(p->err, sizeof(p->err), fmt, args);
    va_end(args);

    p->status = status;
    p->failed = 1;

    return BL_ERROR;
}


void
bl_grpc_frame_prefix(u_char *dst, uint32_t len)
{
    dst[0] = 0;
    dst[1] = (u_char) (len >> 24);
    dst[2] = (u_char) (len >> 16);
    dst[3] = (u_char) (len >> 8);
    dst[4] = (u_char) len;
}


bl_int_t
bl_grpc_frame_write(bl_buf_t *b, const u_char *data, size_t len)
{
    if (len > UINT32_MAX) {
        bl_log_error(BL_LOG_ERR, 0,
                     "gRPC message of %zu bytes is too long to frame", len);
        return BL_ERROR;
    }

    if (bl_buf_reserve(b, BL_GRPC_PREFIX_LEN + len) != BL_OK) {
        return BL_ERROR;
    }

    bl_grpc_frame_prefix(b->last, (uint32_t) len);

    if (len > 0) {
        memcpy(b->last + BL_GRPC_PREFIX_LEN, data, len);
    }

    b->last += BL_GRPC_PREFIX_LEN + len;

    return BL_OK;
}


bl_int_t
bl_grpc_timeout_parse(const u_char *p, size_t len, int64_t *msec, char *err,
    size_t err_size)
{
    size_t   i;
    int64_t  v;

    /* the spec's TimeoutValue is at most 8 digits, then the unit */

    if (len < 2) {
        snprintf(err, err_size,
                 "transport: timeout string is too short: \"%.*s\"",
                 (int) len, (const char *) p);
        return BL_ERROR;
    }

    if (len > 9) {
        snprintf(err, err_size,
                 "transport: timeout string is too long: \"%.*s\"",
                 (int) len, (const char *) p);
        return BL_ERROR;
    }

    switch (p[len - 1]) {
    case 'H': case 'M': case 'S': case 'm': case 'u': case 'n':
        break;

    default:
        snprintf(err, err_size,
                 "transport: timeout unit is not recognized: \"%.*s\"",
                 (int) len, (const char *) p);
        return BL_ERROR;
    }

    v = 0;

    for (i = 0; i < len - 1; i++) {
        if (p[i] < '0' || p[i] > '9') {
            snprintf(err, err_size,
                     "strconv.ParseInt: parsing \"%.*s\": invalid syntax",
                     (int) (len - 1), (const char *) p);
            return BL_ERROR;
        }

        v = v * 10 + (p[i] - '0');
    }

    /* at most 99999999 of any unit: no overflow in int64_t milliseconds */

    switch (p[len - 1]) {
    case 'H':
        v *= 3600 * 1000;
        break;
    case 'M':
        v *= 60 * 1000;
        break;
    case 'S':
        v *= 1000;
        break;
    case 'm':
        break;
    case 'u':
        v = (v + 999) / 1000;
        break;
    default: /* 'n' */
        v = (v + 999999) / 1000000;
        break;
    }

    *msec = v;

    return BL_OK;
}
