/*
 * test_pcap: the capture reader and the window/probe analysis (pcap.h).
 *
 * The lab prints the receiver's windows and the sender's zero-window probes
 * next to the article's; a reader that slips a byte or an analysis
 * that counts a probe wrong would print a different experiment than the one
 * that ran.  Captures are built here byte by byte (a global header, then
 * records of Ethernet, IPv4 and TCP headers, cut at a 128-byte snap length
 * like the lab's tcpdump -s 128), written to temporary files and read back.
 * No live captures: those belong to the lab's integration runs.
 */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lab/pcap.h"

#define T0    1700000000u /* the first packet's epoch second */
#define CISN  2374033554u /* the client's ISN */
#define SISN  0xffffff00u /* the server's: relative 256 wraps 2^32 */
#define CPORT 56848
#define SPORT 9999

/* A capture file being built in memory. */
struct cap {
	char *buf;
	size_t len;
	FILE *f;
	bool swap;    /* written big-endian */
	bool nsec;    /* nanosecond timestamps */
	size_t snap;  /* bytes kept of each frame */
	int vlan;     /* 802.1Q tags before the IP header */
	int ipopt;    /* IP option bytes (multiple of 4) */
	int linktype; /* 1, 113, 276 or 101 */
};

/* One TCP segment of the test connection, numbers relative to the ISNs. */
struct seg {
	double t;    /* since T0 */
	bool client; /* from the client (10.9.0.2) */
	uint8_t flags;
	uint32_t seq, ack; /* relative */
	uint16_t win;
	uint32_t len;
	int wscale; /* option in a SYN, -1 none */
	int mss;    /* option in a SYN, 0 none */
};

static void
put(struct cap *c, const void *b, size_t n)
{
	assert_int_equal(fwrite(b, 1, n, c->f), n);
}

/* A 32-bit or 16-bit field of the file headers, in the writer's order. */
static void
put32(struct cap *c, uint32_t v)
{
	uint8_t b[4];

	for (int i = 0; i < 4; i++)
		b[c->swap ? 3 - i : i] = (uint8_t)(v >> (8 * i));
	put(c, b, 4);
}

static void
put16(struct cap *c, uint16_t v)
{
	uint8_t b[2];

	b[c->swap ? 1 : 0] = (uint8_t)v;
	b[c->swap ? 0 : 1] = (uint8_t)(v >> 8);
	put(c, b, 2);
}

static void
cap_open(struct cap *c, bool swap, bool nsec, int linktype)
{
	memset(c, 0, sizeof(*c));
	c->f = open_memstream(&c->buf, &c->len);
	assert_non_null(c->f);
	c->swap = swap;
	c->nsec = nsec;
	c->snap = 128;
	c->linktype = linktype;
	put32(c, nsec ? 0xa1b23c4d : 0xa1b2c3d4);
	put16(c, 2);
	put16(c, 4);
	put32(c, 0); /* thiszone */
	put32(c, 0); /* sigfigs */
	put32(c, (uint32_t)c->snap);
	put32(c, (uint32_t)linktype);
}

/* One record at t seconds after T0: the first snap bytes of a frame of
 * wire bytes. */
static void
cap_record(struct cap *c, double t, const uint8_t *frame, size_t wire)
{
	size_t incl = wire < c->snap ? wire : c->snap;
	uint32_t sec = (uint32_t)t;

	put32(c, T0 + sec);
	put32(c, (uint32_t)((t - sec) * (c->nsec ? 1e9 : 1e6) + 0.5));
	put32(c, (uint32_t)incl);
	put32(c, (uint32_t)wire);
	put(c, frame, incl);
}

static void
be16(uint8_t *b, uint16_t v)
{
	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}

static void
be32(uint8_t *b, uint32_t v)
{
	be16(b, (uint16_t)(v >> 16));
	be16(b + 2, (uint16_t)v);
}

/* The link header for an IPv4 packet; returns its length. */
static size_t
link_header(const struct cap *c, uint8_t *b, uint16_t ethertype)
{
	size_t off;

	switch (c->linktype) {
	case 101:
		return 0;
	case 113:
		be16(b, 0); /* to us */
		be16(b + 2, 1);
		be16(b + 14, ethertype);
		return 16;
	case 276:
		be16(b, ethertype);
		b[10] = 1; /* ARPHRD_ETHER */
		return 20;
	default:
		break;
	}
	memcpy(b, "\x02\0\0\0\0\x01\x02\0\0\0\0\x02", 12);
	off = 12;
	for (int i = 0; i < c->vlan; i++, off += 4) {
		be16(b + off, 0x8100);
		be16(b + off + 2, 42);
	}
	be16(b + off, ethertype);
	return off + 2;
}

