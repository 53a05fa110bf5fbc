/*
 * The configuration reader: a tokenizer over a file held in memory, and a
 * dispatcher that finds each directive in the modules' tables.
 */
#include <bl_core.h>
#include <bl_conf_file.h>
#include <bl_cycle.h>

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>

#define BL_CONF_MAX_INCLUDE_DEPTH  8
#define BL_CONF_MAX_FILE_SIZE      (16 * 1024 * 1024)
#define BL_CONF_MAX_ARGS           16

struct bl_conf_file_s {
    const char      *name;
    const u_char    *pos;
    const u_char    *end;
    bl_uint_t        line;        /* current line of the tokenizer */
    bl_uint_t        dline;       /* line where the directive started */
};

/* what ended a run of tokens */
typedef enum {
    BL_TOK_WORD,
    BL_TOK_SEMICOLON,
    BL_TOK_BLOCK_START,
    BL_TOK_BLOCK_END,
    BL_TOK_EOF,
    BL_TOK_ERROR
} bl_conf_tok_e;

static const bl_uint_t  bl_conf_argn[] = {
    BL_CONF_NOARGS, BL_CONF_TAKE1, BL_CONF_TAKE2, BL_CONF_TAKE3,
    BL_CONF_TAKE4
};

static char *bl_conf_parse_body(bl_conf_t *cf, int in_block);
static char *bl_conf_include(bl_conf_t *cf);

static void
bl_conf_vlog(bl_conf_t *cf, int level, bl_err_t err, const char *fmt,
    va_list args)
{
    char  msg[1024];

    vsnprintf(msg, sizeof(msg), fmt, args);
    if (cf->conf_file && cf->conf_file->name) {
        bl_log_error(level, err, "%s in %s:%lu", msg, cf->conf_file->name,
                     (unsigned long) cf->conf_file->dline);
    } else {
        bl_log_error(level, err, "%s", msg);
    }
}

void
bl_conf_error(bl_conf_t *cf, bl_err_t err, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    bl_conf_vlog(cf, BL_LOG_EMERG, err, fmt, args);
    va_end(args);
}

void
bl_conf_warn(bl_conf_t *cf, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    bl_conf_vlog(cf, BL_LOG_WARN, 0, fmt, args);
    va_end(args);
}

const char *
bl_conf_where(bl_conf_t *cf)
{
    char    buf[PATH_MAX + 32];
    size_t  n;
    char   *p;

    if (cf->conf_file == NULL) {
        return "?";
    }
    n = snprintf(buf, sizeof(buf), "%s:%lu", cf->conf_file->name,
                 (unsigned long) cf->conf_file->dline);
    p = bl_pnalloc(cf->pool, n + 1);
    if (p) {
        memcpy(p, buf, n + 1);
    }
    return p ? p : "?";
}

