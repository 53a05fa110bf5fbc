/*
 * gRPC message framing over HTTP/2 DATA: each message is a 1-byte
 * compressed flag, a 4-byte big-endian length and the payload.  DATA
 * frames cut this stream anywhere, so the parser is incremental: feed it
 * chunks of any size and take complete messages out one at a time.
 *
 * Pure code (no I/O, no nghttp2) so that it can be unit tested and
 * fuzzed byte by byte.
 */
#ifndef BL_GRPC_FRAME_H
#define BL_GRPC_FRAME_H

#include <bl_core.h>

#define BL_GRPC_PREFIX_LEN  5

/* room for the longest error text (two 20-digit numbers and the words) */
#define BL_GRPC_FRAME_ERR_LEN  128

typedef struct {
    size_t     max_size;        /* receive limit: longer is an error */
    bl_buf_t   msg;             /* a payload split across chunks */
    uint32_t   msg_len;         /* payload length of the current message */
    u_char     prefix[BL_GRPC_PREFIX_LEN];
    u_char     prefix_len;      /* prefix bytes received so far */
    unsigned   in_payload:1;    /* the prefix is complete */
    unsigned   failed:1;        /* status and err are set; stays so */
    int        status;          /* BL_GRPC_* code of the error */
    char       err[BL_GRPC_FRAME_ERR_LEN];  /* grpc-message of the error */
} bl_grpc_frame_parser_t;

void bl_grpc_frame_parser_init(bl_grpc_frame_parser_t *p, size_t max_size);
/* frees the reassembly buffer; the parser may be initialized again */
void bl_grpc_frame_parser_free(bl_grpc_frame_parser_t *p);

/*
 * Take the next complete message from the bytes at *pos..last, advancing
 * *pos past what was used:
 *   BL_OK     msg points to the payload: into the input when the message
 *             lies in it whole, else into the parser's buffer; valid until
 *             the next call or until the input goes away;
 *   BL_AGAIN  every input byte was used and no message is complete;
 *   BL_ERROR  a malformed or oversized message: p->status and p->err
 *             hold the gRPC status to answer with; every later call
 *             fails the same way.
 */
bl_int_t bl_grpc_frame_parse(bl_grpc_frame_parser_t *p, const u_char **pos,
    const u_char *last, bl_str_t *msg);

/* true between messages: nothing of a message has been received */
#define bl_grpc_frame_idle(p)  ((p)->prefix_len == 0 && !(p)->in_payload)

/* write an uncompressed message's 5-byte prefix at dst */
void bl_grpc_frame_prefix(u_char *dst, uint32_t len);
/* append a framed message (prefix and payload) to b */
bl_int_t bl_grpc_frame_write(bl_buf_t *b, const u_char *data, size_t len);

/*
 * grpc-timeout ("1S", "100m", "20u", "5n", "2M", "1H": at most 8 digits
 * and a unit) in milliseconds, rounded up so that a positive timeout
 * never becomes 0.  BL_ERROR for a malformed value, err then holds the
 * reason as grpc-go words it (the caller answers INTERNAL
 * "malformed grpc-timeout: " + err, with HTTP status 400).
 */
bl_int_t bl_grpc_timeout_parse(const u_char *p, size_t len, int64_t *msec,
    char *err, size_t err_size);

#endif /* BL_GRPC_FRAME_H */
