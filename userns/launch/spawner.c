// The spawner: a small C process the supervisor forks before its Go
// runtime starts, which forks each node's init on request. A node's init
// forked from the supervisor itself (Go's fork and exec of nsrun) copies
// the supervisor's descriptor table, thousands of descriptors in a large
// run (a network namespace, an output pipe, an annotation socket and a
// pidfd a node), which the kernel then closes again at the exec, and it
// loads nsrun anew: quadratic in the number of nodes, and most of a
// node's start. The spawner holds three descriptors and is already
// nsrun: its child needs no exec to be the init.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "launch.h"

/* The process's argv words, which the spawner and each init overwrite
 * with their names: /proc/PID/cmdline shows them, as after an exec. */
static char *args_start;
static size_t args_len;

/* The signal mask the supervisor started with (the caller's): each
 * command starts with it, as it did when Go forked the init. */
static sigset_t start_mask;

static void set_cmdline(const char *name)
{
	size_t n = strlen(name);

	if (args_start == NULL || args_len == 0)
		return;
	memset(args_start, 0, args_len);
	memcpy(args_start, name, n < args_len - 1 ? n : args_len - 1);
}

/* raise_ambient keeps every capability of the init's across the exec of
 * its command (NSRUN_INIT_ALL_CAPS), as Go's AmbientCaps did for an
 * exec'd init: inheritable, then ambient, up to the kernel's last. */
static int raise_ambient(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];

	if (syscall(SYS_capget, &hdr, data) < 0)
		return -1;
	data[0].inheritable = data[0].permitted;
	data[1].inheritable = data[1].permitted;
	if (syscall(SYS_capset, &hdr, data) < 0)
		return -1;
	for (int cap = 0; cap < 64; cap++)
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
			return errno == EINVAL ? 0 : -1;
	return 0;
}

/*
 * become_init turns the spawner's child into the node's init: it moves
 * the received descriptors to the init's numbers (0-2, config on 3, status
 * on 4), closes every other, joins the node's network, UTS and mount
 * namespaces, and runs the init (nodeinit.c). It never returns.
 */
static void become_init(const struct nsrun_spawn_req *req, int fds[NSRUN_SPAWN_NFDS])
{
	static const int targets[] = {[NSRUN_SPAWN_STDIN] = 0, [NSRUN_SPAWN_STDOUT] = 1, [NSRUN_SPAWN_STDERR] = 2,
				      [NSRUN_SPAWN_CONFIG] = 3, [NSRUN_SPAWN_STATUS] = 4};
	static const struct {
		int idx, type;
		const char *what;
	} ns[] = {{NSRUN_SPAWN_NET, CLONE_NEWNET, "node init: join the node's network namespace"},
		  {NSRUN_SPAWN_UTS, CLONE_NEWUTS, "node init: join the node's UTS namespace"},
		  {NSRUN_SPAWN_MNT, CLONE_NEWNS, "node init: join the node's mount namespace"}};
	int high[NSRUN_SPAWN_NFDS];

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* Above every target first, so no dup2 overwrites a source. */
	for (int i = 0; i < NSRUN_SPAWN_NFDS; i++)
		if ((high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 16)) < 0)
			_exit(NSRUN_EXIT_SETUP_FAILED);
	for (int i = NSRUN_SPAWN_STDIN; i <= NSRUN_SPAWN_STATUS; i++)
		if (dup2(high[i], targets[i]) < 0)
			_exit(NSRUN_EXIT_SETUP_FAILED);
	/* From here on, the status pipe says what failed. */
	for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
		if (setns(high[ns[i].idx], ns[i].type) < 0)
			nsrun_node_init_fail(ns[i].what, errno);
	if (syscall(SYS_close_range, 5, ~0U, 0) < 0)
		for (int fd = 5; fd < 1024; fd++)
			close(fd);
	if (chdir("/") < 0)
		nsrun_node_init_fail("node init: chdir /", errno);
	if (req->setpgid && setpgid(0, 0) < 0)
		nsrun_node_init_fail("node init: setpgid", errno);
	if ((req->flags & NSRUN_INIT_ALL_CAPS) && getuid() != 0 && raise_ambient() < 0)
		nsrun_node_init_fail("node init: keep every capability", errno);
	set_cmdline("nsrun-init");
	nsrun_node_init_forked(req->flags, &start_mask);
}