/* read one token: BL_TOK_WORD with *word set, or a terminator */
static bl_conf_tok_e
bl_conf_read_token(bl_conf_t *cf, bl_str_t *word, int *have_word)
{
    bl_conf_file_t  *f;
    const u_char    *p;
    u_char          *d, quote, ch;
    size_t           cap;

    f = cf->conf_file;
    *have_word = 0;

    for (;;) {
        if (f->pos >= f->end) {
            return BL_TOK_EOF;
        }
        ch = *f->pos;

        if (ch == '\n') {
            f->line++;
            f->pos++;
            continue;
        }
        if (ch == ' ' || ch == '\t' || ch == '\r') {
            f->pos++;
            continue;
        }
        if (ch == '#') {
            while (f->pos < f->end && *f->pos != '\n') {
                f->pos++;
            }
            continue;
        }
        break;
    }

    if (cf->args->nelts == 0) {
        f->dline = f->line;
    }

    switch (ch) {
    case ';':
        f->pos++;
        return BL_TOK_SEMICOLON;
    case '{':
        f->pos++;
        return BL_TOK_BLOCK_START;
    case '}':
        f->pos++;
        return BL_TOK_BLOCK_END;
    }

    if (ch == '"' || ch == '\'') {
        quote = ch;
        f->pos++;
        /* the unescaped string is never longer than the quoted one */
        for (p = f->pos; p < f->end && *p != quote; p++) {
            if (*p == '\\' && p + 1 < f->end) {
                p++;
            }
        }
        if (p >= f->end) {
            f->dline = f->line;
            bl_conf_error(cf, 0, "unterminated quoted string");
            return BL_TOK_ERROR;
        }
        cap = p - f->pos;
        d = bl_pnalloc(cf->pool, cap + 1);
        if (d == NULL) {
            return BL_TOK_ERROR;
        }
        word->data = d;
        for (p = f->pos; *p != quote; p++) {
            if (*p == '\n') {
                f->line++;
            }
            if (*p == '\\') {
                p++;
                switch (*p) {
                case 'n': *d++ = '\n'; continue;
                case 't': *d++ = '\t'; continue;
                case 'r': *d++ = '\r'; continue;
                case '"': case '\'': case '\\': *d++ = *p; continue;
                default:
                    /* unknown escapes stay as written, as nginx does */
                    *d++ = '\\';
                    *d++ = *p;
                    continue;
                }
            }
            *d++ = *p;
        }
        *d = '\0';
        word->len = d - word->data;
        f->pos = p + 1;

        if (f->pos < f->end && *f->pos != ';' && *f->pos != '{'
            && *f->pos != ' ' && *f->pos != '\t' && *f->pos != '\r'
            && *f->pos != '\n' && *f->pos != '}')
        {
            bl_conf_error(cf, 0, "unexpected \"%c\" after quoted string",
                          *f->pos);
            return BL_TOK_ERROR;
        }
        *have_word = 1;
        return BL_TOK_WORD;
    }

    for (p = f->pos; p < f->end; p++) {
        ch = *p;
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == ';'
            || ch == '{' || ch == '}' || ch == '"' || ch == '\'')
        {
            break;
        }
    }
    if (bl_str_dup(cf->pool, word, f->pos, p - f->pos) != BL_OK) {
        return BL_TOK_ERROR;
    }
    f->pos = p;
    *have_word = 1;
    return BL_TOK_WORD;
}

/* gather one directive's words; returns what ended it */
static bl_conf_tok_e
bl_conf_read_directive(bl_conf_t *cf)
{
    bl_conf_tok_e   t;
    bl_str_t        word, *arg;
    int             have;

    cf->args->nelts = 0;

    for (;;) {
        t = bl_conf_read_token(cf, &word, &have);
        if (!have) {
            return t;
        }
        if (cf->args->nelts == BL_CONF_MAX_ARGS) {
            bl_conf_error(cf, 0, "too many parameters");
            return BL_TOK_ERROR;
        }
        arg = bl_array_push(cf->args);
        if (arg == NULL) {
            return BL_TOK_ERROR;
        }
        *arg = word;
    }
}

static int
bl_conf_args_ok(const bl_command_t *cmd, bl_uint_t nargs)
{
    if (cmd->type & BL_CONF_FLAG) {
        return nargs == 1;
    }
    if (cmd->type & BL_CONF_1MORE) {
        return nargs >= 1;
    }
    if (cmd->type & BL_CONF_2MORE) {
        return nargs >= 2;
    }
    if (nargs < bl_nelems(bl_conf_argn)) {
        return (cmd->type & bl_conf_argn[nargs]) != 0;
    }
    return 0;
}