/* An IPv4 header of protocol proto carrying l4 bytes; returns its length. */
static size_t
ipv4_header(
    const struct cap *c, uint8_t *b, bool client, uint8_t proto, size_t l4)
{
	size_t ihl = 20 + (size_t)c->ipopt;

	b[0] = (uint8_t)(0x40 | ihl / 4);
	be16(b + 2, (uint16_t)(ihl + l4));
	be16(b + 6, 0x4000); /* DF */
	b[8] = 64;
	b[9] = proto;
	memcpy(b + 12, client ? "\x0a\x09\0\x02" : "\x0a\x09\0\x01", 4);
	memcpy(b + 16, client ? "\x0a\x09\0\x01" : "\x0a\x09\0\x02", 4);
	memset(b + 20, 1, ihl - 20); /* NOP options */
	return ihl;
}

/*
 * SYN options as Linux sends them: MSS, SACK permitted, timestamps, then
 * a NOP and the window scale; 20 bytes, or 16 without the scale.
 */
static size_t
tcp_options(uint8_t *o, const struct seg *s)
{
	size_t n = 0;

	if (s->mss <= 0 && s->wscale < 0)
		return 0;
	o[n++] = 2;
	o[n++] = 4;
	be16(o + n, (uint16_t)s->mss);
	n += 2;
	o[n++] = 4; /* SACK permitted */
	o[n++] = 2;
	o[n++] = 8; /* timestamps: values left 0 */
	o[n++] = 10;
	n += 8;
	if (s->wscale >= 0) {
		o[n++] = 1;
		o[n++] = 3;
		o[n++] = 3;
		o[n++] = (uint8_t)s->wscale;
	}
	return n;
}

static void
cap_seg(struct cap *c, const struct seg *s)
{
	uint8_t f[256] = {0}, *ip, *tcp;
	size_t l2 = link_header(c, f, 0x0800), ihl, optlen;

	ip = f + l2;
	ihl = 20 + (size_t)c->ipopt;
	tcp = ip + ihl;
	optlen = tcp_options(tcp + 20, s);
	ipv4_header(c, ip, s->client, 6, 20 + optlen + s->len);
	be16(tcp, s->client ? CPORT : SPORT);
	be16(tcp + 2, s->client ? SPORT : CPORT);
	be32(tcp + 4, (s->client ? CISN : SISN) + s->seq);
	be32(tcp + 8, (s->client ? SISN : CISN) + s->ack);
	tcp[12] = (uint8_t)((20 + optlen) / 4 << 4);
	tcp[13] = s->flags;
	be16(tcp + 14, s->win);
	cap_record(c, s->t, f, l2 + ihl + 20 + optlen + s->len);
}

