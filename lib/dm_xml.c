/* Reads Broadband Forum data-model XML (TR-106 DM schema): documents and
 * their imports, and the scopes in which names are resolved. The model
 * itself is built by dm_model.c.
 *
 * Documents are read with libxml2's SAX2 callbacks into a minimal element
 * tree (struct dm_xnode) kept in one bump pool: nothing of libxml2's own
 * tree is built, and bibliography, templates, profiles and (unless asked
 * for) descriptions are skipped as they are read.
 *
 * Names are scoped per document: a document sees its own definitions, what
 * its <import> elements bind (possibly renamed by ref=), and, as a tolerant
 * fallback, definitions of the documents it imports transitively. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libxml/SAX2.h>
#include <libxml/entities.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlerror.h>

#include "dm_int.h"
#include "usp/errors.h"

#define MAX_FILE_BYTES ((size_t)256 * 1024 * 1024)
#define MAX_TREE_DEPTH 300 /* libxml2 stops at 256 without XML_PARSE_HUGE */

struct xbind {
    enum dm_def_kind kind;
    const char *name; /* local name (interned) */
    const char *ref;  /* name in the imported document */
};

struct ximport {
    struct dm_xdoc *doc;
    struct dm_vec binds; /* struct xbind */
};

struct dm_xdoc {
    struct dm_xdoc *next;
    char *path;       /* as opened, NULL for the root */
    const char *name; /* for messages (interned) */
    struct dm_xnode *root;
    xmlDictPtr dict;       /* owns the element and attribute names */
    struct dm_vec defs[3]; /* struct dm_xdef by enum dm_def_kind */
    struct dm_vec imports; /* struct ximport */
    const struct dm_xnode *last_model;
    unsigned visit;
    bool loading;
};

/* ---- element trees ---- */

const char *dm_xml__doc_name(const struct dm_xdoc *d)
{
    return d ? d->name : "?";
}

const char *dm_xml__attr(const struct dm_xnode *n, const char *name)
{
    for (uint32_t i = 0; i < n->nattrs; i++)
        if (n->attrs[i].name[0] == name[0] && strcmp(n->attrs[i].name, name) == 0)
            return n->attrs[i].value;
    return NULL;
}

const struct dm_xnode *dm_xml__child(const struct dm_xnode *n, enum dm_tag tag)
{
    for (const struct dm_xnode *c = n->children; c; c = c->next)
        if (c->tag == tag)
            return c;
    return NULL;
}

static const char *const tag_names[] = {
    [DM_T_DOCUMENT] = "document",
    [DM_T_IMPORT] = "import",
    [DM_T_DATATYPE] = "dataType",
    [DM_T_COMPONENT] = "component",
    [DM_T_MODEL] = "model",
    [DM_T_OBJECT] = "object",
    [DM_T_PARAMETER] = "parameter",
    [DM_T_COMMAND] = "command",
    [DM_T_EVENT] = "event",
    [DM_T_INPUT] = "input",
    [DM_T_OUTPUT] = "output",
    [DM_T_UNIQUEKEY] = "uniqueKey",
    [DM_T_SYNTAX] = "syntax",
    [DM_T_LIST] = "list",
    [DM_T_DEFAULT] = "default",
    [DM_T_SIZE] = "size",
    [DM_T_RANGE] = "range",
    [DM_T_ENUMERATION] = "enumeration",
    [DM_T_PATTERN] = "pattern",
    [DM_T_UNITS] = "units",
    [DM_T_PATHREF] = "pathRef",
    [DM_T_INSTANCEREF] = "instanceRef",
    [DM_T_ENUMERATIONREF] = "enumerationRef",
    [DM_T_DESCRIPTION] = "description",
    [DM_T_STRING] = "string",
    [DM_T_BOOLEAN] = "boolean",
    [DM_T_INT] = "int",
    [DM_T_UNSIGNEDINT] = "unsignedInt",
    [DM_T_LONG] = "long",
    [DM_T_UNSIGNEDLONG] = "unsignedLong",
    [DM_T_DATETIME] = "dateTime",
    [DM_T_BASE64] = "base64",
    [DM_T_HEXBINARY] = "hexBinary",
    [DM_T_DECIMAL] = "decimal",
};

