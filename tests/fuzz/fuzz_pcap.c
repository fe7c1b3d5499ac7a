/*
 * fuzz_pcap: the lab's capture reader and its analysis (daemon/lab/pcap.c)
 * on any file: the lab reads what tcpdump wrote, but sluice lab's
 * analysis may be handed any file.
 *
 * Input: the file (a memory file given to pcap_read by path).
 *
 * Invariants, each an abort():
 *   - pcap_read returns 0 with the packets or a negative errno with a
 *     message naming the file and no packets; no packet without the bytes
 *     of its record (16) and of the IPv4 and TCP headers (40) in the file;
 *   - the analysis of the connection on the port of the first packet (and
 *     of one on port 80) holds no more windows than client packets, no
 *     more probes than server packets, probes numbered within the stalls,
 *     and prints (the window table, the probes, the JSON) without fault.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "lab/pcap.h"

static void
analyse(const struct pcap_pkt *p, size_t n, uint16_t port, FILE *out)
{
	struct pcap_conn c;
	int rc = pcap_analyse(p, n, port, &c);

	CHECK(rc == 0 || rc == -ENOENT || rc == -ENOMEM);
	if (rc < 0) {
		CHECK(c.windows == NULL && c.probes == NULL);
		return;
	}
	CHECK(c.nwindows <= n && c.nprobes <= n && c.nwindows + c.nprobes <= n);
	for (size_t i = 0; i < c.nprobes; i++) {
		CHECK(c.probes[i].stall < c.nstalls);
		CHECK(c.probes[i].len <= 1);
	}
	CHECK(c.first_zero_ack >= -1);
	pcap_print_windows(out, &c, 40, "1:1460, 201:1260, 401:0");
	pcap_print_probes(out, &c);
	pcap_conn_json(out, &c);
	(void)pcap_probes_backoff(&c);
	pcap_conn_free(&c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *out;
	char path[64], err[256] = "";
	struct pcap_pkt *p = (struct pcap_pkt *)1;
	size_t n = 1;
	int fd, rc;

	if (out == NULL) {
		out = fopen("/dev/null", "w");
		CHECK(out != NULL);
	}
	fd = memfile(data, size, path, sizeof(path));
	CHECK(fd >= 0);
	rc = pcap_read(path, &p, &n, err, sizeof(err));
	close(fd);
	if (rc < 0) {
		CHECK(p == NULL && n == 0);
		CHECK(strncmp(err, path, strlen(path)) == 0);
		return 0;
	}
	CHECK(rc == 0);
	CHECK(size >= 24 + n * (16 + 40));
	if (n > 0) {
		analyse(p, n, p[0].dport, out);
		analyse(p, n, p[0].sport, out);
	}
	analyse(p, n, 80, out);
	free(p);
	return 0;
}