/* Writes the capture to a temporary file; its path goes to path. */
static void
cap_save(struct cap *c, char *path, size_t pathlen)
{
	int fd;

	assert_int_equal(fclose(c->f), 0);
	snprintf(path, pathlen, "/tmp/sluice-pcap-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd != -1);
	assert_true(write(fd, c->buf, c->len) == (ssize_t)c->len);
	close(fd);
	free(c->buf);
	c->buf = NULL;
}

/* Reads a capture back; expects success. */
static size_t
read_ok(const char *path, struct pcap_pkt **pkts)
{
	char err[256] = "";
	size_t n = 0;
	int rc = pcap_read(path, pkts, &n, err, sizeof(err));

	if (rc != 0)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	return n;
}

/* Writes segs as a capture, reads it back, analyses it for SPORT. */
static void
analyse(const struct seg *segs, size_t n, struct pcap_conn *c)
{
	struct cap cap;
	struct pcap_pkt *p;
	char path[64];
	size_t np;

	cap_open(&cap, false, false, 1);
	for (size_t i = 0; i < n; i++)
		cap_seg(&cap, &segs[i]);
	cap_save(&cap, path, sizeof(path));
	np = read_ok(path, &p);
	unlink(path);
	assert_int_equal(np, n);
	assert_int_equal(pcap_analyse(p, np, SPORT, c), 0);
	free(p);
}

static bool
near(double a, double b)
{
	return a - b < 1e-6 && b - a < 1e-6;
}

#define S(t, c, fl, sq, ak, w, l)                                              \
	{                                                                      \
		(t), (c), (fl), (sq), (ak), (w), (l), -1, 0                    \
	}
#define A  PCAP_ACK
#define PA (PCAP_PSH | PCAP_ACK)

/*
 * The brief's exercise 2 and 3 on Linux: window scaling off, tcp_rmem
 * 4096, 100 bytes read every 2 s, 200 sent every second; Linux probes
 * without data, one left unanswered, then the client resets.
 */
static const struct seg linux_run[] = {
    {0.000000, true, PCAP_SYN, 0, 0, 1460, 0, -1, 1460},
    {0.000023, false, PCAP_SYN | A, 0, 1, 65160, 0, -1, 1460},
    S(0.000041, true, A, 1, 1, 1460, 0),
    S(0.000253, false, PA, 1, 1, 510, 200),
    S(0.000283, true, A, 1, 201, 1460, 0),
    S(1.0, false, PA, 201, 1, 510, 200),
    S(1.00003, true, A, 1, 401, 1260, 0),
    S(2.0, false, PA, 401, 1, 510, 200),
    S(2.00003, true, A, 1, 601, 1260, 0),
    S(3.0, false, PA, 601, 1, 510, 200),
    S(3.00003, true, A, 1, 801, 1072, 0),
    S(4.0, false, PA, 801, 1, 510, 200),
    S(4.00003, true, A, 1, 1001, 1072, 0),
    S(5.0, false, PA, 1001, 1, 510, 200),
    S(5.00003, true, A, 1, 1201, 872, 0),
    S(6.0, false, PA, 1201, 1, 510, 200),
    S(6.00003, true, A, 1, 1401, 872, 0),
    S(7.0, false, PA, 1401, 1, 510, 200),
    S(7.00003, true, A, 1, 1601, 672, 0),
    S(8.0, false, PA, 1601, 1, 510, 200),
    S(8.00003, true, A, 1, 1801, 672, 0),
    S(9.0, false, PA, 1801, 1, 510, 200),
    S(9.00003, true, A, 1, 2001, 536, 0),
    S(10.0, false, PA, 2001, 1, 510, 200),
    S(10.00003, true, A, 1, 2201, 336, 0),
    S(11.0, false, PA, 2201, 1, 510, 200),
    S(11.00003, true, A, 1, 2401, 136, 0),
    S(12.21, false, PA, 2401, 1, 510, 136),
    S(12.21002, true, A, 1, 2537, 0, 0),
    S(12.418, false, A, 2536, 1, 510, 0), /* probe: seq snd_una - 1 */
    S(12.41802, true, A, 1, 2537, 0, 0),
    S(12.846, false, A, 2536, 1, 510, 0), /* unanswered */
    S(13.678, false, A, 2536, 1, 510, 0),
    S(13.67802, true, A, 1, 2537, 0, 0),
    S(15.342, false, A, 2536, 1, 510, 0),
    S(15.34202, true, A, 1, 2537, 0, 0),
    S(18.670, false, A, 2536, 1, 510, 0),
    S(18.67002, true, A, 1, 2537, 0, 0),
    S(25.326, false, A, 2536, 1, 510, 0),
    S(25.32602, true, A, 1, 2537, 0, 0),
    S(26.857, true, PCAP_RST | A, 1, 2537, 1072, 0),
};

#define NSEGS(a) (sizeof(a) / sizeof((a)[0]))

static void
linux_windows(void **state)
{
	static const uint32_t acks[] = {1, 201, 401, 601, 801, 1001, 1201, 1401,
	    1601, 1801, 2001, 2201, 2401, 2537};
	static const uint32_t wins[] = {1460, 1460, 1260, 1260, 1072, 1072, 872,
	    872, 672, 672, 536, 336, 136, 0};
	struct pcap_conn c;

	(void)state;
	analyse(linux_run, NSEGS(linux_run), &c);
	assert_true(near(c.t0, T0));
	assert_int_equal(c.client_wscale, -1);
	assert_int_equal(c.server_wscale, -1);
	assert_int_equal(c.client_mss, 1460);
	/* every client packet after the SYN: 14, 5 answers, the RST */
	assert_int_equal(c.nwindows, 20);
	for (size_t i = 0; i < NSEGS(acks); i++) {
		assert_int_equal(c.windows[i].ack, acks[i]);
		assert_int_equal(c.windows[i].raw, wins[i]);
		assert_true(c.windows[i].bytes == wins[i]);
	}
	assert_true(near(c.windows[0].t, 0.000041));
	assert_true(near(c.windows[13].t, 12.21002));
	assert_int_equal(c.windows[19].raw, 1072);
	assert_true(c.first_zero_ack == 2537);
	assert_true(near(c.first_zero_t, 12.21002));
	assert_true(c.data_bytes == 2536);
	assert_int_equal(c.nstalls, 1);
	/* zero from 12.21002 until the RST advertised 1072 */
	assert_true(near(c.zero_window_s, 26.857 - 12.21002));
	assert_true(c.reset_by_client && !c.reset_by_server);
	pcap_conn_free(&c);
	assert_null(c.windows);
}

static void
linux_probes(void **state)
{
	static const double t[] = {
	    12.418, 12.846, 13.678, 15.342, 18.670, 25.326};
	static const double gap[] = {0, 0.428, 0.832, 1.664, 3.328, 6.656};
	static const int64_t answer[] = {0, -1, 0, 0, 0, 0};
	struct pcap_conn c;

	(void)state;
	analyse(linux_run, NSEGS(linux_run), &c);
	assert_int_equal(c.nprobes, 6);
	for (size_t i = 0; i < 6; i++) {
		assert_true(near(c.probes[i].t, t[i]));
		assert_true(near(c.probes[i].interval, gap[i]));
		assert_true(c.probes[i].answer == answer[i]);
		assert_int_equal(c.probes[i].len, 0);
		assert_int_equal(c.probes[i].seq, 2536);
		assert_int_equal(c.probes[i].stall, 0);
	}
	assert_true(pcap_probes_backoff(&c));
	pcap_conn_free(&c);
}

/*
 * The article's Exercise 3 (another OS): probes of one new byte at
 * snd_una; then the window opens, the data goes on and a second stall
 * whose probes come faster: no backoff.
 */
static const struct seg byte_run[] = {
    {0.0, true, PCAP_SYN, 0, 0, 1460, 0, -1, 1460},
    {0.0002, false, PCAP_SYN | A, 0, 1, 65535, 0, -1, 1460},
    S(0.0004, true, A, 1, 1, 1460, 0),
    S(0.001, false, PA, 1, 1, 65535, 1460),
    S(0.002, true, A, 1, 1461, 0, 0), /* stall 0 */
    S(5.0, true, A, 1, 1461, 1276, 0),
    S(5.1, false, PA, 1461, 1, 65535, 1276),
    S(18.086, true, A, 1, 2737, 0, 0), /* stall 1 */
    S(23.193, false, A, 2737, 1, 65535, 1),
    S(23.19303, true, A, 1, 2737, 0, 0),
    S(28.599, false, A, 2737, 1, 65535, 1),
    S(28.59904, true, A, 1, 2737, 0, 0),
    S(39.4, false, A, 2737, 1, 65535, 1),
    S(39.40004, true, A, 1, 2737, 800, 0),
    S(39.5, false, PA, 2737, 1, 65535, 800),
    S(39.50004, true, A, 1, 3537, 0, 0), /* stall 2 */
    S(60.0, false, A, 3537, 1, 65535, 1),
    S(60.5, false, A, 3537, 1, 65535, 1),
    S(60.7, false, A, 3537, 1, 65535, 1),
    S(60.70004, true, A, 1, 3537, 0, 0),
    S(61.0, false, PCAP_RST, 3537, 0, 0, 0),
};

static void
one_byte_probes(void **state)
{
	static const double gap[] = {0, 5.406, 10.801, 0, 0.5, 0.2};
	static const int64_t answer[] = {0, 0, 800, -1, -1, 0};
	static const uint32_t stall[] = {1, 1, 1, 2, 2, 2};
	struct pcap_conn c;

	(void)state;
	analyse(byte_run, NSEGS(byte_run), &c);
	assert_int_equal(c.nstalls, 3);
	assert_true(c.first_zero_ack == 1461);
	assert_true(near(c.first_zero_t, 0.002));
	assert_int_equal(c.nprobes, 6);
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(c.probes[i].len, 1);
		assert_true(near(c.probes[i].interval, gap[i]));
		assert_true(c.probes[i].answer == answer[i]);
		assert_int_equal(c.probes[i].stall, stall[i]);
	}
	assert_int_equal(c.probes[0].seq, 2737);
	assert_int_equal(c.probes[3].seq, 3537);
	/* the probe bytes are not data; the data after them is */
	assert_true(c.data_bytes == 3536);
	assert_true(near(c.zero_window_s,
	    (5.0 - 0.002) + (39.40004 - 18.086) + (61.0 - 39.50004)));
	assert_true(c.reset_by_server && !c.reset_by_client);
	/* the third stall's probes come faster */
	assert_false(pcap_probes_backoff(&c));
	pcap_conn_free(&c);
}

