/*
 * fuzz_http: see fuzz_http.h.
 */
#include <string.h>
#include <strings.h>

#include "base/h1.h"
#include "fuzz_http.h"

static struct reparse *
of(llhttp_t *p)
{
	return p->data;
}

static int
on_message_begin(llhttp_t *p)
{
	struct reparse *r = of(p);

	r->nf = 0;
	r->url = NULL;
	r->ulen = 0;
	return 0;
}

static int
on_url(llhttp_t *p, const char *at, size_t len)
{
	struct reparse *r = of(p);

	CHECK(r->url == NULL); /* one buffer, one span */
	r->url = at;
	r->ulen = len;
	return 0;
}

static int
on_field(llhttp_t *p, const char *at, size_t len)
{
	struct reparse *r = of(p);

	CHECK(r->nf < REPARSE_FIELDS);
	r->f[r->nf].name = at;
	r->f[r->nf].nlen = len;
	r->f[r->nf].value = "";
	r->f[r->nf].vlen = 0;
	r->nf++;
	return 0;
}

static int
on_value(llhttp_t *p, const char *at, size_t len)
{
	struct reparse *r = of(p);

	CHECK(r->nf > 0);
	r->f[r->nf - 1].value = at;
	r->f[r->nf - 1].vlen = len;
	return 0;
}

static int
interim(llhttp_t *p)
{
	return p->type == HTTP_RESPONSE && p->status_code < 200;
}

static int
on_headers_complete(llhttp_t *p)
{
	struct reparse *r = of(p);

	/* As a client reads a response (RFC 9112 §6.3): 1xx, 204 and 304
	 * have no content whatever their fields say, nor a HEAD's answer. */
	if (interim(p))
		return 1;
	r->headers_done = 1;
	r->flags = p->flags;
	r->content_length = p->content_length;
	if (p->type == HTTP_RESPONSE &&
	    (p->status_code == 204 || p->status_code == 304))
		return 1;
	return r->skip_body ? 1 : 0;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
	fbuf_add(&of(p)->body, at, len);
	return 0;
}

static int
on_message_complete(llhttp_t *p)
{
	struct reparse *r = of(p);

	if (interim(p)) {
		r->interims++;
		return 0;
	}
	r->complete = 1;
	return HPE_PAUSED; /* what follows is not this message's */
}

static llhttp_settings_t settings;

void
reparse_init(struct reparse *r, llhttp_type_t type, int skip_body)
{
	if (settings.on_message_begin == NULL) {
		llhttp_settings_init(&settings);
		settings.on_message_begin = on_message_begin;
		settings.on_url = on_url;
		settings.on_header_field = on_field;
		settings.on_header_value = on_value;
		settings.on_headers_complete = on_headers_complete;
		settings.on_body = on_body;
		settings.on_message_complete = on_message_complete;
	}
	fbuf_free(&r->body);
	memset(r, 0, sizeof(*r));
	r->skip_body = skip_body;
	llhttp_init(&r->p, type, &settings);
	r->p.data = r;
}

llhttp_errno_t
reparse_run(struct reparse *r, const char *p, size_t n)
{
	return llhttp_execute(&r->p, p, n);
}

void
reparse_free(struct reparse *r)
{
	fbuf_free(&r->body);
}

int
reparse_name_is(const struct reparse *r, size_t i, const char *name)
{
	size_t nl = strlen(name);

	return r->f[i].nlen == nl && strncasecmp(r->f[i].name, name, nl) == 0;
}

size_t
reparse_count(const struct reparse *r, const char *name)
{
	size_t n = 0;

	for (size_t i = 0; i < r->nf; i++)
		n += reparse_name_is(r, i, name);
	return n;
}

int
reparse_value_is(const struct reparse *r, const char *name, const char *v)
{
	for (size_t i = 0; i < r->nf; i++)
		if (reparse_name_is(r, i, name))
			return r->f[i].vlen == strlen(v) &&
			    strncasecmp(r->f[i].value, v, r->f[i].vlen) == 0;
	return 0;
}

int
last_via_is(const struct reparse *r, const char *v)
{
	for (size_t i = r->nf; i-- > 0;)
		if (reparse_name_is(r, i, "via"))
			return r->f[i].vlen == strlen(v) &&
			    memcmp(r->f[i].value, v, r->f[i].vlen) == 0;
	return 0;
}

void
fbuf_push_body(struct fbuf *out, int chunked, const char *at, size_t len)
{
	char line[H1_CHUNK_LINE];

	if (chunked)
		fbuf_add(out, line, (size_t)h1_chunk_line(line, len));
	fbuf_add(out, at, len);
	if (chunked)
		fbuf_add(out, "\r\n", 2);
}
