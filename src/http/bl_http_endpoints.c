/*
 * What etcd answers on its plain HTTP paths, as etcd answers it
 * (CONFORMANCE.md section 9; etcd 3.5.11+ for /livez and /readyz):
 *
 *   GET /health    200 {"health":"true","reason":""} while this worker
 *                  has a database connection and no alarm is raised, else
 *                  503 {"health":"false","reason":"storage unavailable"}
 *                  or {"health":"false","reason":"ALARM NOSPACE"};
 *                  ?exclude=NOSPACE ignores that alarm (etcd 3.5)
 *   GET /livez     200 "ok": the worker runs its loop (not the database:
 *                  a liveness probe must not restart ballast because
 *                  PostgreSQL is away); check "ping"
 *   GET /readyz    200 "ok", or 503 listing each check
 *                  ("[+]name ok", "[-]name failed: reason"): checks
 *                  data_corruption, serializable_read, linearizable_read,
 *                  non_learner; ?verbose lists them on success too,
 *                  ?exclude=NAME skips one, /readyz/NAME runs one
 *   GET /version   {"etcdserver":"3.5.17","etcdcluster":"3.5.0"}
 *   GET /metrics   Prometheus text, the node's sums (bl_http_metrics.c)
 *
 * Another method on these paths: 405 with Allow: GET; another path: 404.
 */
#include <bl_core.h>
#include <bl_storage.h>
#include <bl_http.h>
#include <bl_http_metrics.h>
#include <bl_version.h>


#define BL_HTTP_TEXT       "text/plain; charset=utf-8"
#define BL_HTTP_NOSNIFF    "X-Content-Type-Options: nosniff\r\n"

#define bl_http_path_is(s, lit)                                               \
    ((s)->len == sizeof(lit) - 1 && memcmp((s)->data, lit, (s)->len) == 0)


typedef struct {
    const char   *name;
    /* NULL when fine, else why not */
    const char *(*check)(void);
} bl_http_check_t;


static int bl_http_prefix(const bl_str_t *path, const char *name,
    bl_str_t *rest);
static void bl_http_not_allowed(bl_http_response_t *resp);
static void bl_http_health(const bl_http_request_t *r,
    bl_http_response_t *resp);
static void bl_http_checks(const bl_http_request_t *r, const bl_str_t *rest,
    const bl_http_check_t *checks, size_t n, bl_http_response_t *resp);
static void bl_http_version(bl_http_response_t *resp);
static void bl_http_metrics(bl_http_response_t *resp);
static void bl_http_text(bl_http_response_t *resp, int status,
    const char *text);
static const char *bl_http_check_ok(void);
static const char *bl_http_check_storage(void);


static const bl_http_check_t  bl_http_livez_checks[] = {
    { "ping", bl_http_check_ok },
};

static const bl_http_check_t  bl_http_readyz_checks[] = {
    /* no alarm can be raised yet */
    { "data_corruption", bl_http_check_ok },
    /* both reads are reads of the database */
    { "serializable_read", bl_http_check_storage },
    { "linearizable_read", bl_http_check_storage },
    /* a ballast node is never a learner */
    { "non_learner", bl_http_check_ok },
};


void
bl_http_handle(const bl_http_request_t *r, bl_http_response_t *resp)
{
    int       get;
    bl_str_t  rest;

    get = bl_http_path_is(&r->method, "GET");

    if (bl_http_prefix(&r->path, "/livez", &rest)) {
        bl_http_checks(r, &rest, bl_http_livez_checks,
                       bl_nelems(bl_http_livez_checks), resp);
        return;
    }

    if (bl_http_prefix(&r->path, "/readyz", &rest)) {
        bl_http_checks(r, &rest, bl_http_readyz_checks,
                       bl_nelems(bl_http_readyz_checks), resp);
        return;
    }

    if (bl_http_path_is(&r->path, "/health")) {
        if (get) {
            bl_http_health(r, resp);
            return;
        }

    } else if (bl_http_path_is(&r->path, "/version")) {
        if (get) {
            bl_http_version(resp);
            return;
        }

    } else if (bl_http_path_is(&r->path, "/metrics")) {
        if (get) {
            bl_http_metrics(resp);
            return;
        }

    } else {
        bl_http_text(resp, 404, "404 page not found\n");
        return;
    }

    bl_http_not_allowed(resp);
}


/* path is name, or name "/" something: rest is "" or "/something" */

static int
bl_http_prefix(const bl_str_t *path, const char *name, bl_str_t *rest)
{
    size_t  n;

    n = strlen(name);

    if (path->len < n || memcmp(path->data, name, n) != 0
        || (path->len > n && path->data[n] != '/'))
    {
        return 0;
    }

    rest->data = path->data + n;
    rest->len = path->len - n;

    return 1;
}


static void
bl_http_not_allowed(bl_http_response_t *resp)
{
    bl_http_text(resp, 405, "Method Not Allowed\n");
    resp->headers = "Allow: GET\r\n" BL_HTTP_NOSNIFF;
}


static bl_http_alarms_pt    bl_http_alarms;
static const char *const   *bl_http_alarm_names;
static size_t               bl_http_nalarms;


void
bl_http_set_alarms(bl_http_alarms_pt alarms, const char *const *names,
    size_t n)
{
    bl_http_alarms = alarms;
    bl_http_alarm_names = names;
    bl_http_nalarms = n;
}