static char *
bl_conf_handle(bl_conf_t *cf, bl_conf_tok_e last)
{
    bl_str_t            *name;
    bl_module_t        **m;
    const bl_command_t  *cmd;
    char                *rv;
    void                *conf;
    int                  found;

    name = cf->args->elts;
    found = 0;

    for (m = bl_modules; *m; m++) {
        for (cmd = (*m)->commands; cmd && cmd->name; cmd++) {
            if (!bl_str_eq_cstr(name, cmd->name)) {
                continue;
            }
            found = 1;
            if (!(cmd->type & cf->ctx)) {
                continue;
            }

            if (!(cmd->type & BL_CONF_BLOCK) && last != BL_TOK_SEMICOLON) {
                bl_conf_error(cf, 0, "directive \"%s\" is not terminated "
                              "by \";\"", cmd->name);
                return BL_CONF_ERROR;
            }
            if ((cmd->type & BL_CONF_BLOCK) && last != BL_TOK_BLOCK_START) {
                bl_conf_error(cf, 0, "directive \"%s\" has no opening "
                              "\"{\"", cmd->name);
                return BL_CONF_ERROR;
            }
            if (!bl_conf_args_ok(cmd, cf->args->nelts - 1)) {
                bl_conf_error(cf, 0, "invalid number of arguments in "
                              "\"%s\" directive", cmd->name);
                return BL_CONF_ERROR;
            }

            conf = cf->cycle->conf_ctx[(*m)->index];
            rv = cmd->set(cf, cmd, conf);
            if (rv == BL_CONF_OK) {
                return BL_CONF_OK;
            }
            if (rv == BL_CONF_ERROR) {
                return BL_CONF_ERROR;
            }
            bl_conf_error(cf, 0, "\"%s\" directive %s", cmd->name, rv);
            return BL_CONF_ERROR;
        }
    }

    if (found) {
        bl_conf_error(cf, 0, "\"%.*s\" directive is not allowed here",
                      BL_STR_ARGS(name));
    } else {
        bl_conf_error(cf, 0, "unknown directive \"%.*s\"",
                      BL_STR_ARGS(name));
    }
    return BL_CONF_ERROR;
}

static char *
bl_conf_parse_body(bl_conf_t *cf, int in_block)
{
    bl_conf_tok_e  t;
    bl_str_t      *name;
    char          *rv;

    for (;;) {
        t = bl_conf_read_directive(cf);

        switch (t) {
        case BL_TOK_WORD:     /* not returned by read_directive */
        case BL_TOK_ERROR:
            return BL_CONF_ERROR;

        case BL_TOK_EOF:
            if (cf->args->nelts) {
                bl_conf_error(cf, 0, "unexpected end of file, expecting "
                              "\";\" or \"}\"");
                return BL_CONF_ERROR;
            }
            if (in_block) {
                cf->conf_file->dline = cf->conf_file->line;
                bl_conf_error(cf, 0, "unexpected end of file, expecting "
                              "\"}\"");
                return BL_CONF_ERROR;
            }
            return BL_CONF_OK;

        case BL_TOK_BLOCK_END:
            if (cf->args->nelts) {
                bl_conf_error(cf, 0, "unexpected \"}\"");
                return BL_CONF_ERROR;
            }
            if (!in_block) {
                cf->conf_file->dline = cf->conf_file->line;
                bl_conf_error(cf, 0, "unexpected \"}\"");
                return BL_CONF_ERROR;
            }
            return BL_CONF_OK;

        case BL_TOK_SEMICOLON:
        case BL_TOK_BLOCK_START:
            if (cf->args->nelts == 0) {
                bl_conf_error(cf, 0, "unexpected \"%c\"",
                              t == BL_TOK_SEMICOLON ? ';' : '{');
                return BL_CONF_ERROR;
            }
            name = cf->args->elts;
            if (bl_str_eq_cstr(name, "include")) {
                if (t != BL_TOK_SEMICOLON || cf->args->nelts != 2) {
                    bl_conf_error(cf, 0, "invalid number of arguments in "
                                  "\"include\" directive");
                    return BL_CONF_ERROR;
                }
                rv = bl_conf_include(cf);
            } else {
                rv = bl_conf_handle(cf, t);
            }
            if (rv != BL_CONF_OK) {
                return BL_CONF_ERROR;
            }
            break;
        }
    }
}

char *
bl_conf_parse_block(bl_conf_t *cf, bl_uint_t ctx, void *ctx_data)
{
    bl_uint_t   saved_ctx;
    void       *saved_data;
    char       *rv;

    saved_ctx = cf->ctx;
    saved_data = cf->ctx_data;
    cf->ctx = ctx;
    cf->ctx_data = ctx_data;

    rv = bl_conf_parse_body(cf, 1);

    cf->ctx = saved_ctx;
    cf->ctx_data = saved_data;
    return rv;
}

