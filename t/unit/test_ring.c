/*
 * The event ring: wrap-around, padding, seek, overwrite detection, reset,
 * and a writer and a reader in two processes over shared memory: the
 * reader must never accept a torn record.
 */
#include <bl_core.h>
#include <bl_ring.h>

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "tap.h"

/* payload for revision r: length and bytes derived from r */
static size_t
make_payload(int64_t r, u_char *p)
{
    size_t  n, i;

    n = 1 + (size_t) ((r * 7919) % 300);
    for (i = 0; i < n; i++) {
        p[i] = (u_char) (r * 31 + i);
    }
    return n;
}

static int
payload_ok(int64_t r, const bl_buf_t *b)
{
    u_char  want[400];
    size_t  n;

    n = make_payload(r, want);
    return bl_buf_size(b) == n && memcmp(b->pos, want, n) == 0;
}

static bl_ring_t *
new_ring(size_t capacity, size_t *mapped)
{
    bl_ring_t  *r;

    *mapped = bl_ring_size(capacity);
    r = mmap(NULL, *mapped, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
             -1, 0);
    if (r == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    bl_ring_init(r, *mapped);
    return r;
}

static void
test_basic(void)
{
    bl_ring_t        *r;
    bl_ring_cursor_t  c;
    bl_ring_rec_t     rec;
    bl_buf_t          b = { 0 };
    u_char            p[400];
    size_t            mapped, n;
    int64_t           rev;
    int               ok_all, rc;

    r = new_ring(4096, &mapped);
    ok(bl_ring_valid(r, mapped), "a formatted ring is valid");
    ok(!bl_ring_valid(r, mapped + 64), "the size is checked");

    bl_ring_reset(r, 10);                      /* the store is at 9 */
    ok(bl_ring_seek(r, &c, 9) == BL_OK, "seek to the head of an empty ring");
    ok(bl_ring_read(r, &c, &rec, &b) == BL_AGAIN, "nothing to read yet");
    ok(bl_ring_seek(r, &c, 5) == BL_DECLINED,
       "seek before the ring's first revision: catch up from the log");
    bl_ring_seek(r, &c, 9);

    ok_all = 1;
    for (rev = 10; rev < 2000; rev++) {
        n = make_payload(rev, p);
        if (bl_ring_append(r, rev, 1, p, n) != BL_OK) {
            ok_all = 0;
        }
        rc = bl_ring_read(r, &c, &rec, &b);
        if (rc != BL_OK || rec.rev != rev || !payload_ok(rev, &b)
            || c.rev != rev)
        {
            ok_all = 0;
        }
    }
    ok(ok_all, "2,000 revisions through a 4 KiB ring, padding and "
       "wrap-around included, read back intact");
    ok(atomic_load(&r->tail) > 0, "the ring wrapped");

    ok(bl_ring_seek(r, &c, 1998) == BL_OK, "seek to a recent revision");
    ok(bl_ring_read(r, &c, &rec, &b) == BL_OK && rec.rev == 1999,
       "reads the next revision");
    ok(bl_ring_seek(r, &c, 100) == BL_DECLINED,
       "seek to an overwritten revision is declined");
    {
        int64_t tr = atomic_load(&r->tail_rev);
        ok(bl_ring_seek(r, &c, tr - 1) == BL_OK, "seek to tail_rev - 1");
        ok(bl_ring_read(r, &c, &rec, &b) == BL_OK && rec.rev == tr,
           "reads the oldest whole revision");
    }

    /* a reader that falls behind */
    bl_ring_seek(r, &c, 1999);
    for (rev = 2000; rev < 2100; rev++) {
        n = make_payload(rev, p);
        bl_ring_append(r, rev, 1, p, n);
    }
    ok(bl_ring_read(r, &c, &rec, &b) == BL_DECLINED,
       "a reader whose records were overwritten is told so");

    /* reset */
    bl_ring_seek(r, &c, 2099);
    bl_ring_reset(r, 5000);
    ok(bl_ring_read(r, &c, &rec, &b) == BL_DECLINED,
       "a writer reset is seen by readers");
    ok(bl_ring_seek(r, &c, 4999) == BL_OK, "and they resync after it");

    memset(p, 0, sizeof(p));
    ok(bl_ring_append(r, 5000, 1, p, 3000) == BL_ERROR,
       "a revision larger than half the ring is refused");

    bl_buf_release(&b);
    munmap(r, mapped);
}

/* a writer process and a reader process racing on a small ring */
static void
test_race(void)
{
    bl_ring_t        *r;
    bl_ring_cursor_t  c;
    bl_ring_rec_t     rec;
    bl_buf_t          b = { 0 };
    u_char            p[400];
    size_t            mapped, n;
    int64_t           rev, last, reads, declined, torn;
    pid_t             pid;
    int               status, rc;
    const int64_t     total = 300000;

    r = new_ring(8192, &mapped);
    bl_ring_reset(r, 1);

    pid = fork();
    if (pid == 0) {
        for (rev = 1; rev <= total; rev++) {
            n = make_payload(rev, p);
            bl_ring_append(r, rev, 1, p, n);
        }
        _exit(0);
    }

    reads = declined = torn = 0;
    last = 0;
    bl_ring_seek(r, &c, 0);
    while (last < total) {
        rc = bl_ring_read(r, &c, &rec, &b);
        if (rc == BL_AGAIN) {
            if (waitpid(pid, &status, WNOHANG) == pid) {
                pid = 0;
                if (bl_ring_read(r, &c, &rec, &b) == BL_AGAIN) {
                    break;
                }
            }
            continue;
        }
        if (rc == BL_DECLINED) {
            /* as a worker would: skip what the log would fill in */
            declined++;
            if (bl_ring_seek(r, &c,
                             atomic_load(&r->tail_rev)) != BL_OK)
            {
                bl_ring_seek(r, &c, atomic_load(&r->head_rev));
            }
            last = c.rev;
            continue;
        }
        reads++;
        if (!payload_ok(rec.rev, &b) || rec.rev <= last) {
            torn++;
        }
        last = rec.rev;
    }
    if (pid > 0) {
        waitpid(pid, &status, 0);
    }
    printf("# %lld records read, %lld declined (fell behind)\n",
           (long long) reads, (long long) declined);
    ok(reads > 0, "the reader read records while the writer ran");
    is_int(torn, 0, "no torn or out-of-order record was ever accepted");
    bl_buf_release(&b);
    munmap(r, mapped);
}

int
main(void)
{
    test_basic();
    test_race();
    return tap_done();
}