static uint8_t tag_of(const char *name)
{
    for (size_t i = 1; i < sizeof tag_names / sizeof tag_names[0]; i++)
        if (tag_names[i][0] == name[0] && !strcmp(tag_names[i], name))
            return (uint8_t)i;
    return DM_T_OTHER;
}

/* "<parameter name="X">" for messages. */
static void describe(const struct dm_xnode *n, char *buf, size_t len)
{
    static const char *const keys[] = {"name", "base", "ref", "file", "value"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = dm_xml__attr(n, keys[i]);
        if (v) {
            snprintf(buf, len, "<%s %s=\"%.80s\">", n->name, keys[i], v);
            return;
        }
    }
    snprintf(buf, len, "<%s>", n->name);
}

int dm_xml__fail(struct dm_loader *L, const struct dm_xdoc *d, const struct dm_xnode *n,
                 const char *fmt, ...)
{
    if (L->failed)
        return USP_EINVAL;
    L->failed = true;
    if (!L->err)
        return USP_EINVAL;
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (n) {
        char el[160];
        describe(L->ctx ? L->ctx : n, el, sizeof el);
        dm_schema__errorf(L->err, (int)n->line, "%s:%u: %s: %s", dm_xml__doc_name(d), n->line, el,
                          what);
    } else {
        dm_schema__errorf(L->err, 0, "%s: %s", dm_xml__doc_name(d), what);
    }
    return USP_EINVAL;
}

int dm_xml__oom(struct dm_loader *L)
{
    if (!L->failed && L->err)
        dm_schema__errorf(L->err, 0, "out of memory");
    L->failed = true;
    return USP_ENOMEM;
}

const char *dm_xml__intern(struct dm_loader *L, const char *s)
{
    return dm_schema__intern(&L->b->strs, s, strlen(s));
}

/* ---- SAX2 reading ---- */

struct sax_level {
    struct dm_xnode *node;
    struct dm_xnode *last; /* last child so far */
};

/* Element names come from the parser's dictionary: one pointer per name,
 * so a pointer-keyed cache maps them to tags without string compares. */
#define TAG_CACHE 64

struct tag_slot {
    const xmlChar *name;
    uint8_t tag;
};

struct sax {
    struct dm_loader *L;
    struct tag_slot tags[TAG_CACHE];
    xmlParserCtxtPtr ctxt;
    struct sax_level stack[MAX_TREE_DEPTH];
    int depth;
    unsigned skip; /* > 0 inside a subtree left out */
    struct dm_xnode *root;
    bool bad_root;
    bool keep_desc;
    char *text; /* description being read */
    size_t tlen, tcap;
    bool in_desc;
    bool nomem;
};

static uint8_t cached_tag(struct sax *S, const xmlChar *name)
{
    size_t h = ((uintptr_t)name >> 3) % TAG_CACHE;
    for (size_t i = 0; i < TAG_CACHE; i++) {
        struct tag_slot *t = &S->tags[(h + i) % TAG_CACHE];
        if (t->name == name)
            return t->tag;
        if (!t->name) {
            t->name = name;
            t->tag = tag_of((const char *)name);
            return t->tag;
        }
    }
    return tag_of((const char *)name);
}

/* Subtrees the loader never looks at: everything below the document but
 * imports, dataTypes, components and models; profiles; descriptions
 * unless kept. */
static bool skipped(const struct sax *S, uint8_t tag)
{
    if (S->depth == 1)
        return tag != DM_T_IMPORT && tag != DM_T_DATATYPE && tag != DM_T_COMPONENT &&
               tag != DM_T_MODEL;
    return tag == DM_T_DESCRIPTION && !S->keep_desc;
}

/* The line of the start tag's '<' (the parser is at its end). */
static uint32_t start_line(xmlParserCtxtPtr ctxt)
{
    xmlParserInputPtr in = ctxt->input;
    if (!in || !in->cur || !in->base)
        return 0;
    int line = in->line;
    const xmlChar *p = in->cur;
    while (p > in->base && *p != '<') {
        p--;
        if (*p == '\n' && line > 1)
            line--;
    }
    return line > 0 ? (uint32_t)line : 0;
}

static void sax_stop(struct sax *S)
{
    S->nomem = true;
    xmlStopParser(S->ctxt);
}

