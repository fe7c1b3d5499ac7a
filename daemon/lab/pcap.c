/*
 * pcap: see pcap.h.
 *
 * The file format is libpcap's "classic" one (a 24-byte global header, then
 * a 16-byte header before each record); tcpdump -w writes it.  The reader
 * streams records through a small buffer, so a long capture costs only its
 * packet array.  The analysis is one pass over the packets, in capture
 * order, of the one connection it picks.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "lab/pcap.h"

#define MAGIC_USEC    0xa1b2c3d4u
#define MAGIC_NSEC    0xa1b23c4du
#define MAGIC_PCAPNG  0x0a0d0d0au /* its section header block type */
#define LINK_ETHERNET 1
#define LINK_RAW      101
#define LINK_SLL      113
#define LINK_SLL2     276
#define ETH_IPV4      0x0800
/* libpcap refuses records above this; larger ones mean a corrupt file. */
#define MAX_RECORD (256u * 1024)
/* The JSON's window list stays readable in summary.json. */
#define JSON_WINDOWS 200

/* The format of the file being read, from its global header. */
struct reader {
	FILE *f;
	const char *path;
	bool swap;         /* written on a host of the other byte order */
	bool nsec;         /* the fraction field counts nanoseconds */
	uint32_t linktype; /* LINKTYPE_*, FCS bits masked off */
};

static void
seterr(char *err, size_t errlen, const char *path, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (err == NULL || errlen == 0)
		return;
	n = snprintf(err, errlen, "%s: ", path);
	if (n < 0 || (size_t)n >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - n, fmt, ap);
	va_end(ap);
}

static uint16_t
be16(const uint8_t *b)
{
	return (uint16_t)(b[0] << 8 | b[1]);
}

static uint32_t
be32(const uint8_t *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
	    (uint32_t)b[2] << 8 | b[3];
}