/* A handshake with the given scale options and one window of raw 100. */
static void
scaled(int cscale, int sscale, uint64_t want)
{
	const struct seg segs[] = {
	    {0, true, PCAP_SYN, 0, 0, 64240, 0, cscale, 1460},
	    {0.1, false, PCAP_SYN | A, 0, 1, 65160, 0, sscale, 1460},
	    S(0.2, true, A, 1, 1, 100, 0),
	};
	struct pcap_conn c;

	analyse(segs, NSEGS(segs), &c);
	assert_int_equal(c.client_wscale, cscale);
	assert_int_equal(c.server_wscale, sscale);
	assert_int_equal(c.nwindows, 1);
	assert_int_equal(c.windows[0].raw, 100);
	assert_true(c.windows[0].bytes == want);
	assert_int_equal(c.windows[0].ack, 1);
	pcap_conn_free(&c);
}

static void
window_scaling(void **state)
{
	(void)state;
	scaled(7, 7, 100 << 7);
	scaled(7, 2, 100 << 7); /* the client's own scale counts */
	scaled(7, -1, 100);     /* RFC 7323: both or neither */
	scaled(-1, 7, 100);
	scaled(15, 7, 100 << 14); /* above 14 is 14 */
}

/* The same three packets under each magic and byte order. */
static void
magics_and_orders(void **state)
{
	struct pcap_pkt *p;
	struct cap cap;
	char path[64];

	(void)state;
	for (int i = 0; i < 4; i++) {
		cap_open(&cap, i & 1, i & 2, 1);
		for (size_t k = 0; k < 3; k++)
			cap_seg(&cap, &linux_run[k]);
		cap_save(&cap, path, sizeof(path));
		assert_int_equal(read_ok(path, &p), 3);
		unlink(path);
		assert_true(near(p[0].t, T0));
		assert_true(near(p[1].t - T0, 0.000023));
		assert_true(p[0].flags == PCAP_SYN && p[0].wscale == -1);
		assert_true(p[0].mss == 1460 && p[0].win == 1460);
		assert_true(p[0].sport == CPORT && p[0].dport == SPORT);
		assert_true(p[0].saddr == htobe32(0x0a090002));
		assert_true(p[1].seq == SISN && p[1].ack == CISN + 1);
		assert_true(p[2].len == 0 && p[2].flags == PCAP_ACK);
		free(p);
	}
}

