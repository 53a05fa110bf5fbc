/*
 * etcdserverpb.Cluster for nodes that share one database rather than a
 * raft log: the members are the ballast nodes whose watcher process was
 * heard from within BL_ETCD_MEMBER_LIVE_SEC (their heartbeat, in the
 * ballast_node table), each with its name, its member id (the one in
 * every response header) and the client URLs it advertises.  Nodes join
 * by starting ballast on the same database and leave by stopping, so the
 * membership changes of etcd have nothing to do here.
 *
 * Also the advertised client URLs: advertise_client_urls, or made from
 * the listen addresses.
 */
#include <bl_core.h>
#include <bl_cycle.h>
#include <bl_etcd_kv.h>
#include <bl_storage_maint.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>

/*
 * Member changes answer UNIMPLEMENTED: this server does not offer them,
 * whatever its state, so the caller should not retry (clientv3 never
 * retries it) nor wait for a state to change, as FAILED_PRECONDITION
 * would suggest; the message names what to do instead.
 */
static const bl_etcd_error_t  bl_etcd_err_member_change = {
    BL_GRPC_UNIMPLEMENTED,
    "etcdserver: membership changes are not supported by ballast: a node "
    "joins by starting ballast on the same PostgreSQL database and leaves "
    "by stopping" };


/* MemberList */

static Etcdserverpb__Member *
bl_etcd_member_pb(bl_pool_t *pool, uint64_t id, const bl_str_t *name,
    const bl_str_t *urls, size_t nurls)
{
    size_t                 i;
    Etcdserverpb__Member  *m;

    m = bl_palloc(pool, sizeof(*m));
    if (m == NULL) {
        return NULL;
    }
    etcdserverpb__member__init(m);
    m->id = id;
    /* peerURLs stay empty: members do not talk to each other */
    m->name = bl_pstrdup(pool, name);
    m->clienturls = bl_palloc(pool, (nurls + 1) * sizeof(char *));
    if (m->name == NULL || m->clienturls == NULL) {
        return NULL;
    }
    for (i = 0; i < nurls; i++) {
        m->clienturls[i] = bl_pstrdup(pool, &urls[i]);
        if (m->clienturls[i] == NULL) {
            return NULL;
        }
    }
    m->n_clienturls = nurls;
    return m;
}

/* etcd lists members by id (membership.MembersByID) */
static int
bl_etcd_member_cmp(const void *a, const void *b)
{
    const Etcdserverpb__Member  *x = *(Etcdserverpb__Member *const *) a;
    const Etcdserverpb__Member  *y = *(Etcdserverpb__Member *const *) b;

    return (x->id > y->id) - (x->id < y->id);
}

static void
bl_etcd_member_list_done(void *data, bl_storage_status_e st, void *result)
{
    bl_etcd_kv_ctx_t                   *ctx = data;
    bl_grpc_call_t                     *call = ctx->call;
    bl_members_res_t                   *res = result;
    bl_etcd_conf_t                     *ecf = bl_etcd_conf();
    bl_member_t                        *m;
    size_t                              i, n;
    int                                 self;
    Etcdserverpb__MemberListResponse    resp =
        ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;

    if (bl_etcd_kv_failed(ctx, st)) {
        return;
    }

    /* etcd's cluster header has no revision (ClusterServer.header) */
    resp.header = bl_etcd_header(call->pool, 0);
    resp.members = bl_palloc(call->pool,
                             (res->nmembers + 1) * sizeof(void *));
    if (resp.header == NULL || resp.members == NULL) {
        bl_etcd_reply_built(call, NULL);
        return;
    }

    self = 0;
    for (i = 0, n = 0; i < res->nmembers; i++) {
        m = &res->members[i];
        self |= m->id == ecf->member_id;
        resp.members[n] = bl_etcd_member_pb(call->pool, m->id, &m->name,
                                            m->client_urls,
                                            m->nclient_urls);
        if (resp.members[n++] == NULL) {
            bl_etcd_reply_built(call, NULL);
            return;
        }
    }

    /*
     * This node serves, so it is a member, also before its watcher's
     * first heartbeat is in (a client right after the start looks the
     * leader, this node, up in the list)
     */
    if (!self) {
        resp.members[n] = bl_etcd_member_pb(call->pool, ecf->member_id,
                                            &ecf->name, ecf->client_urls,
                                            ecf->nclient_urls);
        if (resp.members[n++] == NULL) {
            bl_etcd_reply_built(call, NULL);
            return;
        }
    }

    qsort(resp.members, n, sizeof(void *), bl_etcd_member_cmp);
    resp.n_members = n;
    bl_etcd_reply(call, &resp.base);
}

