#include <bl_core.h>
#include <bl_watch_index.h>

static uint64_t
bl_hash(const bl_str_t *s)
{
    uint64_t  h;
    size_t    i;

    h = 14695981039346656037ULL;
    for (i = 0; i < s->len; i++) {
        h ^= s->data[i];
        h *= 1099511628211ULL;
    }
    return h;
}

bl_int_t
bl_watch_index_init(bl_watch_index_t *idx)
{
    memset(idx, 0, sizeof(*idx));
    idx->nbuckets = 64;
    idx->buckets = calloc(idx->nbuckets, sizeof(bl_watch_group_t *));
    if (idx->buckets == NULL) {
        bl_log_error(BL_LOG_ALERT, errno, "calloc() failed");
        return BL_ERROR;
    }
    return BL_OK;
}

static void
bl_group_free(bl_watch_group_t *g)
{
    free(g->key.data);
    free(g->end.data);
    free(g);
}

void
bl_watch_index_free(bl_watch_index_t *idx)
{
    bl_watch_group_t  *g, *next;
    size_t             i;

    for (i = 0; i < idx->nbuckets; i++) {
        for (g = idx->buckets[i]; g; g = next) {
            next = g->hash_next;
            bl_group_free(g);
        }
    }
    for (i = 0; i < idx->nranges; i++) {
        bl_group_free(idx->ranges[i]);
    }
    free(idx->buckets);
    free(idx->ranges);
    free(idx->maxend);
    memset(idx, 0, sizeof(*idx));
}

static bl_int_t
bl_copy(bl_str_t *dst, const bl_str_t *src)
{
    dst->len = src->len;
    dst->data = malloc(src->len ? src->len : 1);
    if (dst->data == NULL) {
        bl_log_error(BL_LOG_ALERT, errno, "malloc() failed");
        return BL_ERROR;
    }
    if (src->len) {
        memcpy(dst->data, src->data, src->len);
    }
    return BL_OK;
}

static bl_int_t
bl_rehash(bl_watch_index_t *idx)
{
    bl_watch_group_t  **nb, *g, *next;
    size_t              n, i, b;

    n = idx->nbuckets * 2;
    nb = calloc(n, sizeof(bl_watch_group_t *));
    if (nb == NULL) {
        return BL_OK;        /* keep the old table: slower, still right */
    }
    for (i = 0; i < idx->nbuckets; i++) {
        for (g = idx->buckets[i]; g; g = next) {
            next = g->hash_next;
            b = bl_hash(&g->key) & (n - 1);
            g->hash_next = nb[b];
            nb[b] = g;
        }
    }
    free(idx->buckets);
    idx->buckets = nb;
    idx->nbuckets = n;
    return BL_OK;
}

static bl_watch_group_t *
bl_find_group(bl_watch_index_t *idx, const bl_str_t *key, const bl_str_t *end,
    int single)
{
    bl_watch_group_t  *g;
    size_t             i;

    if (single) {
        for (g = idx->buckets[bl_hash(key) & (idx->nbuckets - 1)]; g;
             g = g->hash_next)
        {
            if (bl_str_eq(&g->key, key)) {
                return g;
            }
        }
        return NULL;
    }
    for (i = 0; i < idx->nranges; i++) {
        g = idx->ranges[i];
        if (bl_str_eq(&g->key, key) && bl_str_eq(&g->end, end)) {
            return g;
        }
    }
    return NULL;
}

bl_int_t
bl_watch_index_add(bl_watch_index_t *idx, bl_watch_entry_t *e,
    const bl_str_t *key, const bl_str_t *end)
{
    bl_watch_group_t   *g, **v;
    int                 single;
    size_t              b, n;

    single = end->len == 0;
    g = bl_find_group(idx, key, end, single);

    if (g == NULL) {
        g = calloc(1, sizeof(bl_watch_group_t));
        if (g == NULL || bl_copy(&g->key, key) != BL_OK
            || bl_copy(&g->end, end) != BL_OK)
        {
            if (g) {
                free(g->key.data);
                free(g);
            }
            return BL_ERROR;
        }
        g->end_inf = end->len == 1 && end->data[0] == '\0';

        if (single) {
            if (idx->nsingle >= idx->nbuckets) {
                (void) bl_rehash(idx);
            }
            b = bl_hash(key) & (idx->nbuckets - 1);
            g->hash_next = idx->buckets[b];
            idx->buckets[b] = g;
            idx->nsingle++;
        } else {
            if (idx->nranges == idx->nalloc) {
                n = idx->nalloc ? idx->nalloc * 2 : 16;
                v = realloc(idx->ranges, n * sizeof(*v));
                if (v == NULL) {
                    bl_group_free(g);
                    return BL_ERROR;
                }
                idx->ranges = v;
                idx->nalloc = n;
                free(idx->maxend);
                idx->maxend = NULL;
            }
            g->slot = idx->nranges;
            idx->ranges[idx->nranges++] = g;
            idx->dirty = 1;
        }
    }

    e->group = g;
    e->prev = NULL;
    e->next = g->entries;
    if (g->entries) {
        g->entries->prev = e;
    }
    g->entries = e;
    g->nentries++;
    return BL_OK;
}

