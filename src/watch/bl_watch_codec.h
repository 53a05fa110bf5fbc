/*
 * The events of one revision as the watcher writes them into the ring and
 * the workers read them back: a compact binary layout (not protobuf:
 * decoding must not allocate per event).
 *
 *   per event: u8 deleted, u8 has_prev, u16 0, u32 key_len, u32 value_len,
 *              u32 prev_value_len, i64 create, mod, version, lease,
 *              i64 prev_create, prev_mod, prev_version, prev_lease,
 *              key, value, prev value
 */
#ifndef BL_WATCH_CODEC_H
#define BL_WATCH_CODEC_H

#include <bl_watch.h>

/* append one event to b; BL_ERROR on out-of-memory */
bl_int_t bl_watch_encode(bl_buf_t *b, const bl_log_event_t *ev);

/*
 * Decode a record's n events into out[] (room for n); the kv bytes point
 * into payload.  BL_ERROR if the payload is malformed.
 */
bl_int_t bl_watch_decode(const u_char *payload, size_t len, size_t n,
    bl_watch_event_t *out);

#endif /* BL_WATCH_CODEC_H */
