/*
 * Which subscriptions does an event's key concern?  Subscriptions with the
 * same (key, range_end) share a group.  Single-key groups sit in a hash
 * table; range groups in an array sorted by start, searched as an
 * implicit balanced tree whose nodes know the largest end below them, so
 * a lookup costs O(log groups + matches), never a scan of every watcher.
 */
#ifndef BL_WATCH_INDEX_H
#define BL_WATCH_INDEX_H

typedef struct bl_watch_group_s  bl_watch_group_t;
typedef struct bl_watch_entry_s  bl_watch_entry_t;

struct bl_watch_entry_s {
    bl_watch_entry_t  *next;
    bl_watch_entry_t  *prev;
    bl_watch_group_t  *group;      /* NULL while not indexed */
};

struct bl_watch_group_s {
    bl_str_t           key;        /* owned copies */
    bl_str_t           end;        /* empty: the key alone */
    unsigned           end_inf:1;  /* end "\0": every key >= key */
    bl_watch_entry_t  *entries;
    size_t             nentries;
    bl_watch_group_t  *hash_next;  /* single-key groups */
    size_t             slot;       /* range groups: index in the array */
};

typedef struct {
    bl_watch_group_t  **buckets;   /* single keys */
    size_t              nbuckets;
    size_t              nsingle;
    bl_watch_group_t  **ranges;    /* sorted by (key, end) when clean */
    const bl_str_t    **maxend;    /* per implicit tree node; NULL = inf */
    size_t              nranges;
    size_t              nalloc;
    unsigned            dirty:1;
} bl_watch_index_t;

typedef void (*bl_watch_match_pt)(bl_watch_entry_t *e, void *arg);

bl_int_t bl_watch_index_init(bl_watch_index_t *idx);
void bl_watch_index_free(bl_watch_index_t *idx);
/* key/end as in bl_watch_add(); copies them; BL_ERROR on ENOMEM */
bl_int_t bl_watch_index_add(bl_watch_index_t *idx, bl_watch_entry_t *e,
    const bl_str_t *key, const bl_str_t *end);
void bl_watch_index_remove(bl_watch_index_t *idx, bl_watch_entry_t *e);
/* fn(e, arg) for every entry whose range holds key; fn must not change
 * the index */
void bl_watch_index_match(bl_watch_index_t *idx, const bl_str_t *key,
    bl_watch_match_pt fn, void *arg);

#endif /* BL_WATCH_INDEX_H */