static uint32_t
le32(const uint8_t *b)
{
	return (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 |
	    (uint32_t)b[1] << 8 | b[0];
}

/* A 32-bit field of the file's headers, in the writer's byte order. */
static uint32_t
file32(const struct reader *r, const uint8_t *b)
{
	return r->swap ? be32(b) : le32(b);
}

/*
 * Reads the global header and decides the byte order from the magic: the
 * writer stored it in its own order, so reading it little-endian gives the
 * magic for a little-endian writer and its byte swap otherwise.
 */
static int
read_global(struct reader *r, char *err, size_t errlen)
{
	uint8_t h[24] = {0};
	size_t got = fread(h, 1, sizeof(h), r->f);
	uint32_t m = le32(h), bm = be32(h);

	if (got >= 4 && (m == MAGIC_PCAPNG || bm == MAGIC_PCAPNG)) {
		seterr(err, errlen, r->path,
		    "a pcapng file; only classic pcap is read "
		    "(tcpdump -w writes it; editcap -F pcap converts)");
		return -EINVAL;
	}
	if (got < sizeof(h)) {
		seterr(err, errlen, r->path,
		    got == 0 ? "empty, not a pcap file"
		             : "%zu bytes, too short for a pcap header",
		    got);
		return -EINVAL;
	}
	if (m == MAGIC_USEC || m == MAGIC_NSEC) {
		r->swap = false;
		r->nsec = m == MAGIC_NSEC;
	} else if (bm == MAGIC_USEC || bm == MAGIC_NSEC) {
		r->swap = true;
		r->nsec = bm == MAGIC_NSEC;
	} else {
		seterr(err, errlen, r->path,
		    "not a pcap file (magic 0x%08" PRIx32 ")", bm);
		return -EINVAL;
	}
	/* The upper bits may carry FCS information (pcap-linktype(7)). */
	r->linktype = file32(r, h + 20) & 0xffff;
	if (r->linktype != LINK_ETHERNET && r->linktype != LINK_RAW &&
	    r->linktype != LINK_SLL && r->linktype != LINK_SLL2) {
		seterr(err, errlen, r->path,
		    "link type %" PRIu32 " not supported (Ethernet, Linux "
		    "cooked SLL/SLL2 and raw IP are)",
		    r->linktype);
		return -ENOTSUP;
	}
	return 0;
}

/*
 * Where the IPv4 header starts in a frame, or -1 when the frame carries
 * something else (ARP, IPv6, ...) or is cut before the protocol field.
 */
static long
ipv4_offset(uint32_t linktype, const uint8_t *b, size_t caplen)
{
	size_t off;
	uint16_t type;

	switch (linktype) {
	case LINK_RAW:
		return caplen >= 1 && b[0] >> 4 == 4 ? 0 : -1;
	case LINK_SLL: /* its protocol field is the last of 16 bytes */
		if (caplen < 16)
			return -1;
		return be16(b + 14) == ETH_IPV4 ? 16 : -1;
	case LINK_SLL2: /* the protocol comes first, the header is 20 */
		if (caplen < 20)
			return -1;
		return be16(b) == ETH_IPV4 ? 20 : -1;
	default:
		break;
	}
	/* Ethernet: skip up to two VLAN tags (802.1Q, 802.1ad QinQ). */
	off = 12;
	for (int tags = 0; tags <= 2; tags++) {
		if (caplen < off + 2)
			return -1;
		type = be16(b + off);
		if (type == ETH_IPV4)
			return (long)(off + 2);
		if (type != 0x8100 && type != 0x88a8)
			return -1;
		off += 4;
	}
	return -1;
}

/*
 * The window scale and MSS options of a SYN.  The snap length may cut the
 * options anywhere: an option not wholly captured counts as absent.
 */
static void
parse_options(const uint8_t *o, size_t len, struct pcap_pkt *p)
{
	size_t i = 0;

	while (i < len) {
		uint8_t kind = o[i], olen;

		if (kind == 0) /* end of options */
			return;
		if (kind == 1) { /* no-operation, one byte */
			i++;
			continue;
		}
		if (i + 1 >= len)
			return;
		olen = o[i + 1];
		if (olen < 2 || i + olen > len)
			return;
		if (kind == 2 && olen == 4)
			p->mss = be16(o + i + 2);
		else if (kind == 3 && olen == 3)
			p->wscale = (int8_t)(o[i + 2] > 127 ? 127 : o[i + 2]);
		i += olen;
	}
}

/*
 * Decodes an IPv4 header and the TCP header after it.  caplen is what was
 * captured from ip on, wirelen what was on the wire.  0, or -1 to skip the
 * packet (not TCP, a fragment, or cut before the TCP fixed header).
 */
static int
parse_ipv4_tcp(
    const uint8_t *ip, size_t caplen, size_t wirelen, struct pcap_pkt *p)
{
	size_t ihl, doff, totlen, optcap;
	const uint8_t *tcp;

	if (caplen < 20 || ip[0] >> 4 != 4 || ip[9] != 6)
		return -1;
	ihl = (size_t)(ip[0] & 0x0f) * 4;
	/* Fragments cannot be told apart here; TCP sets DF anyway. */
	if (ihl < 20 || (be16(ip + 6) & 0x3fff) != 0)
		return -1;
	if (caplen < ihl + 20)
		return -1;
	tcp = ip + ihl;
	doff = (size_t)(tcp[12] >> 4) * 4;
	if (doff < 20)
		return -1;
	/*
	 * A GSO packet above 64 KiB (BIG TCP) is captured with a total
	 * length of 0; the record's wire length is then the only measure.
	 */
	totlen = be16(ip + 2);
	if (totlen == 0)
		totlen = wirelen;
	if (totlen < ihl + doff)
		return -1;
	memcpy(&p->saddr, ip + 12, 4);
	memcpy(&p->daddr, ip + 16, 4);
	p->sport = be16(tcp);
	p->dport = be16(tcp + 2);
	p->seq = be32(tcp + 4);
	p->ack = be32(tcp + 8);
	p->flags = tcp[13] & 0x1f;
	p->win = be16(tcp + 14);
	p->len = (uint32_t)(totlen - ihl - doff);
	p->wscale = -1;
	p->mss = 0;
	if (p->flags & PCAP_SYN) {
		optcap = caplen - ihl - 20;
		parse_options(
		    tcp + 20, optcap < doff - 20 ? optcap : doff - 20, p);
	}
	return 0;
}

/* Appends one packet, doubling the array as needed. */
static int
push_pkt(struct pcap_pkt **a, size_t *n, size_t *cap, const struct pcap_pkt *p)
{
	if (*n == *cap) {
		size_t ncap = *cap != 0 ? *cap * 2 : 256;
		struct pcap_pkt *na = realloc(*a, ncap * sizeof(*na));

		if (na == NULL)
			return -ENOMEM;
		*a = na;
		*cap = ncap;
	}
	(*a)[(*n)++] = *p;
	return 0;
}

/*
 * Reads one record into *buf (grown as needed).  1 with the record, 0 at
 * the end of the file or a record cut short, or a negative errno.
 */
static int
read_record(struct reader *r, uint8_t **buf, size_t *bufcap, double *t,
    size_t *caplen, size_t *wirelen, char *err, size_t errlen)
{
	uint8_t h[16];
	uint32_t incl;

	if (fread(h, 1, sizeof(h), r->f) != sizeof(h))
		return ferror(r->f) ? -EIO : 0;
	incl = file32(r, h + 8);
	if (incl > MAX_RECORD) {
		seterr(err, errlen, r->path,
		    "a record of %" PRIu32 " bytes: corrupt file", incl);
		return -EINVAL;
	}
	if (incl > *bufcap) {
		uint8_t *nb = realloc(*buf, incl);

		if (nb == NULL)
			return -ENOMEM;
		*buf = nb;
		*bufcap = incl;
	}
	if (fread(*buf, 1, incl, r->f) != incl)
		return ferror(r->f) ? -EIO : 0;
	*t = file32(r, h) +
	    file32(r, h + 4) / (r->nsec ? 1000000000.0 : 1000000.0);
	*caplen = incl;
	*wirelen = file32(r, h + 12);
	return 1;
}

/* Reads the records of an open file after its global header. */
static int
read_all(struct reader *r, struct pcap_pkt **pkts, size_t *n, char *err,
    size_t errlen)
{
	uint8_t *buf = NULL;
	size_t bufcap = 0, cap = 0, caplen, wirelen;
	struct pcap_pkt p;
	long off;
	int rc;

	while ((rc = read_record(r, &buf, &bufcap, &p.t, &caplen, &wirelen, err,
	            errlen)) == 1) {
		off = ipv4_offset(r->linktype, buf, caplen);
		if (off < 0)
			continue;
		if (wirelen < (size_t)off)
			wirelen = (size_t)off;
		if (parse_ipv4_tcp(
		        buf + off, caplen - off, wirelen - off, &p) != 0)
			continue;
		if ((rc = push_pkt(pkts, n, &cap, &p)) < 0)
			break;
	}
	free(buf);
	if (rc == -EIO || rc == -ENOMEM)
		seterr(err, errlen, r->path, "%s", strerror(-rc));
	return rc < 0 ? rc : 0;
}

int
pcap_read(const char *path, struct pcap_pkt **pkts, size_t *n, char *err,
    size_t errlen)
{
	struct reader r = {.path = path};
	int rc;

	*pkts = NULL;
	*n = 0;
	r.f = fopen(path, "rb");
	if (r.f == NULL) {
		rc = -errno;
		seterr(err, errlen, path, "%s", strerror(-rc));
		return rc;
	}
	rc = read_global(&r, err, errlen);
	if (rc == 0)
		rc = read_all(&r, pkts, n, err, errlen);
	fclose(r.f);
	if (rc < 0) {
		free(*pkts);
		*pkts = NULL;
		*n = 0;
	}
	return rc;
}

/*
 * The analysis.  Sequence numbers are compared modulo 2^32 (RFC 793's
 * arithmetic) so a connection that wraps is still read right.
 */

/* The connection being analysed and what the pass has seen so far. */
struct scan {
	uint32_t caddr, saddr; /* client and server, network order */
	uint16_t cport, sport;
	bool have_syn;     /* the client's SYN was captured */
	uint32_t syn_seq;  /* its sequence number */
	bool have_base;    /* base is known */
	uint32_t base;     /* the server's ISN: relative 0, as in tcpdump */
	uint32_t high;     /* highest server sequence end (absolute) */
	bool have_win;     /* the client advertised a window after its SYN */
	uint32_t last_ack; /* its last ack (absolute) and window */
	uint16_t last_win;
	double zero_since; /* when the window last became 0 (relative) */
	double last_probe; /* relative time of the stall's last probe, -1 */
	long pending;      /* index of the probe awaiting an answer, -1 */
	size_t capw, capp; /* allocated windows and probes */
};

/* 1 from the client, 0 from the server, -1 another connection. */
static int
direction(const struct scan *s, const struct pcap_pkt *p)
{
	if (p->saddr == s->caddr && p->sport == s->cport &&
	    p->daddr == s->saddr && p->dport == s->sport)
		return 1;
	if (p->saddr == s->saddr && p->sport == s->sport &&
	    p->daddr == s->caddr && p->dport == s->cport)
		return 0;
	return -1;
}

/* Without a SYN, client packets before the server's first one count too. */
static long
first_of(const struct scan *s, const struct pcap_pkt *p, size_t upto)
{
	size_t i = 0;

	while (i < upto && direction(s, &p[i]) < 0)
		i++;
	return (long)i;
}

/*
 * Picks the connection: the first SYN to the port, else the first packet
 * from it.  Returns the index of the connection's first packet, or -1.
 */
static long
find_conn(const struct pcap_pkt *p, size_t n, uint16_t port, struct scan *s)
{
	for (size_t i = 0; i < n; i++) {
		if ((p[i].flags & (PCAP_SYN | PCAP_ACK)) == PCAP_SYN &&
		    p[i].dport == port) {
			s->caddr = p[i].saddr;
			s->cport = p[i].sport;
			s->saddr = p[i].daddr;
			s->sport = port;
			return (long)i;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (p[i].sport == port) {
			s->saddr = p[i].saddr;
			s->sport = port;
			s->caddr = p[i].daddr;
			s->cport = p[i].dport;
			return first_of(s, p, i);
		}
	}
	return -1;
}

/*
 * Sets the server's ISN once, from the first number that reveals it: the
 * SYN-ACK, else the client's first ack or the server's first sequence
 * number taken as relative 1 (what tcpdump would show after a handshake).
 */
static void
set_base(struct scan *s, uint32_t isn)
{
	if (s->have_base)
		return;
	s->have_base = true;
	s->base = isn;
	s->high = isn + 1;
}

/* A window in bytes: scaled only when both SYNs offered scaling (RFC 7323
 * 2.2), with shifts above 14 treated as 14 (2.3). */
static uint64_t
scaled(const struct pcap_conn *c, uint16_t raw)
{
	int shift = c->client_wscale;

	if (c->client_wscale < 0 || c->server_wscale < 0)
		return raw;
	return (uint64_t)raw << (shift > 14 ? 14 : shift);
}

static int
grow(void **a, size_t *cap, size_t n, size_t size)
{
	void *na;
	size_t ncap;

	if (n < *cap)
		return 0;
	ncap = *cap != 0 ? *cap * 2 : 64;
	na = realloc(*a, ncap * size);
	if (na == NULL)
		return -ENOMEM;
	*a = na;
	*cap = ncap;
	return 0;
}

/* A client packet after its SYN: one window, and the stall bookkeeping. */
static int
on_client(
    struct scan *s, struct pcap_conn *c, const struct pcap_pkt *p, double t)
{
	struct pcap_window *w;
	uint64_t bytes = scaled(c, p->win);

	if (p->flags & PCAP_RST)
		c->reset_by_client = true;
	if (p->flags & PCAP_ACK)
		set_base(s, p->ack - 1);
	if (grow((void **)&c->windows, &s->capw, c->nwindows,
	        sizeof(*c->windows)) < 0)
		return -ENOMEM;
	w = &c->windows[c->nwindows++];
	w->t = t;
	w->ack = p->flags & PCAP_ACK ? p->ack - s->base : 0;
	w->raw = p->win;
	w->bytes = bytes;
	if (s->pending >= 0)
		c->probes[s->pending].answer = (int64_t)bytes;
	s->pending = -1;
	if (bytes == 0 && (!s->have_win || s->last_win != 0)) {
		s->zero_since = t;
		s->last_probe = -1;
		c->nstalls++;
		if (c->first_zero_ack < 0) {
			c->first_zero_ack = w->ack;
			c->first_zero_t = t;
		}
	} else if (bytes != 0 && s->have_win && s->last_win == 0) {
		c->zero_window_s += t - s->zero_since;
	}
	s->have_win = true;
	s->last_win = p->win;
	s->last_ack = p->ack;
	return 0;
}

/*
 * Whether a server packet probes the zero window: Linux's
 * tcp_xmit_probe_skb() sends no data with the sequence number before
 * snd_una (an ACK the receiver must answer, RFC 9293 3.10.7.4), other
 * stacks one byte of new data at snd_una (RFC 9293 3.8.6.1).
 */
static bool
is_probe(const struct scan *s, const struct pcap_pkt *p)
{
	if (!s->have_win || s->last_win != 0 ||
	    (p->flags & (PCAP_SYN | PCAP_FIN | PCAP_RST)) != 0)
		return false;
	if (p->len == 0)
		return p->seq == s->last_ack - 1;
	return p->len == 1 && p->seq == s->last_ack;
}

static int
add_probe(
    struct scan *s, struct pcap_conn *c, const struct pcap_pkt *p, double t)
{
	struct pcap_probe *pr;

	if (grow((void **)&c->probes, &s->capp, c->nprobes,
	        sizeof(*c->probes)) < 0)
		return -ENOMEM;
	pr = &c->probes[c->nprobes];
	pr->t = t;
	pr->seq = p->seq - s->base;
	pr->len = p->len;
	pr->interval = s->last_probe >= 0 ? t - s->last_probe : 0;
	pr->answer = -1;
	pr->stall = c->nstalls - 1;
	s->last_probe = t;
	s->pending = (long)c->nprobes++;
	return 0;
}

/* A server packet: its handshake, its data, or a probe. */
static int
on_server(
    struct scan *s, struct pcap_conn *c, const struct pcap_pkt *p, double t)
{
	uint32_t end;

	if (p->flags & PCAP_RST)
		c->reset_by_server = true;
	if (p->flags & PCAP_SYN) {
		c->server_wscale = p->wscale;
		c->server_mss = p->mss != 0 ? p->mss : -1;
		/* It wins over a guess, unless data already counted. */
		if (c->data_bytes == 0)
			s->have_base = false;
		set_base(s, p->seq);
		return 0;
	}
	set_base(s, p->seq - 1);
	if (is_probe(s, p))
		return add_probe(s, c, p, t);
	end = p->seq + p->len;
	if ((int32_t)(end - s->high) > 0) {
		c->data_bytes += end - s->high;
		s->high = end;
	}
	return 0;
}

/* The client's SYN (or its retransmission): the client's options. */
static bool
on_client_syn(struct scan *s, struct pcap_conn *c, const struct pcap_pkt *p)
{
	/* Another SYN on the same ports is a new connection: stop. */
	if (s->have_syn && p->seq != s->syn_seq)
		return false;
	s->have_syn = true;
	s->syn_seq = p->seq;
	c->client_wscale = p->wscale;
	c->client_mss = p->mss != 0 ? p->mss : -1;
	return true;
}

/* The pass over the connection's packets from index first on. */
static int
scan_conn(struct scan *s, struct pcap_conn *c, const struct pcap_pkt *p,
    size_t n, size_t first)
{
	double last = 0;
	int dir, rc = 0;

	for (size_t i = first; i < n && rc == 0; i++) {
		double t = p[i].t - c->t0;

		if ((dir = direction(s, &p[i])) < 0)
			continue;
		if (dir == 1 &&
		    (p[i].flags & (PCAP_SYN | PCAP_ACK)) == PCAP_SYN) {
			if (!on_client_syn(s, c, &p[i]))
				break;
		} else if (dir == 1) {
			rc = on_client(s, c, &p[i], t);
		} else {
			rc = on_server(s, c, &p[i], t);
		}
		last = t;
	}
	if (rc == 0 && s->have_win && s->last_win == 0)
		c->zero_window_s += last - s->zero_since;
	return rc;
}

int
pcap_analyse(const struct pcap_pkt *p, size_t n, uint16_t server_port,
    struct pcap_conn *c)
{
	struct scan s = {.pending = -1, .last_probe = -1};
	long first;
	int rc;

	memset(c, 0, sizeof(*c));
	c->client_wscale = c->server_wscale = -1;
	c->client_mss = c->server_mss = -1;
	c->first_zero_ack = -1;
	c->first_zero_t = -1;
	first = find_conn(p, n, server_port, &s);
	if (first < 0)
		return -ENOENT;
	c->t0 = p[first].t;
	rc = scan_conn(&s, c, p, n, (size_t)first);
	if (rc < 0)
		pcap_conn_free(c);
	return rc;
}

void
pcap_conn_free(struct pcap_conn *c)
{
	free(c->windows);
	free(c->probes);
	memset(c, 0, sizeof(*c));
}

/* Parses one unsigned 32-bit decimal at *s, blanks around it skipped. */
static int
parse_u32(const char **s, uint32_t *v)
{
	const char *q = *s;
	uint64_t x = 0;

	while (*q == ' ' || *q == '\t')
		q++;
	if (*q < '0' || *q > '9')
		return -EINVAL;
	for (; *q >= '0' && *q <= '9'; q++) {
		x = x * 10 + (uint64_t)(*q - '0');
		if (x > UINT32_MAX)
			return -EINVAL;
	}
	while (*q == ' ' || *q == '\t')
		q++;
	*v = (uint32_t)x;
	*s = q;
	return 0;
}

int
pcap_parse_article(const char *s, uint32_t *acks, uint32_t *wins, size_t max)
{
	size_t n = 0;
	uint32_t a, w;

	if (strspn(s, " \t") == strlen(s))
		return 0;
	for (;;) {
		if (parse_u32(&s, &a) < 0 || *s++ != ':' ||
		    parse_u32(&s, &w) < 0)
			return -EINVAL;
		if (acks != NULL && wins != NULL) {
			if (n == max)
				return -E2BIG;
			acks[n] = a;
			wins[n] = w;
		}
		n++;
		if (*s == '\0')
			break;
		if (*s++ != ',')
			return -EINVAL;
	}
	return n > INT32_MAX ? -E2BIG : (int)n;
}

/* The article's pairs, malloc'd; 0 pairs for none.  A malformed list is
 * reported on f and treated as none. */
static int
article_pairs(FILE *f, const char *article, uint32_t **acks, uint32_t **wins)
{
	int n;

	*acks = *wins = NULL;
	if (article == NULL)
		return 0;
	n = pcap_parse_article(article, NULL, NULL, 0);
	if (n < 0)
		fprintf(
		    f, "article windows '%s': not ACK:WIN pairs\n", article);
	if (n <= 0)
		return 0;
	*acks = malloc(n * sizeof(**acks));
	*wins = malloc(n * sizeof(**wins));
	if (*acks == NULL || *wins == NULL) {
		free(*acks);
		free(*wins);
		*acks = *wins = NULL;
		return 0;
	}
	return pcap_parse_article(article, *acks, *wins, (size_t)n);
}

static void
print_row(FILE *f, const struct pcap_conn *c, size_t i, size_t rows,
    bool rawcol, const uint32_t *acks, const uint32_t *wins, int nart)
{
	if (i < rows && i < c->nwindows) {
		const struct pcap_window *w = &c->windows[i];

		fprintf(f, "%5zu %9.3f %10" PRIu32 " %10" PRIu64, i + 1, w->t,
		    w->ack, w->bytes);
		if (rawcol)
			fprintf(f, " %6" PRIu32, w->raw);
	} else {
		fprintf(f, "%5s %9s %10s %10s", "", "", "", "");
		if (rawcol)
			fprintf(f, " %6s", "");
	}
	if ((int)i < nart)
		fprintf(f, "  %11" PRIu32 " %11" PRIu32, acks[i], wins[i]);
	fputc('\n', f);
}

/* "here: ..." and "article: ..." lines: where the window first hit 0. */
static void
print_first_zero(FILE *f, const struct pcap_conn *c, const uint32_t *acks,
    const uint32_t *wins, int nart)
{
	if (c->first_zero_ack >= 0)
		fprintf(f,
		    "here:    window 0 at ack %" PRId64 " (%" PRId64
		    " bytes received), %.1f s after the first packet\n",
		    c->first_zero_ack,
		    c->first_zero_ack > 0 ? c->first_zero_ack - 1 : 0,
		    c->first_zero_t);
	else
		fprintf(
		    f, "here:    window never 0 (%zu packets)\n", c->nwindows);
	if (nart == 0)
		return;
	for (int i = 0; i < nart; i++) {
		if (wins[i] == 0) {
			fprintf(f,
			    "article: window 0 at ack %" PRIu32 " (%" PRIu32
			    " bytes received)\n",
			    acks[i], acks[i] > 0 ? acks[i] - 1 : 0);
			return;
		}
	}
	fprintf(f, "article: window never 0 (%d pairs)\n", nart);
}

void
pcap_print_windows(
    FILE *f, const struct pcap_conn *c, size_t rows, const char *article)
{
	uint32_t *acks, *wins;
	int nart = article_pairs(f, article, &acks, &wins);
	bool rawcol = c->client_wscale >= 0 && c->server_wscale >= 0;
	size_t nrows = rows < c->nwindows ? rows : c->nwindows;

	if ((size_t)nart > nrows)
		nrows = (size_t)nart;
	fprintf(f, "%5s %9s %10s %10s", "#", "time s", "ack", "window");
	if (rawcol)
		fprintf(f, " %6s", "raw");
	if (nart > 0)
		fprintf(f, "  %11s %11s", "article ack", "article win");
	fputc('\n', f);
	for (size_t i = 0; i < nrows; i++)
		print_row(f, c, i, rows, rawcol, acks, wins, nart);
	print_first_zero(f, c, acks, wins, nart);
	free(acks);
	free(wins);
}

/* Whether probe i backed off: at least 90% of its stall's previous gap. */
static bool
grew(const struct pcap_conn *c, size_t i)
{
	const struct pcap_probe *a = &c->probes[i - 1], *b = &c->probes[i];

	return b->interval >= a->interval * 0.9;
}

/* Whether probe i has a previous interval in its stall to compare with. */
static bool
comparable(const struct pcap_conn *c, size_t i)
{
	return i >= 2 && c->probes[i].stall == c->probes[i - 1].stall &&
	    c->probes[i - 1].stall == c->probes[i - 2].stall;
}

bool
pcap_probes_backoff(const struct pcap_conn *c)
{
	size_t compared = 0;

	for (size_t i = 0; i < c->nprobes; i++) {
		if (!comparable(c, i))
			continue;
		if (!grew(c, i))
			return false;
		compared++;
	}
	return compared > 0;
}

/* The closing line of the probe list. */
static void
print_backoff(FILE *f, const struct pcap_conn *c)
{
	for (size_t i = 0; i < c->nprobes; i++) {
		if (comparable(c, i) && !grew(c, i)) {
			fprintf(f,
			    "intervals did not grow: probe %zu came %.3f s "
			    "after probe %zu, which came %.3f s after its "
			    "previous one\n",
			    i + 1, c->probes[i].interval, i,
			    c->probes[i - 1].interval);
			return;
		}
	}
	if (pcap_probes_backoff(c))
		fprintf(f, "intervals grew each time (exponential backoff)%s\n",
		    c->nstalls > 1 ? ", within each stall" : "");
	else
		fprintf(f,
		    "too few probes in a stall to tell a backoff "
		    "(3 needed)\n");
}

void
pcap_print_probes(FILE *f, const struct pcap_conn *c)
{
	if (c->nprobes == 0) {
		fprintf(f, "no zero-window probes\n");
		return;
	}
	fprintf(f, "%5s %9s  %-32s %10s %10s\n", "probe", "time s", "form",
	    "interval s", "answer");
	for (size_t i = 0; i < c->nprobes; i++) {
		const struct pcap_probe *p = &c->probes[i];
		char ans[24];

		if (p->answer >= 0)
			snprintf(ans, sizeof(ans), "%" PRId64, p->answer);
		else
			snprintf(ans, sizeof(ans), "none");
		fprintf(f, "%5zu %9.3f  %-32s %10.3f %10s\n", i + 1, p->t,
		    p->len == 0 ? "0 bytes, seq snd_una-1 (Linux)" : "1 byte",
		    p->interval, ans);
	}
	print_backoff(f, c);
}

void
pcap_conn_json(FILE *f, const struct pcap_conn *c)
{
	size_t nw = c->nwindows < JSON_WINDOWS ? c->nwindows : JSON_WINDOWS;

	fprintf(f,
	    "{\"client_wscale\":%d,\"server_wscale\":%d,"
	    "\"data_bytes\":%" PRIu64 ",",
	    c->client_wscale, c->server_wscale, c->data_bytes);
	if (c->first_zero_ack >= 0)
		fprintf(f,
		    "\"first_zero_ack\":%" PRId64 ",\"first_zero_s\":%.6f,",
		    c->first_zero_ack, c->first_zero_t);
	else
		fprintf(f, "\"first_zero_ack\":null,\"first_zero_s\":null,");
	fprintf(f,
	    "\"zero_window_s\":%.6f,\"stalls\":%" PRIu32 ","
	    "\"resets\":{\"server\":%s,\"client\":%s},\"nwindows\":%zu,"
	    "\"windows\":[",
	    c->zero_window_s, c->nstalls, c->reset_by_server ? "true" : "false",
	    c->reset_by_client ? "true" : "false", c->nwindows);
	for (size_t i = 0; i < nw; i++)
		fprintf(f, "%s[%.6f,%" PRIu32 ",%" PRIu64 "]", i ? "," : "",
		    c->windows[i].t, c->windows[i].ack, c->windows[i].bytes);
	fprintf(f, "],\"probes\":[");
	for (size_t i = 0; i < c->nprobes; i++) {
		const struct pcap_probe *p = &c->probes[i];

		fprintf(f, "%s[%.6f,%" PRIu32 ",%.6f,", i ? "," : "", p->t,
		    p->len, p->interval);
		if (p->answer >= 0)
			fprintf(f, "%" PRId64 "]", p->answer);
		else
			fprintf(f, "null]");
	}
	fprintf(f, "]}");
}
