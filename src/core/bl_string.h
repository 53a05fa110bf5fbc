/*
 * Length-carrying strings.  Protocol data (etcd keys and values) may hold
 * any byte including NUL, so nothing here relies on a terminator.
 */
#ifndef BL_STRING_H
#define BL_STRING_H

typedef struct {
    size_t   len;
    u_char  *data;
} bl_str_t;

#define bl_string(s)     { sizeof(s) - 1, (u_char *) (s) }
#define bl_null_string   { 0, NULL }
#define bl_str_set(str, text)                                                 \
    do { (str)->len = sizeof(text) - 1; (str)->data = (u_char *) (text); }    \
    while (0)
#define bl_str_null(str) do { (str)->len = 0; (str)->data = NULL; } while (0)

/* printf helpers: printf("%.*s", BL_STR_ARGS(&s)) */
#define BL_STR_ARGS(s)   (int) (s)->len, (const char *) (s)->data

#define bl_str_eq(a, b)                                                       \
    ((a)->len == (b)->len                                                     \
     && ((a)->len == 0 || memcmp((a)->data, (b)->data, (a)->len) == 0))

/* C-string compare of a length-carrying string */
int bl_str_eq_cstr(const bl_str_t *s, const char *c);

/* bytewise order, shorter prefix first: the order etcd gives keys */
int bl_str_cmp(const bl_str_t *a, const bl_str_t *b);

/* copy into pool memory, NUL-terminated for convenience (len excludes it) */
bl_int_t bl_str_dup(bl_pool_t *pool, bl_str_t *dst, const void *src,
    size_t len);
char *bl_pstrdup(bl_pool_t *pool, const bl_str_t *s);

/* parse a non-negative decimal; BL_ERROR on junk or overflow */
bl_int_t bl_atoi(const u_char *p, size_t n, int64_t *out);

#endif /* BL_STRING_H */