static void on_start(void *ud, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri,
                     int nb_namespaces, const xmlChar **namespaces, int nb_attributes,
                     int nb_defaulted, const xmlChar **attributes)
{
    struct sax *S = ud;
    const char *name = (const char *)localname;
    if (S->skip) {
        S->skip++;
        return;
    }
    uint8_t tag = cached_tag(S, localname);
    if (S->depth == 0) {
        if (S->root || tag != DM_T_DOCUMENT || !uri ||
            strncmp((const char *)uri, "urn:broadband-forum-org:cwmp:datamodel-", 39) != 0)
            S->bad_root = true;
    } else if (skipped(S, tag)) {
        S->skip = 1;
        return;
    }
    if (S->depth >= MAX_TREE_DEPTH || nb_attributes < 0) {
        S->skip = 1;
        return;
    }
    size_t na = (size_t)nb_attributes;
    struct dm_xnode *n = dm_schema__alloc(&S->L->xpool, sizeof *n);
    struct dm_xattr *as = na ? dm_schema__alloc(&S->L->xpool, na * sizeof *as) : NULL;
    if (!n || (na && !as)) {
        sax_stop(S);
        return;
    }
    n->name = name;
    n->tag = tag;
    n->line = start_line(S->ctxt);
    for (size_t i = 0; i < na; i++) {
        const xmlChar **a = attributes + 5 * i;
        size_t vl = (size_t)(a[4] - a[3]);
        char *v = dm_schema__alloc(&S->L->xpool, vl + 1);
        if (!v) {
            sax_stop(S);
            return;
        }
        memcpy(v, a[3], vl);
        v[vl] = 0;
        as[i].name = (const char *)a[0];
        as[i].value = v;
    }
    n->attrs = as;
    n->nattrs = (uint32_t)na;
    if (S->depth == 0) {
        S->root = n;
    } else {
        struct sax_level *p = &S->stack[S->depth - 1];
        if (p->last)
            p->last->next = n;
        else
            p->node->children = n;
        p->last = n;
    }
    S->stack[S->depth++] = (struct sax_level){n, NULL};
    if (tag == DM_T_DESCRIPTION) {
        S->in_desc = true;
        S->tlen = 0;
    }
}

static void on_end(void *ud, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri)
{
    struct sax *S = ud;
    if (S->skip) {
        S->skip--;
        return;
    }
    if (S->depth == 0)
        return;
    struct dm_xnode *n = S->stack[--S->depth].node;
    if (S->in_desc && n->tag == DM_T_DESCRIPTION) {
        char *t = dm_schema__alloc(&S->L->xpool, S->tlen + 1);
        if (!t) {
            sax_stop(S);
            return;
        }
        if (S->tlen)
            memcpy(t, S->text, S->tlen);
        t[S->tlen] = 0;
        n->text = t;
        S->in_desc = false;
    }
}

static void on_text(void *ud, const xmlChar *ch, int len)
{
    struct sax *S = ud;
    if (S->skip || !S->in_desc || len <= 0)
        return;
    if (S->tlen + (size_t)len + 1 > S->tcap) {
        size_t cap = (S->tcap ? S->tcap * 2 : 1024) + (size_t)len;
        char *t = realloc(S->text, cap);
        if (!t) {
            sax_stop(S);
            return;
        }
        S->text = t;
        S->tcap = cap;
    }
    memcpy(S->text + S->tlen, ch, (size_t)len);
    S->tlen += (size_t)len;
}

/* Internal general entities of the internal subset are honoured (the BBF
 * files use them in patterns); nothing external is ever loaded. The SAX2
 * defaults keep them in ctxt->myDoc, a document without elements. */
static void on_start_document(void *ud)
{
    xmlSAX2StartDocument(((struct sax *)ud)->ctxt);
}

static void on_internal_subset(void *ud, const xmlChar *name, const xmlChar *ext_id,
                               const xmlChar *sys_id)
{
    xmlSAX2InternalSubset(((struct sax *)ud)->ctxt, name, NULL, NULL);
}

static void on_entity_decl(void *ud, const xmlChar *name, int type, const xmlChar *public_id,
                           const xmlChar *system_id, xmlChar *content)
{
    if (type == XML_INTERNAL_GENERAL_ENTITY)
        xmlSAX2EntityDecl(((struct sax *)ud)->ctxt, name, type, NULL, NULL, content);
}

static xmlEntityPtr on_get_entity(void *ud, const xmlChar *name)
{
    xmlEntityPtr e = xmlSAX2GetEntity(((struct sax *)ud)->ctxt, name);
    if (e && e->etype != XML_INTERNAL_GENERAL_ENTITY && e->etype != XML_INTERNAL_PREDEFINED_ENTITY)
        return NULL;
    return e;
}