static void
bl_etcd_member_list(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    bl_etcd_kv_ctx_t                *ctx;
    Etcdserverpb__MemberListRequest *r;
    bl_storage_status_e              st;

    r = etcdserverpb__member_list_request__unpack(
            bl_pool_pb_allocator(call->pool), len, msg);
    if (r == NULL) {
        bl_etcd_fail_unpack(call, "MemberListRequest");
        return;
    }
    /*
     * linearizable (3.5+) asks for a list that reflects every change
     * acknowledged before: the list is read from the database, which is
     * what every node shares, so every read is that
     */
    ctx = bl_etcd_kv_ctx(call, r);
    if (ctx == NULL) {
        return;
    }
    st = bl_storage_members(call->pool, BL_ETCD_MEMBER_LIVE_SEC,
                            bl_etcd_member_list_done, ctx, &ctx->op);
    bl_etcd_kv_started(ctx, st);
}

static void
bl_etcd_member_change(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    BL_UNUSED(msg);
    BL_UNUSED(len);
    bl_etcd_fail(call, &bl_etcd_err_member_change);
}

const bl_grpc_method_t  bl_etcd_cluster_methods[] = {
    { "/etcdserverpb.Cluster/MemberList", BL_GRPC_UNARY,
      bl_etcd_member_list, NULL, bl_etcd_kv_cancel },
    { "/etcdserverpb.Cluster/MemberAdd", BL_GRPC_UNARY,
      bl_etcd_member_change, NULL, NULL },
    { "/etcdserverpb.Cluster/MemberRemove", BL_GRPC_UNARY,
      bl_etcd_member_change, NULL, NULL },
    { "/etcdserverpb.Cluster/MemberUpdate", BL_GRPC_UNARY,
      bl_etcd_member_change, NULL, NULL },
    { "/etcdserverpb.Cluster/MemberPromote", BL_GRPC_UNARY,
      bl_etcd_member_change, NULL, NULL },
};

const size_t  bl_etcd_cluster_nmethods = bl_nelems(bl_etcd_cluster_methods);


/*
 * The advertised client URLs.  Without advertise_client_urls, one per
 * client listen address: http://, or https:// for an `ssl` one.  A
 * wildcard address (0.0.0.0, [::], a port alone) cannot be dialled:
 * it stands for each address of this host's interfaces that are up,
 * loopback ones aside (and IPv6 link-local ones, which need a zone), of
 * its family -- both families for [::], which takes IPv4 too; none at all
 * (a host with loopback only) means the loopback address.  Read when the
 * configuration is, so a reload sees the interfaces anew.
 */

static bl_int_t
bl_etcd_url_add(bl_cycle_t *cycle, bl_array_t *urls, const char *scheme,
    int family, const void *addr, int port)
{
    char       host[INET6_ADDRSTRLEN], buf[INET6_ADDRSTRLEN + 32];
    bl_str_t  *u, *have;
    size_t     i;
    int        n;

    if (inet_ntop(family, addr, host, sizeof(host)) == NULL) {
        bl_log_error(BL_LOG_EMERG, errno, "inet_ntop() failed");
        return BL_ERROR;
    }
    n = snprintf(buf, sizeof(buf), family == AF_INET6 ? "%s://[%s]:%d"
                 : "%s://%s:%d", scheme, host, port);

    have = urls->elts;
    for (i = 0; i < urls->nelts; i++) {
        if (have[i].len == (size_t) n
            && memcmp(have[i].data, buf, (size_t) n) == 0)
        {
            return BL_OK;
        }
    }
    u = bl_array_push(urls);
    if (u == NULL
        || bl_str_dup(cycle->pool, u, buf, (size_t) n) != BL_OK)
    {
        return BL_ERROR;
    }
    return BL_OK;
}