static char *
bl_conf_parse_buffer(bl_conf_t *cf, const char *name, const u_char *start,
    size_t len)
{
    bl_conf_file_t   file, *prev;
    bl_array_t      *saved_args, args;
    char            *rv;

    if (cf->depth >= BL_CONF_MAX_INCLUDE_DEPTH) {
        bl_conf_error(cf, 0, "includes nested too deeply");
        return BL_CONF_ERROR;
    }

    if (bl_array_init(&args, cf->pool, 8, sizeof(bl_str_t)) != BL_OK) {
        return BL_CONF_ERROR;
    }

    file.name = name;
    file.pos = start;
    file.end = start + len;
    file.line = 1;
    file.dline = 1;

    prev = cf->conf_file;
    saved_args = cf->args;
    cf->conf_file = &file;
    cf->args = &args;
    cf->depth++;

    rv = bl_conf_parse_body(cf, 0);

    cf->depth--;
    cf->conf_file = prev;
    cf->args = saved_args;
    return rv;
}

char *
bl_conf_parse(bl_conf_t *cf, const bl_str_t *filename)
{
    struct stat  st;
    u_char      *buf;
    char        *name, *rv;
    ssize_t      n;
    size_t       got;
    int          fd;

    name = bl_pstrdup(cf->pool, filename);
    if (name == NULL) {
        return BL_CONF_ERROR;
    }

    fd = open(name, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        bl_conf_error(cf, errno, "open() \"%s\" failed", name);
        return BL_CONF_ERROR;
    }
    if (fstat(fd, &st) == -1) {
        bl_conf_error(cf, errno, "fstat() \"%s\" failed", name);
        close(fd);
        return BL_CONF_ERROR;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > BL_CONF_MAX_FILE_SIZE) {
        bl_conf_error(cf, 0, "\"%s\" is not a regular file of at most "
                      "16 MiB", name);
        close(fd);
        return BL_CONF_ERROR;
    }

    buf = bl_pnalloc(cf->pool, st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return BL_CONF_ERROR;
    }
    for (got = 0; got < (size_t) st.st_size; got += n) {
        n = read(fd, buf + got, st.st_size - got);
        if (n == -1 && errno == EINTR) {
            n = 0;
            continue;
        }
        if (n <= 0) {
            bl_conf_error(cf, n == 0 ? 0 : errno, "read() \"%s\" failed",
                          name);
            close(fd);
            return BL_CONF_ERROR;
        }
    }
    close(fd);

    rv = bl_conf_parse_buffer(cf, name, buf, got);
    return rv;
}

char *
bl_conf_parse_string(bl_conf_t *cf, const char *text, const char *name)
{
    return bl_conf_parse_buffer(cf, name, (const u_char *) text,
                                strlen(text));
}

static char *
bl_conf_include(bl_conf_t *cf)
{
    bl_str_t   *value, pattern, file;
    glob_t      g;
    size_t      i;
    int         rc;
    char       *rv;

    value = cf->args->elts;
    pattern = value[1];
    if (bl_conf_full_name(cf->cycle, &pattern) != BL_OK) {
        return BL_CONF_ERROR;
    }

    rc = glob((char *) pattern.data, 0, NULL, &g);
    if (rc == GLOB_NOMATCH) {
        /* a pattern that matches nothing is fine, a plain name is not */
        if (strpbrk((char *) pattern.data, "*?[") == NULL) {
            bl_conf_error(cf, ENOENT, "include \"%s\" failed",
                          (char *) pattern.data);
            return BL_CONF_ERROR;
        }
        return BL_CONF_OK;
    }
    if (rc != 0) {
        bl_conf_error(cf, errno, "glob() \"%s\" failed",
                      (char *) pattern.data);
        return BL_CONF_ERROR;
    }

    rv = BL_CONF_OK;
    for (i = 0; i < g.gl_pathc; i++) {
        file.data = (u_char *) g.gl_pathv[i];
        file.len = strlen(g.gl_pathv[i]);
        rv = bl_conf_parse(cf, &file);
        if (rv != BL_CONF_OK) {
            break;
        }
    }
    globfree(&g);
    return rv;
}