/* Reads a buffer into a new document of L (not yet scanned). */
static int parse_doc(struct dm_loader *L, const char *buf, size_t len, const char *name,
                     const char *path, struct dm_xdoc **out)
{
    struct dm_xdoc *d = calloc(1, sizeof *d);
    if (!d)
        return dm_xml__oom(L);
    d->name = dm_xml__intern(L, name);
    d->path = path ? strdup(path) : NULL;
    if (!d->name || (path && !d->path)) {
        free(d->path);
        free(d);
        return dm_xml__oom(L);
    }
    d->next = L->docs;
    L->docs = d;
    if (len > INT32_MAX)
        return dm_xml__fail(L, d, NULL, "larger than %d bytes", INT32_MAX);
    if (!len)
        return dm_xml__fail(L, d, NULL, "empty document");
    xmlParserCtxtPtr ctxt = xmlCreateMemoryParserCtxt(buf, (int)len);
    if (!ctxt)
        return dm_xml__oom(L);
    xmlSAXHandler h;
    memset(&h, 0, sizeof h);
    h.initialized = XML_SAX2_MAGIC;
    h.startElementNs = on_start;
    h.endElementNs = on_end;
    h.characters = on_text;
    h.cdataBlock = on_text;
    h.startDocument = on_start_document;
    h.internalSubset = on_internal_subset;
    h.entityDecl = on_entity_decl;
    h.getEntity = on_get_entity;
    struct sax S = {.L = L, .ctxt = ctxt, .keep_desc = L->flags & USP_DM_LOAD_DESCRIPTIONS};
    xmlSAXHandlerPtr saved = ctxt->sax;
    ctxt->sax = &h;
    ctxt->userData = &S;
    /* NOENT: entity references are replaced (in attribute values too); only
     * internal ones exist, see on_get_entity. */
    xmlCtxtUseOptions(ctxt,
                      XML_PARSE_NONET | XML_PARSE_NOENT | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    xmlParseDocument(ctxt);
    bool ok = ctxt->wellFormed && !S.nomem;
    int rc = 0;
    if (S.nomem) {
        rc = dm_xml__oom(L);
    } else if (!ok) {
        xmlErrorPtr e = xmlCtxtGetLastError(ctxt);
        char msg[300] = "not well-formed XML";
        int line = 0;
        if (e && e->message) {
            snprintf(msg, sizeof msg, "%s", e->message);
            size_t ml = strlen(msg);
            while (ml && (msg[ml - 1] == '\n' || msg[ml - 1] == ' '))
                msg[--ml] = 0;
            line = e->line;
        }
        if (!L->failed && L->err)
            dm_schema__errorf(L->err, line, "%s:%d: XML error: %s", d->name, line, msg);
        L->failed = true;
        rc = USP_EINVAL;
    }
    d->dict = ctxt->dict;
    if (d->dict)
        xmlDictReference(d->dict);
    ctxt->sax = saved;
    if (ctxt->myDoc) {
        xmlFreeDoc(ctxt->myDoc);
        ctxt->myDoc = NULL;
    }
    xmlFreeParserCtxt(ctxt);
    free(S.text);
    if (rc < 0)
        return rc;
    d->root = S.root;
    if (!S.root || S.bad_root)
        return dm_xml__fail(L, d, S.root,
                            "not a Broadband Forum data-model document (expected <dm:document> in "
                            "namespace urn:broadband-forum-org:cwmp:datamodel-1-N)");
    *out = d;
    return 0;
}

/* ---- files and imports ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_dir(struct dm_loader *L)
{
    if (L->listed)
        return 0;
    L->listed = true;
    DIR *dir = opendir(L->dir);
    if (!dir)
        return 0;
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (L->ndirents == cap) {
            size_t nc = cap ? cap * 2 : 128;
            char **v = realloc(L->dirents, nc * sizeof *v);
            if (!v) {
                closedir(dir);
                return USP_ENOMEM;
            }
            L->dirents = v;
            cap = nc;
        }
        if (!(L->dirents[L->ndirents] = strdup(de->d_name))) {
            closedir(dir);
            return USP_ENOMEM;
        }
        L->ndirents++;
    }
    closedir(dir);
    qsort(L->dirents, L->ndirents, sizeof *L->dirents, cmp_str);
    return 0;
}

static bool dir_has(struct dm_loader *L, const char *name)
{
    char **hit =
        L->ndirents ? bsearch(&name, L->dirents, L->ndirents, sizeof *L->dirents, cmp_str) : NULL;
    return hit != NULL;
}

static size_t split_dash(char *s, char **tok, size_t max)
{
    size_t n = 0;
    char *p = s;
    while (n < max) {
        tok[n++] = p;
        char *d = strchr(p, '-');
        if (!d)
            break;
        *d = 0;
        p = d + 1;
    }
    return n;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* file="tr-181-2-iot.xml" spec="urn:...:tr-181-2-19-iot" -> the highest
 * tr-181-2-19-<c>-iot.xml in the folder; otherwise the file name itself. */
static int resolve_file(struct dm_loader *L, const char *file, const char *spec, char *out,
                        size_t outlen)
{
    int rc = list_dir(L);
    if (rc < 0)
        return rc;
    size_t flen = strlen(file);
    if (spec && flen > 4 && !strcmp(file + flen - 4, ".xml") && flen < 200) {
        char fbuf[200], sbuf[200];
        memcpy(fbuf, file, flen - 4);
        fbuf[flen - 4] = 0;
        const char *colon = strrchr(spec, ':');
        snprintf(sbuf, sizeof sbuf, "%s", colon ? colon + 1 : spec);
        size_t sl = strlen(sbuf);
        if (sl > 4 && !strcmp(sbuf + sl - 4, ".xml"))
            sbuf[sl - 4] = 0;
        char *F[32], *S[32];
        size_t nf = split_dash(fbuf, F, 32), ns = split_dash(sbuf, S, 32);
        size_t p = 0;
        while (p < nf && p < ns && !strcmp(F[p], S[p]))
            p++;
        size_t s = 0;
        while (p + s < nf && p + s < ns && !strcmp(F[nf - 1 - s], S[ns - 1 - s]))
            s++;
        size_t mid = ns - p - s;
        if (p + s == nf && p > 0 && (mid == 1 || mid == 2) && all_digits(S[p]) &&
            (mid == 1 || all_digits(S[p + 1]))) {
            char head[200] = "", tail[200] = "";
            for (size_t i = 0; i < p; i++)
                snprintf(head + strlen(head), sizeof head - strlen(head), "%s-", F[i]);
            snprintf(head + strlen(head), sizeof head - strlen(head), "%s-", S[p]);
            for (size_t i = p; i < nf; i++)
                snprintf(tail + strlen(tail), sizeof tail - strlen(tail), "-%s", F[i]);
            snprintf(tail + strlen(tail), sizeof tail - strlen(tail), ".xml");
            size_t hl = strlen(head), tl = strlen(tail);
            long best = -1;
            for (size_t i = 0; i < L->ndirents; i++) {
                const char *e = L->dirents[i];
                size_t el = strlen(e);
                if (el <= hl + tl || strncmp(e, head, hl) || strcmp(e + el - tl, tail))
                    continue;
                char num[16];
                size_t nl = el - hl - tl;
                if (nl >= sizeof num)
                    continue;
                memcpy(num, e + hl, nl);
                num[nl] = 0;
                if (!all_digits(num))
                    continue;
                long c = strtol(num, NULL, 10);
                if (c > best)
                    best = c;
            }
            if (best >= 0) {
                snprintf(out, outlen, "%s%ld%s", head, best, tail);
                return 0;
            }
        }
    }
    if (dir_has(L, file)) {
        snprintf(out, outlen, "%s", file);
        return 0;
    }
    return USP_ENOENT;
}

static int read_file(const char *path, char **buf, size_t *len, char *why, size_t whylen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, whylen, "%s", strerror(errno));
        return USP_EIO;
    }
    size_t cap = 1 << 16, n = 0;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
        (uint64_t)st.st_size < MAX_FILE_BYTES)
        cap = (size_t)st.st_size + 2; /* one read, and one more to see the end */
    char *b = malloc(cap);
    int rc = USP_ENOMEM;
    if (!b)
        goto out;
    for (;;) {
        if (n + 1 >= cap) { /* room for the NUL too */
            if (cap >= MAX_FILE_BYTES) {
                snprintf(why, whylen, "file larger than %zu bytes", MAX_FILE_BYTES);
                rc = USP_ERANGE;
                goto out;
            }
            char *nb = realloc(b, cap * 2);
            if (!nb)
                goto out;
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                snprintf(why, whylen, "read error");
                rc = USP_EIO;
                goto out;
            }
            break;
        }
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    b = NULL;
    rc = 0;
