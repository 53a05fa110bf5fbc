/*
 * Percent-encoding of grpc-message, as the gRPC over HTTP/2 spec says:
 * bytes outside 0x20-0x7E, and '%' itself, are sent as "%XX" (upper-case
 * hex); everything else as is.  Decoding is lenient as gRPC's own is: a
 * '%' not followed by two hex digits is kept literally.
 */
#ifndef BL_PERCENT_H
#define BL_PERCENT_H

#include <bl_core.h>

/* length of the encoded form of src (at most 3 * len) */
size_t bl_percent_encoded_len(const u_char *src, size_t len);
/* encode into dst (room for bl_percent_encoded_len bytes); returns end */
u_char *bl_percent_encode(u_char *dst, const u_char *src, size_t len);
/*
 * decode into dst (room for len bytes; dst may be src: the result is
 * never longer); returns the decoded length
 */
size_t bl_percent_decode(u_char *dst, const u_char *src, size_t len);

/* encode into pool memory; BL_ERROR on out-of-memory */
bl_int_t bl_percent_encode_pool(bl_pool_t *pool, bl_str_t *dst,
    const u_char *src, size_t len);

#endif /* BL_PERCENT_H */