void
bl_watch_index_remove(bl_watch_index_t *idx, bl_watch_entry_t *e)
{
    bl_watch_group_t  *g, **pp;
    size_t             last;

    g = e->group;
    if (g == NULL) {
        return;
    }
    if (e->prev) {
        e->prev->next = e->next;
    } else {
        g->entries = e->next;
    }
    if (e->next) {
        e->next->prev = e->prev;
    }
    e->group = NULL;
    e->next = e->prev = NULL;

    if (--g->nentries) {
        return;
    }

    if (g->end.len == 0) {
        pp = &idx->buckets[bl_hash(&g->key) & (idx->nbuckets - 1)];
        while (*pp != g) {
            pp = &(*pp)->hash_next;
        }
        *pp = g->hash_next;
        idx->nsingle--;
    } else {
        last = idx->nranges - 1;
        idx->ranges[g->slot] = idx->ranges[last];
        idx->ranges[g->slot]->slot = g->slot;
        idx->nranges--;
        idx->dirty = 1;
    }
    bl_group_free(g);
}

static int
bl_group_cmp(const void *a, const void *b)
{
    const bl_watch_group_t  *x = *(bl_watch_group_t * const *) a;
    const bl_watch_group_t  *y = *(bl_watch_group_t * const *) b;

    return bl_str_cmp(&x->key, &y->key);
}

/* the larger of two ends; NULL is +infinity */
static const bl_str_t *
bl_end_max(const bl_str_t *a, const bl_str_t *b)
{
    if (a == NULL || b == NULL) {
        return NULL;
    }
    return bl_str_cmp(a, b) >= 0 ? a : b;
}

static const bl_str_t *
bl_build(bl_watch_index_t *idx, size_t lo, size_t hi)
{
    const bl_str_t  *m;
    size_t           mid;

    mid = lo + (hi - lo) / 2;
    m = idx->ranges[mid]->end_inf ? NULL : &idx->ranges[mid]->end;
    if (lo < mid) {
        m = bl_end_max(m, bl_build(idx, lo, mid));
    }
    if (mid + 1 < hi) {
        m = bl_end_max(m, bl_build(idx, mid + 1, hi));
    }
    idx->maxend[mid] = m;
    return m;
}

static void
bl_rebuild(bl_watch_index_t *idx)
{
    size_t  i;

    if (idx->maxend == NULL && idx->nalloc) {
        idx->maxend = malloc(idx->nalloc * sizeof(bl_str_t *));
        if (idx->maxend == NULL) {
            return;                  /* stays dirty: linear scan below */
        }
    }
    qsort(idx->ranges, idx->nranges, sizeof(bl_watch_group_t *),
          bl_group_cmp);
    for (i = 0; i < idx->nranges; i++) {
        idx->ranges[i]->slot = i;
    }
    if (idx->nranges) {
        (void) bl_build(idx, 0, idx->nranges);
    }
    idx->dirty = 0;
}

static void
bl_emit(bl_watch_group_t *g, bl_watch_match_pt fn, void *arg)
{
    bl_watch_entry_t  *e, *next;

    for (e = g->entries; e; e = next) {
        next = e->next;
        fn(e, arg);
    }
}

static int
bl_in_range(const bl_watch_group_t *g, const bl_str_t *key)
{
    return bl_str_cmp(&g->key, key) <= 0
           && (g->end_inf || bl_str_cmp(key, &g->end) < 0);
}

static void
bl_search(bl_watch_index_t *idx, size_t lo, size_t hi, const bl_str_t *key,
    bl_watch_match_pt fn, void *arg)
{
    bl_watch_group_t  *g;
    size_t             mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        /* nothing under this node ends after the key */
        if (idx->maxend[mid] && bl_str_cmp(idx->maxend[mid], key) <= 0) {
            return;
        }
        bl_search(idx, lo, mid, key, fn, arg);
        g = idx->ranges[mid];
        if (bl_str_cmp(&g->key, key) > 0) {
            return;          /* this and everything right starts later */
        }
        if (bl_in_range(g, key)) {
            bl_emit(g, fn, arg);
        }
        lo = mid + 1;
    }
}

void
bl_watch_index_match(bl_watch_index_t *idx, const bl_str_t *key,
    bl_watch_match_pt fn, void *arg)
{
    bl_watch_group_t  *g;
    size_t             i;

    for (g = idx->buckets[bl_hash(key) & (idx->nbuckets - 1)]; g;
         g = g->hash_next)
    {
        if (bl_str_eq(&g->key, key)) {
            bl_emit(g, fn, arg);
            break;
        }
    }

    if (idx->nranges == 0) {
        return;
    }
    if (idx->dirty) {
        bl_rebuild(idx);
    }
    if (idx->dirty) {
        for (i = 0; i < idx->nranges; i++) {
            if (bl_in_range(idx->ranges[i], key)) {
                bl_emit(idx->ranges[i], fn, arg);
            }
        }
        return;
    }
    bl_search(idx, 0, idx->nranges, key, fn, arg);
}