out:
    free(b);
    fclose(f);
    if (rc == USP_ENOMEM)
        snprintf(why, whylen, "out of memory");
    return rc;
}

static void xdoc_free(struct dm_xdoc *d)
{
    for (int k = 0; k < 3; k++)
        dm_schema__vec_free(&d->defs[k]);
    for (uint32_t i = 0; i < d->imports.n; i++)
        dm_schema__vec_free(&DM_VEC_AT(d->imports, struct ximport, i).binds);
    dm_schema__vec_free(&d->imports);
    if (d->dict)
        xmlDictFree(d->dict);
    free(d->path);
    free(d);
}

static int register_doc(struct dm_loader *L, struct dm_xdoc *d);

static int load_import(struct dm_loader *L, struct dm_xdoc *from, const struct dm_xnode *imp,
                       struct dm_xdoc **out)
{
    const char *file = dm_xml__attr(imp, "file");
    const char *spec = dm_xml__attr(imp, "spec");
    if (!file || !*file)
        return dm_xml__fail(L, from, imp, "<import> without file=");
    if (strchr(file, '/') || strchr(file, '\\') || file[0] == '.')
        return dm_xml__fail(L, from, imp,
                            "import file must be a plain file name in the same folder");
    if (!L->dir)
        return dm_xml__fail(L, from, imp,
                            "cannot import \"%s\": no folder to import from (loaded from memory)",
                            file);
    char name[256];
    int rc = resolve_file(L, file, spec, name, sizeof name);
    if (rc == USP_ENOMEM)
        return dm_xml__oom(L);
    if (rc < 0)
        return dm_xml__fail(L, from, imp, "cannot find the imported file \"%s\"%s%s%s in %s", file,
                            spec ? " (spec \"" : "", spec ? spec : "", spec ? "\")" : "", L->dir);
    for (struct dm_xdoc *d = L->docs; d; d = d->next) {
        const char *slash = d->path ? strrchr(d->path, '/') : NULL;
        if (slash && !strcmp(slash + 1, name)) {
            if (d->loading)
                return dm_xml__fail(L, from, imp,
                                    "import cycle: \"%s\" imports itself (indirectly)", name);
            *out = d;
            return 0;
        }
    }
    if (L->import_depth >= DM_MAX_DEPTH)
        return dm_xml__fail(L, from, imp, "imports nested deeper than %d", DM_MAX_DEPTH);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", L->dir, name);
    char *buf = NULL;
    size_t len = 0;
    char why[128];
    if ((rc = read_file(path, &buf, &len, why, sizeof why)) < 0)
        return dm_xml__fail(L, from, imp, "cannot read \"%s\": %s", path, why);
    struct dm_xdoc *d = NULL;
    rc = parse_doc(L, buf, len, path, path, &d);
    free(buf);
    if (rc < 0)
        return rc;
    L->import_depth++;
    rc = register_doc(L, d);
    L->import_depth--;
    if (rc < 0)
        return rc;
    *out = d;
    return 0;
}