/* Nanosecond stamps are read as nanoseconds (a double near 1.7e9 s
 * resolves 0.24 us, so that is what is checked). */
static void
nanoseconds(void **state)
{
	const struct seg s = S(0.123456789, true, A, 1, 1, 1, 0);
	struct pcap_pkt *p;
	struct cap cap;
	char path[64];

	(void)state;
	cap_open(&cap, true, true, 1);
	cap_seg(&cap, &s);
	cap_save(&cap, path, sizeof(path));
	assert_int_equal(read_ok(path, &p), 1);
	unlink(path);
	assert_true(p[0].t - T0 > 0.1234565 && p[0].t - T0 < 0.1234570);
	free(p);
}

/* Payload sizes come from the IP header, not the 128 captured bytes. */
static void
payload_from_ip(void **state)
{
	const struct seg s = S(0, false, PA, 1, 1, 510, 1448);
	struct pcap_pkt *p;
	struct cap cap;
	char path[64];

	(void)state;
	for (int link = 0; link < 4; link++) {
		static const int types[] = {1, 113, 276, 101};

		cap_open(&cap, false, false, types[link]);
		cap.vlan = link == 0; /* one 802.1Q tag on Ethernet */
		cap_seg(&cap, &s);
		cap_save(&cap, path, sizeof(path));
		assert_int_equal(read_ok(path, &p), 1);
		unlink(path);
		assert_int_equal(p[0].len, 1448);
		assert_true(p[0].sport == SPORT && p[0].seq == SISN + 1);
		free(p);
	}
}

/* A record of ethertype type with l3 bytes of which the first are b. */
static void
cap_other(struct cap *c, uint16_t type, const uint8_t *b, size_t n)
{
	uint8_t f[128] = {0};
	size_t l2 = link_header(c, f, type);

	memcpy(f + l2, b, n);
	cap_record(c, 0, f, l2 + n);
}

static void
non_tcp_skipped(void **state)
{
	uint8_t ip[40] = {0};
	struct pcap_pkt *p;
	struct cap cap;
	char path[64];

	(void)state;
	cap_open(&cap, false, false, 1);
	cap_other(&cap, 0x0806, ip, 28);    /* ARP */
	cap_other(&cap, 0x86dd, ip, 40);    /* IPv6 */
	ipv4_header(&cap, ip, true, 17, 8); /* UDP */
	cap_other(&cap, 0x0800, ip, 28);
	ipv4_header(&cap, ip, true, 6, 20); /* a TCP fragment */
	be16(ip + 6, 0x2000);
	cap_other(&cap, 0x0800, ip, 40);
	ipv4_header(&cap, ip, true, 6, 20); /* TCP cut after 10 bytes */
	cap_other(&cap, 0x0800, ip, 30);
	cap_seg(&cap, &linux_run[2]);
	cap_save(&cap, path, sizeof(path));
	assert_int_equal(read_ok(path, &p), 1);
	unlink(path);
	assert_true(p[0].ack == SISN + 1);
	free(p);
}

/*
 * A snap length that ends inside the SYN's options (two VLAN tags and 40
 * bytes of IP options put them at 102..122; -s 120 here): the MSS is read,
 * the window scale after it is cut and counts as absent.
 */