/* serve forks one init for the request on sock, or drops a malformed
 * request; it says whether the socket is still open. */
static int serve(int sock)
{
	struct nsrun_spawn_req req;
	union {
		char buf[CMSG_SPACE(NSRUN_SPAWN_NFDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = &req, .iov_len = sizeof req};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
	int fds[NSRUN_SPAWN_NFDS], nfds = 0, reply;
	ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	pid_t pid;

	if (n < 0) {
		/* A passing shortage (ENOMEM, ENOBUFS) must not end it: only
		 * a socket that is no more does. */
		if (errno == EBADF || errno == ENOTSOCK || errno == ENOTCONN)
			return 0;
		if (errno != EINTR) {
			struct timespec ms = {0, 1000000};
			nanosleep(&ms, NULL);
		}
		return 1;
	}
	if (n == 0)
		return 0; /* the supervisor is gone */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
			if (nfds < NSRUN_SPAWN_NFDS)
				fds[nfds++] = fd;
			else
				close(fd);
		}
	}
	if (n != (ssize_t)sizeof req || nfds != NSRUN_SPAWN_NFDS || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		return 1;
	}
	/* The init's parent is the supervisor (CLONE_PARENT), which waits
	 * for it; PID 1 of a pid namespace of its own. */
	pid = (pid_t)syscall(SYS_clone, CLONE_PARENT | CLONE_NEWPID, NULL, NULL, NULL, NULL);
	if (pid == 0)
		become_init(&req, fds);
	reply = pid < 0 ? -errno : (int)pid;
	if (write(fds[NSRUN_SPAWN_REPLY], &reply, sizeof reply) < 0) {
		/* The supervisor stopped waiting; its init ends with it. */
	}
	for (int i = 0; i < NSRUN_SPAWN_NFDS; i++)
		close(fds[i]);
	return 1;
}

/* spawner is the spawner's life: requests on sock until the supervisor
 * closes it (or dies: the parent-death signal). */
static void spawner(int sock) __attribute__((noreturn));
static void spawner(int sock)
{
	struct sigaction dfl;
	sigset_t all;
	int null;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	prctl(PR_SET_NAME, "nsrun-spawner", 0, 0, 0);
	set_cmdline("nsrun-spawner");
	/* Every signal is blocked here and in the inits it forks, until each
	 * init blocks just those it takes: none is lost in between. A caught
	 * action (the launcher's record) becomes the default, as across an
	 * exec; an ignored one stays ignored. */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &start_mask);
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction cur;

		if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &cur) < 0)
			continue;
		if (cur.sa_handler != SIG_DFL && cur.sa_handler != SIG_IGN)
			sigaction(sig, &dfl, NULL);
	}
	/* It holds none of the caller's files: not the terminal, not the
	 * launcher's sockets. */
	if (dup2(sock, 3) < 0)
		_exit(NSRUN_EXIT_SETUP_FAILED);
	sock = 3;
	if (syscall(SYS_close_range, 4, ~0U, 0) < 0)
		for (int fd = 4; fd < 1024; fd++)
			close(fd);
	if ((null = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		if (null > 2)
			close(null);
	}
	while (serve(sock)) {
	}
	_exit(0);
}

int nsrun_spawner_start(int argc, char **argv, int *spawner_pid)
{
	int sv[2];
	pid_t pid;

	*spawner_pid = 0;
	if (argc > 0) {
		args_start = argv[0];
		args_len = (size_t)(argv[argc - 1] + strlen(argv[argc - 1]) + 1 - argv[0]);
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		close(sv[0]);
		spawner(sv[1]);
	}
	close(sv[1]);
	*spawner_pid = (int)pid;
	return sv[0];
}