static int bind_imports(struct dm_loader *L, struct dm_xdoc *d, const struct dm_xnode *n,
                        struct ximport *im)
{
    for (const struct dm_xnode *c = n->children; c; c = c->next) {
        enum dm_def_kind k;
        if (c->tag == DM_T_DATATYPE)
            k = DM_DEF_TYPE;
        else if (c->tag == DM_T_COMPONENT)
            k = DM_DEF_COMPONENT;
        else if (c->tag == DM_T_MODEL)
            k = DM_DEF_MODEL;
        else
            continue;
        const char *nm = dm_xml__attr(c, "name");
        if (!nm || !*nm)
            return dm_xml__fail(L, d, c, "imported item without name=");
        const char *ref = dm_xml__attr(c, "ref");
        struct xbind *bd = dm_schema__vec_push(&im->binds, sizeof *bd);
        if (!bd)
            return dm_xml__oom(L);
        bd->kind = k;
        bd->name = dm_xml__intern(L, nm);
        bd->ref = dm_xml__intern(L, ref && *ref ? ref : nm);
        if (!bd->name || !bd->ref)
            return dm_xml__oom(L);
    }
    return 0;
}

/* Scans a document's top level: imports (loaded now), dataTypes,
 * components and models (expanded later, where used). */
static int register_doc(struct dm_loader *L, struct dm_xdoc *d)
{
    d->loading = true;
    for (const struct dm_xnode *n = d->root->children; n; n = n->next) {
        enum dm_def_kind kind;
        if (n->tag == DM_T_IMPORT) {
            struct dm_xdoc *target = NULL;
            int rc = load_import(L, d, n, &target);
            if (rc < 0)
                return rc;
            struct ximport *im = dm_schema__vec_push(&d->imports, sizeof *im);
            if (!im)
                return dm_xml__oom(L);
            im->doc = target;
            if ((rc = bind_imports(L, d, n, im)) < 0)
                return rc;
            continue;
        }
        if (n->tag == DM_T_DATATYPE)
            kind = DM_DEF_TYPE;
        else if (n->tag == DM_T_COMPONENT)
            kind = DM_DEF_COMPONENT;
        else if (n->tag == DM_T_MODEL)
            kind = DM_DEF_MODEL;
        else
            continue;
        const char *nm = dm_xml__attr(n, "name");
        if (!nm || !*nm)
            return dm_xml__fail(L, d, n, "<%s> without name=", n->name);
        struct dm_xdef *def = dm_schema__vec_push(&d->defs[kind], sizeof *def);
        if (!def)
            return dm_xml__oom(L);
        if (!(def->name = dm_xml__intern(L, nm)))
            return dm_xml__oom(L);
        def->node = n;
        def->doc = d;
        if (kind == DM_DEF_COMPONENT) {
            const char *v = dm_xml__attr(n, "virtual");
            def->virtual_ = v && (!strcmp(v, "true") || !strcmp(v, "1"));
        }
        if (kind == DM_DEF_MODEL)
            d->last_model = n;
    }
    d->loading = false;
    return 0;
}