bl_int_t
bl_conf_default_path(bl_cycle_t *cycle, const char *path, bl_str_t *out)
{
    size_t  n;

    n = strlen(BL_PREFIX);
    if (strncmp(path, BL_PREFIX, n) == 0) {
        path += n;                       /* relative to the prefix */
    }
    out->data = (u_char *) path;
    out->len = strlen(path);
    return bl_conf_full_name(cycle, out);
}

bl_int_t
bl_conf_full_name(bl_cycle_t *cycle, bl_str_t *name)
{
    u_char  *p;

    if (name->len && name->data[0] == '/') {
        return bl_str_dup(cycle->pool, name, name->data, name->len);
    }
    p = bl_pnalloc(cycle->pool, cycle->prefix.len + name->len + 1);
    if (p == NULL) {
        return BL_ERROR;
    }
    memcpy(p, cycle->prefix.data, cycle->prefix.len);
    memcpy(p + cycle->prefix.len, name->data, name->len);
    p[cycle->prefix.len + name->len] = '\0';
    name->data = p;
    name->len += cycle->prefix.len;
    return BL_OK;
}

/* values */

bl_int_t
bl_conf_parse_size(const bl_str_t *s, size_t *out)
{
    int64_t   n, scale;
    size_t    len;

    len = s->len;
    scale = 1;
    if (len == 0) {
        return BL_ERROR;
    }
    switch (s->data[len - 1]) {
    case 'k': case 'K': scale = 1024; len--; break;
    case 'm': case 'M': scale = 1024 * 1024; len--; break;
    case 'g': case 'G': scale = 1024 * 1024 * 1024; len--; break;
    }
    if (bl_atoi(s->data, len, &n) != BL_OK || n > INT64_MAX / scale) {
        return BL_ERROR;
    }
    *out = (size_t) (n * scale);
    return BL_OK;
}

bl_int_t
bl_conf_parse_msec(const bl_str_t *s, int64_t *out)
{
    const u_char  *p, *end, *num;
    int64_t        total, n, scale;

    p = s->data;
    end = p + s->len;
    total = 0;

    if (p == end) {
        return BL_ERROR;
    }

    while (p < end) {
        num = p;
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
        if (bl_atoi(num, p - num, &n) != BL_OK) {
            return BL_ERROR;
        }
        if (p == end) {
            scale = 1000;                      /* bare number: seconds */
        } else if (end - p >= 2 && p[0] == 'm' && p[1] == 's') {
            scale = 1; p += 2;
        } else {
            switch (*p++) {
            case 's': scale = 1000; break;
            case 'm': scale = 60 * 1000; break;
            case 'h': scale = 3600 * 1000; break;
            case 'd': scale = 86400 * 1000LL; break;
            case 'w': scale = 7 * 86400 * 1000LL; break;
            default: return BL_ERROR;
            }
        }
        if (n > (INT64_MAX - total) / scale) {
            return BL_ERROR;
        }
        total += n * scale;
    }
    *out = total;
    return BL_OK;
}

bl_int_t
bl_conf_parse_flag(const bl_str_t *s, int *out)
{
    if (bl_str_eq_cstr(s, "on")) {
        *out = 1;
        return BL_OK;
    }
    if (bl_str_eq_cstr(s, "off")) {
        *out = 0;
        return BL_OK;
    }
    return BL_ERROR;
}

/* setters */

char *
bl_conf_set_flag(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    int       *fp;
    bl_str_t  *value;

    fp = (int *) ((u_char *) conf + cmd->offset);
    if (*fp != BL_CONF_UNSET) {
        return "is duplicate";
    }
    value = cf->args->elts;
    if (bl_conf_parse_flag(&value[1], fp) != BL_OK) {
        bl_conf_error(cf, 0, "invalid value \"%.*s\" in \"%s\" directive, "
                      "it must be \"on\" or \"off\"", BL_STR_ARGS(&value[1]),
                      cmd->name);
        return BL_CONF_ERROR;
    }
    return BL_CONF_OK;
}

