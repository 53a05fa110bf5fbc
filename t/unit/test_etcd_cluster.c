/*
 * The client URLs a node advertises when advertise_client_urls is not
 * set (bl_etcd_cluster_init_conf): one per client listen address, http://
 * or https:// by `ssl`, http_listen ones left out, and a wildcard address
 * replaced by the addresses of this host's interfaces that are up
 * (loopback and IPv6 link-local aside), or by the loopback address when
 * there is none.  Integration tests listen on 127.0.0.1 only, so the
 * wildcard cases are checked here.
 */
#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_etcd.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>

#include "tap.h"

static bl_pool_t  *pool;

static void
add_listen(bl_cycle_t *cycle, const char *text, int ssl, int http)
{
    bl_listening_t  *ls;
    bl_str_t         s;

    ls = bl_array_push(&cycle->listening);
    memset(ls, 0, sizeof(*ls));
    s.data = (u_char *) text;
    s.len = strlen(text);
    ok(bl_parse_addr_port(pool, &s, ls, 2379) == BL_OK, "listen %s", text);
    ls->ssl = ssl;
    ls->http = http;
}

static int
has(const bl_etcd_conf_t *ecf, const char *url)
{
    size_t  i;

    for (i = 0; i < ecf->nclient_urls; i++) {
        if (bl_str_eq_cstr(&ecf->client_urls[i], url)) {
            return 1;
        }
    }
    return 0;
}

/* what the rule says for a wildcard of family on port, by this host */
static size_t
expect_wildcard(const char *scheme, int family, int port,
    char out[][96], size_t max)
{
    struct ifaddrs       *ifs, *ifa;
    struct sockaddr_in6  *sin6;
    char                  host[INET6_ADDRSTRLEN];
    size_t                n, i;
    int                   dup;

    n = 0;
    if (getifaddrs(&ifs) != 0) {
        return 0;
    }
    for (ifa = ifs; ifa != NULL && n < max; ifa = ifa->ifa_next) {
        if (ifa->ifa_addr == NULL || !(ifa->ifa_flags & IFF_UP)
            || (ifa->ifa_flags & IFF_LOOPBACK))
        {
            continue;
        }
        if (ifa->ifa_addr->sa_family == AF_INET) {
            inet_ntop(AF_INET,
                      &((struct sockaddr_in *) ifa->ifa_addr)->sin_addr,
                      host, sizeof(host));
            snprintf(out[n], 96, "%s://%s:%d", scheme, host, port);
        } else if (ifa->ifa_addr->sa_family == AF_INET6
                   && family == AF_INET6)
        {
            sin6 = (struct sockaddr_in6 *) ifa->ifa_addr;
            if (IN6_IS_ADDR_LINKLOCAL(&sin6->sin6_addr)) {
                continue;
            }
            inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
            snprintf(out[n], 96, "%s://[%s]:%d", scheme, host, port);
        } else {
            continue;
        }
        for (dup = 0, i = 0; i < n; i++) {
            dup |= strcmp(out[i], out[n]) == 0;
        }
        n += !dup;
    }
    freeifaddrs(ifs);
    if (n == 0) {
        snprintf(out[n++], 96, family == AF_INET6 ? "%s://[::1]:%d"
                 : "%s://127.0.0.1:%d", scheme, port);
    }
    return n;
}

static void
check(const char *name, const char *listen[], const int ssl[],
    const int http[], size_t nlisten, char want[][96], size_t nwant)
{
    bl_cycle_t       cycle;
    bl_etcd_conf_t   ecf;
    size_t           i;
    int              all;
    char             msg[160];

    memset(&cycle, 0, sizeof(cycle));
    memset(&ecf, 0, sizeof(ecf));
    cycle.pool = pool;
    if (bl_array_init(&cycle.listening, pool, 4, sizeof(bl_listening_t))
        != BL_OK)
    {
        return;
    }
    for (i = 0; i < nlisten; i++) {
        add_listen(&cycle, listen[i], ssl[i], http[i]);
    }
    is_int(bl_etcd_cluster_init_conf(&cycle, &ecf), BL_OK, "%s: made", name);
    is_int((int) ecf.nclient_urls, (int) nwant, "%s: %d URL(s)", name,
           (int) nwant);
    for (all = 1, i = 0; i < nwant; i++) {
        if (!has(&ecf, want[i])) {
            snprintf(msg, sizeof(msg), "%s: %s missing", name, want[i]);
            diag(msg);
            all = 0;
        }
    }
    ok(all, "%s: the expected URLs", name);
}

int
main(void)
{
    char              want[64][96];
    size_t            n;
    bl_cycle_t        cycle;
    bl_etcd_conf_t    ecf;
    bl_str_t          given[1] = { bl_string("https://lb.example:443") };

    pool = bl_pool_create(BL_POOL_DEFAULT_SIZE);
    if (pool == NULL) {
        return 2;
    }

    {
        const char  *l[] = { "127.0.0.1:2379", "[::1]:2380", "127.0.0.1:2381" };
        const int    s[] = { 0, 1, 0 }, h[] = { 0, 0, 1 };

        snprintf(want[0], 96, "http://127.0.0.1:2379");
        snprintf(want[1], 96, "https://[::1]:2380");
        check("addresses", l, s, h, 3, want, 2);
    }
    {
        const char  *l[] = { "0.0.0.0:2379" };
        const int    s[] = { 1 }, h[] = { 0 };

        n = expect_wildcard("https", AF_INET, 2379, want, 64);
        check("0.0.0.0 ssl", l, s, h, 1, want, n);
    }
    {
        const char  *l[] = { "4000" };
        const int    s[] = { 0 }, h[] = { 0 };

        n = expect_wildcard("http", AF_INET, 4000, want, 64);
        check("a port alone", l, s, h, 1, want, n);
    }
    {
        const char  *l[] = { "[::]:2379" };
        const int    s[] = { 0 }, h[] = { 0 };

        n = expect_wildcard("http", AF_INET6, 2379, want, 64);
        check("[::]", l, s, h, 1, want, n);
    }

    /* advertise_client_urls given: kept as it is */
    memset(&cycle, 0, sizeof(cycle));
    memset(&ecf, 0, sizeof(ecf));
    cycle.pool = pool;
    (void) bl_array_init(&cycle.listening, pool, 1, sizeof(bl_listening_t));
    add_listen(&cycle, "127.0.0.1:2379", 0, 0);
    ecf.client_urls = given;
    ecf.nclient_urls = 1;
    is_int(bl_etcd_cluster_init_conf(&cycle, &ecf), BL_OK, "given: ok");
    ok(ecf.client_urls == given && ecf.nclient_urls == 1,
       "given URLs are kept");

    bl_pool_destroy(pool);
    return tap_done();
}
