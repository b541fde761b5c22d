// Sends one UDP datagram over IPv6 carrying a destination-options header (IPV6_DSTOPTS, one PadN
// option) and prints the answer: its size, a tab, then its first line. For lab tests that need
// extension headers on real packets (Node's dgram cannot set them). Exit 1 on timeout or error.
//   udp6-dstopts HOST PORT SIZE TIMEOUT_MS
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_in6 to = { .sin6_family = AF_INET6 };
	/* Next header and length (filled in by the kernel: 8 bytes), then PadN over the other 6. */
	unsigned char opts[8] = { 0, 0, 1, 4, 0, 0, 0, 0 };
	static char buf[65536];
	struct pollfd p;
	size_t size;
	ssize_t n;
	char *nl;
	int fd;

	if (argc != 5) {
		fprintf(stderr, "usage: %s HOST PORT SIZE TIMEOUT_MS\n", argv[0]);
		return 2;
	}
	if (inet_pton(AF_INET6, argv[1], &to.sin6_addr) != 1) {
		fprintf(stderr, "not an IPv6 address: %s\n", argv[1]);
		return 2;
	}
	to.sin6_port = htons((unsigned short)atoi(argv[2]));
	size = (size_t)atoi(argv[3]);
	if (size < 1 || size > sizeof(buf)) {
		fprintf(stderr, "size out of range\n");
		return 2;
	}
	fd = socket(AF_INET6, SOCK_DGRAM, 0);
	if (fd < 0 || setsockopt(fd, IPPROTO_IPV6, IPV6_DSTOPTS, opts, sizeof(opts)) < 0 ||
	    connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0) {
		perror("socket");
		return 1;
	}
	memset(buf, 'p', size);
	if (send(fd, buf, size, 0) != (ssize_t)size) {
		perror("send");
		return 1;
	}
	p.fd = fd;
	p.events = POLLIN;
	if (poll(&p, 1, atoi(argv[4])) != 1) {
		fprintf(stderr, "ETIMEDOUT\n");
		return 1;
	}
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	if (n < 0) {
		perror("recv");
		return 1;
	}
	buf[n] = 0;
	nl = strchr(buf, '\n');
	if (nl)
		*nl = 0;
	printf("%zd\t%s\n", n, buf);
	return 0;
}