/* ---- name resolution ---- */

static struct dm_xdef *own_def(struct dm_xdoc *d, enum dm_def_kind k, const char *name)
{
    /* the last definition of a name wins */
    for (uint32_t i = d->defs[k].n; i-- > 0;) {
        struct dm_xdef *def = &DM_VEC_AT(d->defs[k], struct dm_xdef, i);
        if (def->name == name)
            return def;
    }
    return NULL;
}

static struct dm_xdef *find_transitive(struct dm_loader *L, struct dm_xdoc *d, enum dm_def_kind k,
                                       const char *name, int depth)
{
    if (d->visit == L->visit || depth > DM_MAX_DEPTH)
        return NULL;
    d->visit = L->visit;
    struct dm_xdef *def = own_def(d, k, name);
    if (def)
        return def;
    for (uint32_t i = 0; i < d->imports.n; i++) {
        struct dm_xdoc *t = DM_VEC_AT(d->imports, struct ximport, i).doc;
        if (t && (def = find_transitive(L, t, k, name, depth + 1)))
            return def;
    }
    return NULL;
}

static struct dm_xdef *resolve_in(struct dm_loader *L, struct dm_xdoc *d, enum dm_def_kind k,
                                  const char *name, int depth)
{
    if (depth > DM_MAX_DEPTH)
        return NULL;
    struct dm_xdef *def = own_def(d, k, name);
    if (def)
        return def;
    for (uint32_t i = 0; i < d->imports.n; i++) {
        struct ximport *im = &DM_VEC_AT(d->imports, struct ximport, i);
        for (uint32_t j = 0; j < im->binds.n; j++) {
            struct xbind *bd = &DM_VEC_AT(im->binds, struct xbind, j);
            if (bd->kind == k && bd->name == name && im->doc)
                return resolve_in(L, im->doc, k, bd->ref, depth + 1);
        }
    }
    return NULL;
}

struct dm_xdef *dm_xml__resolve(struct dm_loader *L, struct dm_xdoc *d, enum dm_def_kind k,
                                const char *name)
{
    struct dm_xdef *def = resolve_in(L, d, k, name, 0);
    if (def)
        return def;
    L->visit++;
    return find_transitive(L, d, k, name, 0);
}

/* ---- entry points ---- */