static void
bl_http_health(const bl_http_request_t *r, bl_http_response_t *resp)
{
    static char  reason[96];
    uint32_t     raised;
    size_t       i, pos;
    bl_str_t     name, value;

    if (bl_storage_available() != BL_OK) {
        /* etcd's http.Error: the JSON and a newline */
        bl_http_text(resp, 503, "{\"health\":\"false\",\"reason\":"
                                "\"storage unavailable\"}\n");
        return;
    }

    raised = bl_http_alarms ? bl_http_alarms() : 0;

    /* ?exclude=NOSPACE: that alarm does not make the node unhealthy */
    pos = 0;
    while (raised && bl_http_next_arg(&r->query, &pos, &name, &value)
                     == BL_OK)
    {
        if (!bl_http_path_is(&name, "exclude")) {
            continue;
        }
        for (i = 0; i < bl_http_nalarms; i++) {
            if (bl_http_alarm_names[i]
                && value.len == strlen(bl_http_alarm_names[i])
                && memcmp(value.data, bl_http_alarm_names[i], value.len) == 0)
            {
                raised &= ~(1u << i);
            }
        }
    }

    for (i = 0; i < bl_http_nalarms && i < 32; i++) {
        if ((raised & (1u << i)) && bl_http_alarm_names[i]) {
            snprintf(reason, sizeof(reason), "{\"health\":\"false\","
                     "\"reason\":\"ALARM %s\"}\n", bl_http_alarm_names[i]);
            bl_http_text(resp, 503, reason);
            return;
        }
    }

    bl_http_text(resp, 200, "{\"health\":\"true\",\"reason\":\"\"}");
    resp->headers = NULL;
}


/*
 * /livez and /readyz: rest is what follows the name ("", or "/CHECK");
 * every check runs (in order) unless excluded; the answer is 200 "ok"
 * (with the list before it when verbose) or 503 with the list.
 */

static void
bl_http_checks(const bl_http_request_t *r, const bl_str_t *rest,
    const bl_http_check_t *checks, size_t n, bl_http_response_t *resp)
{
    int          failed, verbose, excluded;
    size_t       i, pos;
    bl_str_t     name, value;
    bl_buf_t     list;
    const char  *why;
    char         line[256];

    if (rest->len > 0) {
        /* /readyz/NAME: that check alone */
        for (i = 0; i < n; i++) {
            if (rest->len == strlen(checks[i].name) + 1
                && memcmp(rest->data + 1, checks[i].name, rest->len - 1)
                   == 0)
            {
                break;
            }
        }

        if (i == n) {
            bl_http_text(resp, 404, "404 page not found\n");
            return;
        }

        checks += i;
        n = 1;
    }

    if (!bl_http_path_is(&r->method, "GET")) {
        bl_http_not_allowed(resp);
        return;
    }

    verbose = 0;
    pos = 0;

    while (bl_http_next_arg(&r->query, &pos, &name, &value) == BL_OK) {
        if (bl_http_path_is(&name, "verbose")) {
            verbose = 1;
        }
    }

    memset(&list, 0, sizeof(bl_buf_t));
    failed = 0;

    for (i = 0; i < n; i++) {
        excluded = 0;
        pos = 0;

        while (bl_http_next_arg(&r->query, &pos, &name, &value) == BL_OK) {
            if (bl_http_path_is(&name, "exclude")
                && value.len == strlen(checks[i].name)
                && memcmp(value.data, checks[i].name, value.len) == 0)
            {
                excluded = 1;
            }
        }

        if (excluded) {
            continue;
        }

        why = checks[i].check();

        if (why == NULL) {
            snprintf(line, sizeof(line), "[+]%s ok\n", checks[i].name);

        } else {
            snprintf(line, sizeof(line), "[-]%s failed: %s\n",
                     checks[i].name, why);
            failed = 1;
        }

        if (bl_buf_append(&list, line, strlen(line)) != BL_OK) {
            bl_buf_release(&list);
            bl_http_text(resp, 500, "out of memory\n");
            return;
        }
    }

    resp->content_type = BL_HTTP_TEXT;
    resp->headers = BL_HTTP_NOSNIFF;

    if (failed) {
        /* always detailed on failure, then http.Error's newline */
        resp->status = 503;
        resp->body = list;

        if (bl_buf_append(&resp->body, "\n", 1) != BL_OK) {
            bl_buf_release(&resp->body);
        }

        return;
    }

    resp->status = 200;

    if (verbose) {
        resp->body = list;

    } else {
        bl_buf_release(&list);
    }

    if (bl_buf_append(&resp->body, "ok\n", 3) != BL_OK) {
        bl_buf_release(&resp->body);
    }
}


static void
bl_http_version(bl_http_response_t *resp)
{
    static const char  json[] = "{\"etcdserver\":\"" BL_ETCD_VERSION "\","
                                "\"etcdcluster\":\"" BL_ETCD_CLUSTER_VERSION
                                "\"}";

    bl_http_text(resp, 200, json);
    resp->content_type = "application/json";
    resp->headers = NULL;
}


static void
bl_http_metrics(bl_http_response_t *resp)
{
    if (bl_metrics_render(&resp->body) != BL_OK) {
        bl_buf_release(&resp->body);
        bl_http_text(resp, 500, "metrics could not be made\n");
        return;
    }

    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}


/* a text/plain answer, as Go's http.Error makes them */

static void
bl_http_text(bl_http_response_t *resp, int status, const char *text)
{
    resp->status = status;
    resp->content_type = BL_HTTP_TEXT;
    resp->headers = BL_HTTP_NOSNIFF;

    if (bl_buf_append(&resp->body, text, strlen(text)) != BL_OK) {
        /* the status alone, then */
        bl_buf_release(&resp->body);
    }
}


static const char *
bl_http_check_ok(void)
{
    return NULL;
}


static const char *
bl_http_check_storage(void)
{
    return bl_storage_available() == BL_OK
           ? NULL : "etcdserver: storage unavailable";
}


const char *
bl_http_status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default:  return "Unknown";
    }
}