static void
options_cut(void **state)
{
	const struct seg syn = {0, true, PCAP_SYN, 0, 0, 1460, 0, 7, 1460};
	struct pcap_pkt *p;
	struct cap cap;
	char path[64];

	(void)state;
	cap_open(&cap, false, false, 1);
	cap.vlan = 2;
	cap.ipopt = 40;
	cap.snap = 120;
	cap_seg(&cap, &syn); /* options at 102..122: the scale at 119 cut */
	cap.snap = 104;
	cap_seg(&cap, &syn); /* the MSS cut too */
	cap.snap = 122;
	cap_seg(&cap, &syn); /* all there */
	cap_save(&cap, path, sizeof(path));
	assert_int_equal(read_ok(path, &p), 3);
	unlink(path);
	assert_true(p[0].mss == 1460 && p[0].wscale == -1);
	assert_true(p[1].mss == 0 && p[1].wscale == -1);
	assert_true(p[2].mss == 1460 && p[2].wscale == 7);
	assert_true(p[0].win == 1460 && p[1].flags == PCAP_SYN);
	free(p);
}

/* tcpdump killed mid-write: the records before are kept. */
static void
truncated_last(void **state)
{
	struct pcap_pkt *p;
	struct cap cap;
	struct stat st;
	char path[64];

	(void)state;
	cap_open(&cap, false, false, 1);
	for (size_t k = 0; k < 3; k++)
		cap_seg(&cap, &linux_run[k]);
	cap_save(&cap, path, sizeof(path));
	assert_int_equal(read_ok(path, &p), 3);
	free(p);
	assert_int_equal(stat(path, &st), 0);
	/* within the last record's 54 bytes, then within its header */
	assert_int_equal(truncate(path, st.st_size - 5), 0);
	assert_int_equal(read_ok(path, &p), 2);
	free(p);
	assert_int_equal(truncate(path, st.st_size - 54 - 8), 0);
	assert_int_equal(read_ok(path, &p), 2);
	free(p);
	unlink(path);
}

/* Writes raw bytes to a temporary file. */
static void
write_bytes(char *path, size_t pathlen, const void *b, size_t n)
{
	struct cap cap = {0};

	cap.f = open_memstream(&cap.buf, &cap.len);
	put(&cap, b, n);
	cap_save(&cap, path, pathlen);
}

/* pcap_read fails with rc and an error starting with "path: " + want. */
static void
read_err(const char *path, int rc, const char *want)
{
	struct pcap_pkt *p = (void *)1;
	char err[256] = "", full[300];
	size_t n = 7;

	assert_int_equal(pcap_read(path, &p, &n, err, sizeof(err)), rc);
	assert_null(p);
	assert_int_equal(n, 0);
	snprintf(full, sizeof(full), "%s: %s", path, want);
	if (strncmp(err, full, strlen(full)) != 0)
		print_error("got '%s', want '%s...'\n", err, full);
	assert_true(strncmp(err, full, strlen(full)) == 0);
}

static void
bad_files(void **state)
{
	static const uint8_t ng[] = {
	    0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a};
	uint8_t junk[24] = "GIF89a, not a capture";
	struct cap cap;
	char path[64];

	(void)state;
	write_bytes(path, sizeof(path), ng, sizeof(ng));
	read_err(path, -EINVAL, "a pcapng file; only classic pcap is read");
	unlink(path);
	write_bytes(path, sizeof(path), junk, sizeof(junk));
	read_err(path, -EINVAL, "not a pcap file (magic 0x47494638)");
	unlink(path);
	write_bytes(path, sizeof(path), "\xd4\xc3\xb2\xa1\x02", 5);
	read_err(path, -EINVAL, "5 bytes, too short for a pcap header");
	unlink(path);
	write_bytes(path, sizeof(path), "", 0);
	read_err(path, -EINVAL, "empty, not a pcap file");
	unlink(path);
	read_err(path, -ENOENT, "No such file or directory");
	cap_open(&cap, false, false, 105); /* 802.11 */
	cap_save(&cap, path, sizeof(path));
	read_err(path, -ENOTSUP, "link type 105 not supported");
	unlink(path);
	cap_open(&cap, false, false, 1);
	put32(&cap, 0);
	put32(&cap, 0);
	put32(&cap, 1u << 30); /* a record of 1 GiB */
	put32(&cap, 1u << 30);
	cap_save(&cap, path, sizeof(path));
	read_err(path, -EINVAL, "a record of 1073741824 bytes: corrupt file");
	unlink(path);
}