static void loader_cleanup(struct dm_loader *L)
{
    struct dm_xdoc *d = L->docs;
    while (d) {
        struct dm_xdoc *next = d->next;
        xdoc_free(d);
        d = next;
    }
    L->docs = NULL;
    for (size_t i = 0; i < L->ndirents; i++)
        free(L->dirents[i]);
    free(L->dirents);
    L->dirents = NULL;
    L->ndirents = 0;
    dm_schema__pool_release(&L->xpool);
}

static int load_model(const char *buf, size_t len, const char *name, const char *dir,
                      unsigned flags, struct usp_dm_schema **out, struct usp_dm_error *err);

/* Some libxml2 errors (encodings, I/O) go to its generic handler, which
 * prints to stderr, whatever the parser options: silenced while loading. */
static void silent(void *ctx, const char *msg, ...)
{
}

static int load(const char *buf, size_t len, const char *name, const char *dir, unsigned flags,
                struct usp_dm_schema **out, struct usp_dm_error *err)
{
    xmlInitParser();
    /* per thread in libxml2, so this touches no other thread's loads */
    xmlGenericErrorFunc saved_fn = xmlGenericError;
    void *saved_ctx = xmlGenericErrorContext;
    xmlSetGenericErrorFunc(NULL, silent);
    int rc = load_model(buf, len, name, dir, flags, out, err);
    xmlSetGenericErrorFunc(saved_ctx, saved_fn);
    return rc;
}

static int load_model(const char *buf, size_t len, const char *name, const char *dir,
                      unsigned flags, struct usp_dm_schema **out, struct usp_dm_error *err)
{
    struct dm_pool pool = {0};
    struct dm_builder b;
    struct dm_loader L = {.b = &b, .err = err, .flags = flags, .dir = dir};
    int rc = dm_schema__builder_init(&b, &pool, flags);
    if (rc < 0)
        return rc;
    struct dm_xdoc *root = NULL;
    if ((rc = parse_doc(&L, buf, len, name, NULL, &root)) < 0)
        goto out;
    L.root = root;
    b.file = root->name;
    if ((rc = register_doc(&L, root)) < 0)
        goto out;
    if (!root->last_model) {
        rc = dm_xml__fail(&L, root, root->root, "no <model> in the document");
        goto out;
    }
    const char *mn = dm_xml__attr(root->last_model, "name");
    b.model_name = dm_xml__intern(&L, mn ? mn : "");
    if (!b.model_name) {
        rc = dm_xml__oom(&L);
        goto out;
    }
    if ((rc = dm_model__expand(&L, root, root->last_model, 0)) < 0)
        goto out;
    loader_cleanup(&L); /* the element trees are not needed any more */
    rc = dm_schema__freeze(&b, out, err);
    if (rc == USP_ENOMEM && err)
        dm_schema__errorf(err, 0, "%s: out of memory", name);
out:
    loader_cleanup(&L);
    dm_schema__builder_cleanup(&b);
    dm_schema__pool_release(&pool); /* empty when the schema took it */
    return rc;
}

int usp_dm_load_memory(const void *buf, size_t len, const char *name, const char *import_dir,
                       unsigned flags, struct usp_dm_schema **out, struct usp_dm_error *err)
{
    if (err) {
        err->msg[0] = 0;
        err->line = 0;
    }
    if (!buf || !out)
        return USP_EINVAL;
    *out = NULL;
    if (len > MAX_FILE_BYTES) {
        dm_schema__errorf(err, 0, "%s: larger than %zu bytes", name ? name : "(memory)",
                          MAX_FILE_BYTES);
        return USP_ERANGE;
    }
    return load(buf, len, name ? name : "(memory)", import_dir, flags, out, err);
}

int usp_dm_load_file(const char *path, unsigned flags, struct usp_dm_schema **out,
                     struct usp_dm_error *err)
{
    if (err) {
        err->msg[0] = 0;
        err->line = 0;
    }
    if (!path || !out)
        return USP_EINVAL;
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    char why[128];
    int rc = read_file(path, &buf, &len, why, sizeof why);
    if (rc < 0) {
        dm_schema__errorf(err, 0, "%s: %s", path, why);
        return rc;
    }
    /* Imports live beside the file. */
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) {
        free(buf);
        dm_schema__errorf(err, 0, "out of memory");
        return USP_ENOMEM;
    }
    rc = load(buf, len, path, dir, flags, out, err);
    free(dir);
    free(buf);
    return rc;
}
