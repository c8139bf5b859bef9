/* Packet transport for SOCK_SEQPACKET with optional SCM_RIGHTS, shared by
 * the daemon and the client library. */
#include <config.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/proto.h"

/* Room for more fds than we accept so a peer that sends several cannot make
 * the kernel drop (and leak into nowhere) the ones we did not ask for: every
 * received fd is either handed out or closed. */
#define ZP_MAX_RECV_FDS ZP_MAX_FDS

int zp_send(int sock, const void *buf, size_t len, int fd_to_pass, int flags)
{
	return zp_sendv(sock, buf, len, &fd_to_pass, fd_to_pass >= 0 ? 1 : 0, flags);
}

int zp_sendv(int sock, const void *buf, size_t len, const int *fds, size_t nfds, int flags)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	union {
		char buf[CMSG_SPACE(sizeof(int) * ZP_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds > ZP_MAX_FDS)
		return -E2BIG;
	if (nfds > 0) {
		struct cmsghdr *cmsg;

		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
	}
	do
		n = sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if ((size_t)n != len)
		return -EMSGSIZE; /* a seqpacket send is all or nothing */
	return 0;
}

ssize_t zp_recvv(int sock, void *buf, size_t cap, int *fds_out, size_t *nfds_out, int flags)
{
	struct iovec iov = { .iov_base = buf, .iov_len = cap };
	union {
		char buf[CMSG_SPACE(sizeof(int) * ZP_MAX_RECV_FDS)];
		struct cmsghdr align;
	} ctl;
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf),
	};
	struct cmsghdr *cmsg;
	size_t kept = 0;
	ssize_t n;

	if (nfds_out)
		*nfds_out = 0;
	/* MSG_TRUNC makes the kernel return the packet's real length, so an
	 * oversized packet is recognised rather than silently cut. */
	do
		n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC | MSG_TRUNC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;

	for (cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
		size_t nfds, i;
		int fds[ZP_MAX_RECV_FDS];

		if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
			continue;
		nfds = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (nfds > ZP_MAX_RECV_FDS)
			nfds = ZP_MAX_RECV_FDS;
		memcpy(fds, CMSG_DATA(cmsg), nfds * sizeof(int));
		for (i = 0; i < nfds; i++) {
			if (fds_out && nfds_out && kept < ZP_MAX_FDS)
				fds_out[kept++] = fds[i];
			else
				close(fds[i]);
		}
	}
	if (nfds_out)
		*nfds_out = kept;
	/* Control data that did not fit was dropped by the kernel, together
	 * with its fds; nothing is left to close. */
	return n;
}

ssize_t zp_recv(int sock, void *buf, size_t cap, int *fd_out, int flags)
{
	int fds[ZP_MAX_FDS];
	size_t nfds = 0;
	ssize_t n = zp_recvv(sock, buf, cap, fds, &nfds, flags);

	if (fd_out)
		*fd_out = nfds ? fds[0] : -1;
	for (size_t i = fd_out ? 1 : 0; i < nfds; i++)
		close(fds[i]);
	return n;
}