static void
no_connection(void **state)
{
	struct pcap_pkt *p;
	struct pcap_conn c;
	struct cap cap;
	char path[64];
	size_t n;

	(void)state;
	cap_open(&cap, false, false, 1);
	for (size_t k = 0; k < 5; k++)
		cap_seg(&cap, &linux_run[k]);
	cap_save(&cap, path, sizeof(path));
	n = read_ok(path, &p);
	unlink(path);
	assert_int_equal(pcap_analyse(p, n, 80, &c), -ENOENT);
	assert_null(c.windows);
	assert_int_equal(pcap_analyse(p, 0, SPORT, &c), -ENOENT);
	pcap_conn_free(&c);
	free(p);
}

/* Without the handshake, from the client's ack of byte 1800 on: that ack
 * counts as relative 1, the windows are raw. */
static void
no_syn(void **state)
{
	struct pcap_conn c;

	(void)state;
	analyse(linux_run + 20, NSEGS(linux_run) - 20, &c);
	assert_true(near(c.t0, T0 + 8.00003));
	assert_int_equal(c.client_wscale, -1);
	assert_int_equal(c.server_wscale, -1);
	/* the client's ack 1801 taken as relative 1 */
	assert_int_equal(c.windows[0].ack, 1);
	assert_int_equal(c.windows[0].raw, 672);
	assert_true(c.first_zero_ack == 2537 - 1800);
	assert_int_equal(c.nprobes, 6);
	assert_int_equal(c.probes[0].seq, 2536 - 1800);
	assert_true(c.data_bytes == 2536 - 1800);
	pcap_conn_free(&c);
}

static void
article_pairs(void **state)
{
	static const char *const bad[] = {"1:1460,", "1-1460", "1:", ":5",
	    "1:1460 201:1260", "1:4294967296", "a:b", "1:2,,3:4", "1460",
	    "1:2:3", "-1:5", ","};
	uint32_t a[16], w[16];

	(void)state;
	assert_int_equal(pcap_parse_article("1:1460, 201:1260,401:1060 , "
	                                    "\t2737 : 0",
	                     a, w, 16),
	    4);
	assert_true(a[0] == 1 && w[0] == 1460 && a[1] == 201 && w[1] == 1260);
	assert_true(a[3] == 2737 && w[3] == 0);
	assert_int_equal(pcap_parse_article("4294967295:0", a, w, 16), 1);
	assert_true(a[0] == UINT32_MAX);
	assert_int_equal(pcap_parse_article("", a, w, 16), 0);
	assert_int_equal(pcap_parse_article("  ", a, w, 16), 0);
	assert_int_equal(pcap_parse_article("1:2,3:4,5:6", NULL, NULL, 0), 3);
	assert_int_equal(pcap_parse_article("1:2,3:4,5:6", a, w, 2), -E2BIG);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (pcap_parse_article(bad[i], a, w, 16) != -EINVAL)
			print_error("'%s' accepted\n", bad[i]);
		assert_int_equal(pcap_parse_article(bad[i], a, w, 16), -EINVAL);
	}
}

/* What a print function wrote, as a string (freed by the caller). */
static char *
printed(void (*fn)(FILE *, const struct pcap_conn *), struct pcap_conn *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	fn(f, c);
	fclose(f);
	return text;
}

static const char article[] = "1:1460, 201:1260, 401:1060, 601:860, "
                              "801:860, 1001:860, 1201:860, 1401:860, "
                              "1601:660, 1801:460, 2601:136, 2737:0";

static void
print_windows_article(FILE *f, const struct pcap_conn *c)
{
	pcap_print_windows(f, c, 3, article);
}

static void
print_windows_plain(FILE *f, const struct pcap_conn *c)
{
	pcap_print_windows(f, c, 100, NULL);
}

static void
print_windows_bad(FILE *f, const struct pcap_conn *c)
{
	pcap_print_windows(f, c, 1, "1:1460;2:3");
}