char *
bl_conf_set_str(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    bl_str_t  *field, *value;

    field = (bl_str_t *) ((u_char *) conf + cmd->offset);
    if (field->data) {
        return "is duplicate";
    }
    value = cf->args->elts;
    *field = value[1];
    return BL_CONF_OK;
}

char *
bl_conf_set_path(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    bl_str_t  *field, *value;

    field = (bl_str_t *) ((u_char *) conf + cmd->offset);
    if (field->data) {
        return "is duplicate";
    }
    value = cf->args->elts;
    if (value[1].len == 0) {
        return "has an empty path";
    }
    *field = value[1];
    if (bl_conf_full_name(cf->cycle, field) != BL_OK) {
        return BL_CONF_ERROR;
    }
    return BL_CONF_OK;
}

char *
bl_conf_set_num(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    int64_t                     *np;
    bl_str_t                    *value;
    const bl_conf_num_bounds_t  *b;

    np = (int64_t *) ((u_char *) conf + cmd->offset);
    if (*np != BL_CONF_UNSET) {
        return "is duplicate";
    }
    value = cf->args->elts;
    if (bl_atoi(value[1].data, value[1].len, np) != BL_OK) {
        bl_conf_error(cf, 0, "invalid number \"%.*s\" in \"%s\" directive",
                      BL_STR_ARGS(&value[1]), cmd->name);
        return BL_CONF_ERROR;
    }
    b = cmd->post;
    if (b && (*np < b->low || *np > b->high)) {
        bl_conf_error(cf, 0, "\"%s\" must be between %" PRId64 " and %"
                      PRId64, cmd->name, b->low, b->high);
        return BL_CONF_ERROR;
    }
    return BL_CONF_OK;
}

char *
bl_conf_set_size(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    size_t    *sp;
    bl_str_t  *value;

    sp = (size_t *) ((u_char *) conf + cmd->offset);
    if (*sp != BL_CONF_UNSET_SIZE) {
        return "is duplicate";
    }
    value = cf->args->elts;
    if (bl_conf_parse_size(&value[1], sp) != BL_OK) {
        bl_conf_error(cf, 0, "invalid size \"%.*s\" in \"%s\" directive",
                      BL_STR_ARGS(&value[1]), cmd->name);
        return BL_CONF_ERROR;
    }
    return BL_CONF_OK;
}

char *
bl_conf_set_msec(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    int64_t   *mp;
    bl_str_t  *value;

    mp = (int64_t *) ((u_char *) conf + cmd->offset);
    if (*mp != BL_CONF_UNSET_MSEC) {
        return "is duplicate";
    }
    value = cf->args->elts;
    if (bl_conf_parse_msec(&value[1], mp) != BL_OK) {
        bl_conf_error(cf, 0, "invalid time \"%.*s\" in \"%s\" directive",
                      BL_STR_ARGS(&value[1]), cmd->name);
        return BL_CONF_ERROR;
    }
    return BL_CONF_OK;
}

char *
bl_conf_set_enum(bl_conf_t *cf, const bl_command_t *cmd, void *conf)
{
    bl_uint_t             *up;
    bl_str_t              *value;
    const bl_conf_enum_t  *e;

    up = (bl_uint_t *) ((u_char *) conf + cmd->offset);
    if (*up != BL_CONF_UNSET_UINT) {
        return "is duplicate";
    }
    value = cf->args->elts;
    for (e = cmd->post; e->name; e++) {
        if (bl_str_eq_cstr(&value[1], e->name)) {
            *up = e->value;
            return BL_CONF_OK;
        }
    }
    bl_conf_error(cf, 0, "invalid value \"%.*s\" in \"%s\" directive",
                  BL_STR_ARGS(&value[1]), cmd->name);
    return BL_CONF_ERROR;
}