static bl_int_t
bl_etcd_url_wildcard(bl_cycle_t *cycle, bl_array_t *urls,
    const char *scheme, int family, int port)
{
    struct ifaddrs        *ifs, *ifa;
    struct sockaddr_in6   *sin6;
    struct in_addr         lo;
    size_t                 before;
    bl_int_t               rc;

    if (getifaddrs(&ifs) == -1) {
        bl_log_error(BL_LOG_EMERG, errno, "getifaddrs() failed");
        return BL_ERROR;
    }
    before = urls->nelts;
    rc = BL_OK;
    for (ifa = ifs; ifa != NULL && rc == BL_OK; ifa = ifa->ifa_next) {
        if (ifa->ifa_addr == NULL || !(ifa->ifa_flags & IFF_UP)
            || (ifa->ifa_flags & IFF_LOOPBACK))
        {
            continue;
        }
        if (ifa->ifa_addr->sa_family == AF_INET) {
            rc = bl_etcd_url_add(cycle, urls, scheme, AF_INET,
                     &((struct sockaddr_in *) ifa->ifa_addr)->sin_addr,
                     port);
        } else if (ifa->ifa_addr->sa_family == AF_INET6
                   && family == AF_INET6)
        {
            sin6 = (struct sockaddr_in6 *) ifa->ifa_addr;
            if (!IN6_IS_ADDR_LINKLOCAL(&sin6->sin6_addr)
                && !IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
            {
                rc = bl_etcd_url_add(cycle, urls, scheme, AF_INET6,
                                     &sin6->sin6_addr, port);
            }
        }
    }
    freeifaddrs(ifs);
    if (rc != BL_OK || urls->nelts > before) {
        return rc;
    }
    if (family == AF_INET6) {
        return bl_etcd_url_add(cycle, urls, scheme, AF_INET6,
                               &in6addr_loopback, port);
    }
    lo.s_addr = htonl(INADDR_LOOPBACK);
    return bl_etcd_url_add(cycle, urls, scheme, AF_INET, &lo, port);
}

bl_int_t
bl_etcd_cluster_init_conf(bl_cycle_t *cycle, bl_etcd_conf_t *ecf)
{
    bl_listening_t       *ls;
    bl_array_t           *urls;
    struct sockaddr_in   *sin;
    struct sockaddr_in6  *sin6;
    const char           *scheme;
    size_t                i;
    bl_int_t              rc;

    if (ecf->client_urls != NULL) {
        return BL_OK;
    }
    urls = bl_array_create(cycle->pool, 4, sizeof(bl_str_t));
    if (urls == NULL) {
        return BL_ERROR;
    }
    ls = cycle->listening.elts;
    for (i = 0; i < cycle->listening.nelts; i++) {
        if (ls[i].http) {
            continue;
        }
        scheme = ls[i].ssl ? "https" : "http";
        if (ls[i].sockaddr.ss_family == AF_INET6) {
            sin6 = (struct sockaddr_in6 *) &ls[i].sockaddr;
            rc = IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr)
                 ? bl_etcd_url_wildcard(cycle, urls, scheme, AF_INET6,
                                        ntohs(sin6->sin6_port))
                 : bl_etcd_url_add(cycle, urls, scheme, AF_INET6,
                                   &sin6->sin6_addr, ntohs(sin6->sin6_port));
        } else {
            sin = (struct sockaddr_in *) &ls[i].sockaddr;
            rc = sin->sin_addr.s_addr == htonl(INADDR_ANY)
                 ? bl_etcd_url_wildcard(cycle, urls, scheme, AF_INET,
                                        ntohs(sin->sin_port))
                 : bl_etcd_url_add(cycle, urls, scheme, AF_INET,
                                   &sin->sin_addr, ntohs(sin->sin_port));
        }
        if (rc != BL_OK) {
            return BL_ERROR;
        }
    }
    ecf->client_urls = urls->elts;
    ecf->nclient_urls = urls->nelts;
    return BL_OK;
}
