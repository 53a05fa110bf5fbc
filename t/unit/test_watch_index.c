/*
 * The watch index against a brute-force oracle: random single keys,
 * ranges and from-key ranges over a small alphabet, added and removed in
 * random order; every lookup must return exactly the matching entries.
 */
#include <bl_core.h>
#include <bl_watch_index.h>

#include "tap.h"

#define N  3000

typedef struct {
    bl_watch_entry_t  e;
    bl_str_t          key;
    bl_str_t          end;
    int               live;
    int               hit;
} sub_t;

static sub_t   subs[N];
static u_char  store[N][2][4];

static void
random_key(u_char *p, size_t *len)
{
    size_t  i;

    *len = 1 + random() % 3;
    for (i = 0; i < *len; i++) {
        p[i] = "ab\x00\xff"[random() % 4];
    }
}

static int
matches(const sub_t *s, const bl_str_t *k)
{
    if (s->end.len == 0) {
        return bl_str_eq(&s->key, k);
    }
    if (bl_str_cmp(&s->key, k) > 0) {
        return 0;
    }
    if (s->end.len == 1 && s->end.data[0] == '\0') {
        return 1;
    }
    return bl_str_cmp(k, &s->end) < 0;
}

static void
on_match(bl_watch_entry_t *e, void *arg)
{
    (void) arg;
    ((sub_t *) e)->hit++;
}

int
main(void)
{
    bl_watch_index_t  idx;
    u_char            kb[4];
    bl_str_t          k;
    size_t            i, j, len;
    int               bad, lookups, round;

    srandom(42);
    ok(bl_watch_index_init(&idx) == BL_OK, "index created");

    for (i = 0; i < N; i++) {
        random_key(store[i][0], &len);
        subs[i].key.data = store[i][0];
        subs[i].key.len = len;
        switch (random() % 3) {
        case 0:                               /* single key */
            subs[i].end.len = 0;
            subs[i].end.data = store[i][1];
            break;
        case 1:                               /* from key */
            store[i][1][0] = '\0';
            subs[i].end.data = store[i][1];
            subs[i].end.len = 1;
            break;
        default:
            random_key(store[i][1], &len);
            subs[i].end.data = store[i][1];
            subs[i].end.len = len;
        }
    }

    bad = 0;
    lookups = 0;
    for (round = 0; round < 40; round++) {
        /* add or remove a random tenth */
        for (j = 0; j < N / 10; j++) {
            i = random() % N;
            if (subs[i].live) {
                bl_watch_index_remove(&idx, &subs[i].e);
                subs[i].live = 0;
            } else if (bl_watch_index_add(&idx, &subs[i].e, &subs[i].key,
                                          &subs[i].end) == BL_OK)
            {
                subs[i].live = 1;
            }
        }
        for (j = 0; j < 50; j++) {
            random_key(kb, &len);
            k.data = kb;
            k.len = len;
            for (i = 0; i < N; i++) {
                subs[i].hit = 0;
            }
            bl_watch_index_match(&idx, &k, on_match, NULL);
            lookups++;
            for (i = 0; i < N; i++) {
                if (subs[i].hit != (subs[i].live && matches(&subs[i], &k))) {
                    bad++;
                }
            }
        }
    }
    is_int(bad, 0, "%d random lookups return exactly the matching "
           "subscriptions", lookups);

    for (i = 0; i < N; i++) {
        if (subs[i].live) {
            bl_watch_index_remove(&idx, &subs[i].e);
        }
    }
    ok(idx.nranges == 0 && idx.nsingle == 0, "removing every entry empties "
       "the index");
    bl_watch_index_free(&idx);
    return tap_done();
}