static size_t
lines(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

static void
print_windows(void **state)
{
	struct pcap_conn c;
	char *s;

	(void)state;
	analyse(linux_run, NSEGS(linux_run), &c);
	s = printed(print_windows_article, &c);
	assert_non_null(strstr(s,
	    "    # "
	    "   time s        ack     window  "
	    "article ack article win\n"));
	assert_non_null(strstr(s,
	    "    1     0.000          1       1460"
	    "            1        1460\n"));
	/* three rows of ours, the article's twelve beside and below */
	assert_non_null(strstr(s,
	    "\n                                   "
	    "           2737           0\n"));
	assert_non_null(strstr(
	    s, "here:    window 0 at ack 2537 (2536 bytes received), 12.2 s"));
	assert_non_null(
	    strstr(s, "article: window 0 at ack 2737 (2736 bytes received)\n"));
	assert_int_equal(lines(s), 1 + 12 + 2);
	free(s);
	s = printed(print_windows_plain, &c);
	assert_null(strstr(s, "article"));
	assert_non_null(strstr(s, "   14    12.210       2537          0\n"));
	assert_int_equal(lines(s), 1 + 20 + 1);
	free(s);
	s = printed(print_windows_bad, &c);
	assert_non_null(strstr(s, "article windows '1:1460;2:3': not"));
	free(s);
	pcap_conn_free(&c);
}

/* Scaled windows show the raw field beside the bytes. */
static void
print_windows_scaled(void **state)
{
	const struct seg segs[] = {
	    {0, true, PCAP_SYN, 0, 0, 64240, 0, 7, 1460},
	    {0.1, false, PCAP_SYN | A, 0, 1, 65160, 0, 7, 1460},
	    S(0.2, true, A, 1, 1, 100, 0),
	};
	struct pcap_conn c;
	char *s;

	(void)state;
	analyse(segs, NSEGS(segs), &c);
	s = printed(print_windows_plain, &c);
	assert_non_null(strstr(s, "    window    raw\n"));
	assert_non_null(
	    strstr(s, "    1     0.200          1      12800    100\n"));
	assert_non_null(strstr(s, "here:    window never 0 (1 packets)\n"));
	free(s);
	pcap_conn_free(&c);
}

static void
print_probes(void **state)
{
	struct pcap_conn c;
	char *s;

	(void)state;
	analyse(linux_run, NSEGS(linux_run), &c);
	s = printed(pcap_print_probes, &c);
	assert_non_null(strstr(s,
	    "    1    12.418  0 bytes, seq snd_una-1 "
	    "(Linux)        0.000          0\n"));
	assert_non_null(strstr(s,
	    "    2    12.846  0 bytes, seq snd_una-1 "
	    "(Linux)        0.428       none\n"));
	assert_non_null(strstr(s,
	    "intervals grew each time (exponential "
	    "backoff)\n"));
	free(s);
	pcap_conn_free(&c);
	analyse(byte_run, NSEGS(byte_run), &c);
	s = printed(pcap_print_probes, &c);
	assert_non_null(strstr(s, "1 byte "));
	assert_non_null(strstr(s,
	    "intervals did not grow: probe 6 came "
	    "0.200 s after probe 5, which came 0.500 s"));
	free(s);
	pcap_conn_free(&c);
	analyse(linux_run, 30, &c); /* one probe */
	s = printed(pcap_print_probes, &c);
	assert_non_null(strstr(s, "too few probes"));
	free(s);
	pcap_conn_free(&c);
	analyse(linux_run, 10, &c);
	s = printed(pcap_print_probes, &c);
	assert_string_equal(s, "no zero-window probes\n");
	free(s);
	pcap_conn_free(&c);
}

static void
json(void **state)
{
	struct pcap_conn c;
	char *s;

	(void)state;
	analyse(linux_run, NSEGS(linux_run), &c);
	s = printed(pcap_conn_json, &c);
	assert_non_null(strstr(s,
	    "{\"client_wscale\":-1,\"server_wscale\":-1,"
	    "\"data_bytes\":2536,\"first_zero_ack\":2537,"
	    "\"first_zero_s\":12.210020,"));
	assert_non_null(strstr(s,
	    "\"resets\":{\"server\":false,\"client\":"
	    "true},\"nwindows\":20,\"windows\":[[0.000041,"
	    "1,1460],[0.000283,201,1460],"));
	assert_non_null(strstr(s,
	    "\"probes\":[[12.418000,0,0.000000,0],"
	    "[12.846000,0,0.428000,null],"));
	assert_true(s[strlen(s) - 1] == '}' && s[strlen(s) - 2] == ']');
	free(s);
	pcap_conn_free(&c);
	analyse(linux_run, 5, &c);
	s = printed(pcap_conn_json, &c);
	assert_non_null(strstr(s,
	    "\"first_zero_ack\":null,\"first_zero_s\":"
	    "null,\"zero_window_s\":0.000000,"));
	assert_non_null(strstr(s, "\"probes\":[]}"));
	free(s);
	pcap_conn_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(magics_and_orders),
	    cmocka_unit_test(nanoseconds),
	    cmocka_unit_test(payload_from_ip),
	    cmocka_unit_test(non_tcp_skipped),
	    cmocka_unit_test(options_cut),
	    cmocka_unit_test(truncated_last),
	    cmocka_unit_test(bad_files),
	    cmocka_unit_test(linux_windows),
	    cmocka_unit_test(linux_probes),
	    cmocka_unit_test(one_byte_probes),
	    cmocka_unit_test(window_scaling),
	    cmocka_unit_test(no_connection),
	    cmocka_unit_test(no_syn),
	    cmocka_unit_test(article_pairs),
	    cmocka_unit_test(print_windows),
	    cmocka_unit_test(print_windows_scaled),
	    cmocka_unit_test(print_probes),
	    cmocka_unit_test(json),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
