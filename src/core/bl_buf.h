/*
 * A contiguous byte buffer that grows (malloc-backed, owned by whoever
 * holds it).  Used for output queues and for reassembling gRPC messages.
 *
 *   data ........ pos ........ last ........ end
 *        consumed     pending       free
 */
#ifndef BL_BUF_H
#define BL_BUF_H

typedef struct {
    u_char  *data;
    u_char  *pos;
    u_char  *last;
    u_char  *end;
} bl_buf_t;

#define bl_buf_size(b)  ((size_t) ((b)->last - (b)->pos))
#define bl_buf_free(b)  ((size_t) ((b)->end - (b)->last))

/* make room for at least n more bytes after last; BL_ERROR on ENOMEM */
bl_int_t bl_buf_reserve(bl_buf_t *b, size_t n);
bl_int_t bl_buf_append(bl_buf_t *b, const void *p, size_t n);
/* drop n bytes from the front; resets to empty when all consumed */
void bl_buf_consume(bl_buf_t *b, size_t n);
void bl_buf_release(bl_buf_t *b);

#endif /* BL_BUF_H */
