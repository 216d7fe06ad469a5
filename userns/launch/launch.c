// The launcher: runs before the Go runtime of nsrun starts any thread, and
// for `nsrun [flags] -- CMD` and `nsrun up` forks the process that becomes
// the run's supervisor inside the run's user, pid and mount namespaces.
// See launch.go and package userns for the protocol.
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launch.h"

extern char **environ;

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif

/*
 * populate_image maps nsrun's own code, read-only data and initialised data
 * into the page tables in one madvise call per segment. A fork copies no
 * page-table entries of file mappings, so the supervisor would otherwise
 * fault its code in page by page; on a paravirtual machine a fault costs
 * 10-30 us, a populated page under 1 us (see BENCHMARKS.md). Failure
 * changes nothing.
 */
static void populate_image(void)
{
	const ElfW(Phdr) *ph = (const ElfW(Phdr) *)getauxval(AT_PHDR);
	unsigned long n = getauxval(AT_PHNUM), page = (unsigned long)sysconf(_SC_PAGESIZE);
	unsigned long bias = 0, relro_end = 0;

	if (!ph)
		return;
	for (unsigned long i = 0; i < n; i++)
		if (ph[i].p_type == PT_PHDR) /* where a PIE was loaded */
			bias = (unsigned long)ph - ph[i].p_vaddr;
	for (unsigned long i = 0; i < n; i++)
		if (ph[i].p_type == PT_GNU_RELRO)
			relro_end = (bias + ph[i].p_vaddr + ph[i].p_memsz + page - 1) & ~(page - 1);
	for (unsigned long i = 0; i < n; i++) {
		unsigned long start, end;

		if (ph[i].p_type != PT_LOAD)
			continue;
		start = (bias + ph[i].p_vaddr) & ~(page - 1);
		end = (bias + ph[i].p_vaddr + ph[i].p_filesz + page - 1) & ~(page - 1);
		if ((ph[i].p_flags & PF_W) && start < relro_end)
			start = relro_end; /* read-only after relocation */
		if (start >= end)
			continue;
		madvise((void *)start, end - start,
			(ph[i].p_flags & PF_W) ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
	}
}

struct nsrun_launch nsrun_launch_state;
int nsrun_launch_on_request;

/* One flag of a command, as Go's flag package would parse it. */
struct flagdef {
	const char *name;
	int value;  /* takes a value: -name V or -name=V */
	int *bool_; /* a boolean flag stored here (NULL for value flags) */
	int version; /* set: the command line starts no run (--version, --dry-run) */
};

static int parse_bool(const char *v, int *out)
{
	static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
	static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		if (strcmp(v, t[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcmp(v, f[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

/*
 * parse_flags mirrors flag.FlagSet.Parse over argv[i:]: it returns the index
 * of the first argument after the flags, or -1 where Go's parser fails or
 * prints help or the version (those need no run). *dashdash is set when
 * the flags ended with the terminator --. With interspersed, as package
 * cli reads `nsrun up`, a word that is no flag is skipped and flags are read
 * on after it (up to --). It may accept what Go later refuses (a bad
 * number): the supervisor then reports the error.
 */
static int parse_flags(int argc, char **argv, int i, const struct flagdef *defs, int interspersed,
		       int *dashdash)
{
	*dashdash = 0;
	for (; i < argc; i++) {
		const char *a = argv[i], *name, *eq;
		const struct flagdef *d;
		size_t n;

		if (a[0] != '-' || a[1] == '\0') {
			if (interspersed)
				continue;
			return i;
		}
		name = a + 1;
		if (name[0] == '-') {
			name++;
			if (name[0] == '\0') {
				*dashdash = 1;
				return i + 1;
			}
		}
		if (name[0] == '-' || name[0] == '=')
			return -1;
		eq = strchr(name, '=');
		n = eq ? (size_t)(eq - name) : strlen(name);
		for (d = defs; d->name; d++)
			if (strlen(d->name) == n && strncmp(d->name, name, n) == 0)
				break;
		if (d->name == NULL)
			return -1; /* unknown, or -h/-help */
		if (d->value) {
			if (eq == NULL && ++i >= argc)
				return -1;
			continue;
		}
		int v = 1;
		if (eq && parse_bool(eq + 1, &v) < 0)
			return -1;
		if (d->version && v)
			return -1;
		if (d->bool_)
			*d->bool_ = v;
	}
	return i;
}

/*
 * nsrun_launch_decide reads a command line as package cli does: `nsrun up`
 * starts a run; so does `nsrun [flags] CMD` when CMD follows -- or is a
 * path (holds a /). Any other first word is a command of Go's, or refused
 * by it, and starts nothing.
 */
int nsrun_launch_decide(int argc, char **argv, int *root, int *isolated)
{
	const struct flagdef run_flags[] = {
		{"ip", 1, NULL, 0}, {"ip6", 1, NULL, 0}, {"ipv6", 0, NULL, 0},
		{"hostname", 1, NULL, 0}, {"log-level", 1, NULL, 0},
		{"root", 0, root, 0}, {"isolated", 0, isolated, 0}, {"version", 0, NULL, 1},
		{"dry-run", 0, NULL, 1}, {"json", 0, NULL, 1},
		{NULL, 0, NULL, 0},
	};
	const struct flagdef up_flags[] = {
		{"f", 1, NULL, 0}, {"exit-code-from", 1, NULL, 0}, {"timeout", 1, NULL, 0},
		{"capture", 1, NULL, 0}, {"log-level", 1, NULL, 0}, {"abort-on-exit", 0, NULL, 0},
		{"keep-logs", 0, NULL, 0},
		/* up -d starts the run as a child of its own (cli's upDetached) */
		{"d", 0, NULL, 1}, {"detach", 0, NULL, 1},
		{"faults", 0, NULL, 0}, {"report", 1, NULL, 0},
		{"root", 0, root, 0}, {"isolated", 0, isolated, 0},
		{"dry-run", 0, NULL, 1}, {"json", 0, NULL, 1},
		{NULL, 0, NULL, 0},
	};
	int rest, dashdash;

	*root = *isolated = 0;
	if (argc > 1 && strcmp(argv[1], "up") == 0)
		return parse_flags(argc, argv, 2, up_flags, 1, &dashdash) < 0 ? NSRUN_KIND_NONE : NSRUN_KIND_UP;
	rest = parse_flags(argc, argv, 1, run_flags, 0, &dashdash);
	if (rest < 0 || rest >= argc || !(dashdash || strchr(argv[rest], '/')))
		return NSRUN_KIND_NONE;
	return NSRUN_KIND_RUN;
}

static void fail(const char *step, int err)
{
	nsrun_launch_state.err_step = step;
	nsrun_launch_state.err_errno = err;
}

static int write_file(pid_t pid, const char *name, const char *data)
{
	char path[64];
	int fd, ok;

	snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ok = write(fd, data, strlen(data)) == (ssize_t)strlen(data);
	if (!ok && errno == 0)
		errno = EIO;
	close(fd);
	return ok ? 0 : -1;
}

const char *nsrun_write_id_maps(pid_t pid, int in_uid, int out_uid, int in_gid, int out_gid)
{
	char map[64];

	snprintf(map, sizeof map, "%d %d 1\n", in_uid, out_uid);
	if (write_file(pid, "uid_map", map) < 0)
		return "uid_map";
	if (write_file(pid, "setgroups", "deny") < 0)
		return "setgroups";
	snprintf(map, sizeof map, "%d %d 1\n", in_gid, out_gid);
	if (write_file(pid, "gid_map", map) < 0)
		return "gid_map";
	return NULL;
}

/* The launcher parent's view: the supervisor's pid and what to forward. */
static volatile pid_t supervisor_pid;
static volatile int forward_terminal;

/*
 * Signals that come before the supervisor can act on them. The supervisor
 * is PID 1 of the run's pid namespace, and the kernel drops a signal to
 * such a process while the signal's action is the default; from the Go
 * runtime's start until the first signal.Notify, Go's own default ends
 * the process. Either way a Ctrl-C in a run's first milliseconds was lost
 * (the run came up and kept running) or ended the supervisor with 2. So
 * from just before the clone, record() keeps the last signal that came:
 * in the launcher, which holds it until the supervisor says that Go
 * listens (a port request of family 0, which package launch's init sends
 * once it has called signal.Notify) and then forwards it; and, inherited,
 * in the supervisor until Go's handlers take over, where Go reads it
 * (nsrun_launch_early_signal).
 */
static const int early_sigs[] = {SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2};
#define N_EARLY_SIGS (sizeof early_sigs / sizeof early_sigs[0])
static struct sigaction saved_early_sigs[N_EARLY_SIGS];
static volatile sig_atomic_t early_signal;
static volatile sig_atomic_t supervisor_listens;
/* The stop signal handed to the supervisor when it said it listens, and
 * whether it has said that it exits (see wait_supervisor). */
static volatile sig_atomic_t handed_signal;
static volatile sig_atomic_t supervisor_exiting;

static void record(int sig) { early_signal = sig; }

/* early_set is early_sigs as a set. */
static sigset_t early_set(void)
{
	sigset_t set;

	sigemptyset(&set);
	for (size_t i = 0; i < N_EARLY_SIGS; i++)
		sigaddset(&set, early_sigs[i]);
	return set;
}

/* catch_early starts recording the signals, keeping the caller's actions
 * for release_early. */
static void catch_early(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = record;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < N_EARLY_SIGS; i++)
		sigaction(early_sigs[i], &sa, &saved_early_sigs[i]);
}

/* release_early gives the signals their caller's actions back, when no
 * run was started after all, and raises one that came meanwhile. */
static void release_early(void)
{
	for (size_t i = 0; i < N_EARLY_SIGS; i++)
		sigaction(early_sigs[i], &saved_early_sigs[i], NULL);
	if (early_signal)
		raise(early_signal);
}

int nsrun_launch_early_signal(void) { return early_signal; }

static void forward(int sig)
{
	if (!supervisor_listens) {
		early_signal = sig; /* forwarded once Go listens */
		return;
	}
	if ((sig == SIGINT || sig == SIGQUIT) && !forward_terminal)
		return; /* the terminal delivered it to the whole group already */
	if (supervisor_pid > 0)
		kill(supervisor_pid, sig);
}

static void wake(int sig) { (void)sig; }

/*
 * supervisor_listening is the launcher's answer to the supervisor's word
 * that its Go code listens for signals: the signals that came meanwhile
 * go to it now (the last of them), the later ones as they come.
 */
static int supervisor_listening(void)
{
	sigset_t block = early_set(), old;

	sigprocmask(SIG_BLOCK, &block, &old);
	supervisor_listens = 1;
	if (early_signal)
		kill(supervisor_pid, early_signal);
	handed_signal = early_signal;
	early_signal = 0;
	sigprocmask(SIG_SETMASK, &old, NULL);
	return 0;
}

/*
 * bind_port answers one request of the supervisor, which lives in a network
 * namespace of its own: a struct nsrun_port_req, the address and TCP or
 * UDP port to listen on in the caller's network namespace (an IPv6 socket
 * is IPv6-only: [::] does not take IPv4's port too). The reply is an int,
 * 0 or an errno; with 0 comes the listening (TCP) or bound (UDP) socket
 * (SCM_RIGHTS). A request of family 0 is no port but the supervisor's
 * word that Go listens for signals (supervisor_listening), and gets no
 * reply. A UDP socket gets no SO_REUSEADDR: on UDP that would let
 * another socket with it bind the same port and share its datagrams. It
 * returns -1 once the supervisor has closed its end.
 */
static int bind_port(int sock)
{
	struct nsrun_port_req req;
	int fd = -1, err = 0, one = 1;
	struct sockaddr_in sa;
	struct sockaddr_in6 sa6;
	struct sockaddr *addr = (struct sockaddr *)&sa;
	socklen_t addrlen = sizeof sa;
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = &err, .iov_len = sizeof err};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n = recv(sock, &req, sizeof req, 0);

	if (n < 0 && errno == EINTR)
		return 0;
	if (n != sizeof req)
		return -1;
	if (req.family == 0 && req.port == NSRUN_WORD_EXITING) {
		supervisor_exiting = 1;
		return 0;
	}
	if (req.family == 0)
		return supervisor_listening();
	memset(&sa, 0, sizeof sa);
	memset(&sa6, 0, sizeof sa6);
	if (req.family == 6) {
		sa6.sin6_family = AF_INET6;
		sa6.sin6_port = htons(req.port);
		memcpy(&sa6.sin6_addr, req.addr, 16);
		addr = (struct sockaddr *)&sa6;
		addrlen = sizeof sa6;
	} else {
		sa.sin_family = AF_INET;
		sa.sin_port = htons(req.port);
		memcpy(&sa.sin_addr, req.addr, 4);
	}
	fd = socket(addr->sa_family, (req.udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
	if (fd < 0 || (!req.udp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) ||
	    (req.family == 6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) ||
	    bind(fd, addr, addrlen) < 0 || (!req.udp && listen(fd, SOMAXCONN) < 0))
		err = errno;
	if (err == 0) {
		struct cmsghdr *c;
		memset(cbuf, 0, sizeof cbuf);
		msg.msg_control = cbuf;
		msg.msg_controllen = sizeof cbuf;
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	if (fd >= 0)
		close(fd);
	return n == sizeof err ? 0 : -1;
}

/*
 * wait_supervisor is all the launcher parent does once the supervisor runs:
 * forward signals, bind published ports, and exit with the supervisor's exit
 * code. It never returns, so the Go runtime never starts in this process.
 */
static void wait_supervisor(pid_t pid, int forward_all, int ports)
{
	struct sigaction sa;
	sigset_t chld, unblocked;
	int status;

	supervisor_pid = pid;
	forward_terminal = forward_all;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = forward;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < N_EARLY_SIGS; i++)
		sigaction(early_sigs[i], &sa, NULL);
	/* SIGCHLD stays blocked except inside ppoll, so none is missed. */
	sa.sa_handler = wake;
	sigaction(SIGCHLD, &sa, NULL);
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &unblocked);
	sigdelset(&unblocked, SIGCHLD);
	for (;;) {
		struct pollfd p = {.fd = ports, .events = POLLIN};
		pid_t w = waitpid(pid, &status, WNOHANG);

		/* Gone before its Go code listened, while a signal waited here:
		 * the signal ended it (a group's signal reached it too, and Go's
		 * default for it exits with 2), so nsrun ends as by that signal. */
		if (w == pid && !supervisor_listens && early_signal)
			_exit(128 + early_signal);
		/* The same, when the signal reached the supervisor between the
		 * Go runtime's start and signal.Notify, while another of its
		 * threads went on to say that Go listens: Go's default then
		 * ends it, and as PID 1 of its pid namespace it cannot die by
		 * the signal, so Go exits with 2, unannounced. (A 2 the run
		 * gives, its command's, the supervisor announces first.) */
		if (w == pid && WIFEXITED(status) && WEXITSTATUS(status) == 2 && handed_signal &&
		    !supervisor_exiting)
			_exit(128 + handed_signal);
		if (w == pid && WIFEXITED(status))
			_exit(WEXITSTATUS(status));
		if (w == pid && WIFSIGNALED(status))
			_exit(128 + WTERMSIG(status));
		if (w < 0 && errno != EINTR)
			_exit(125);
		if (ppoll(&p, ports >= 0 ? 1 : 0, NULL, &unblocked) > 0 && bind_port(ports) < 0) {
			close(ports);
			ports = -1;
		}
	}
}

static void launch(int argc, char **argv)
{
	struct nsrun_launch *st = &nsrun_launch_state;
	char path[96];
	int isolated, sync[2], ports[2], ufd = -1;
	sigset_t early, unblocked;
	unsigned long flags = CLONE_NEWPID | CLONE_NEWNS | SIGCHLD;
	pid_t pid;
	int pidns;

	/*
	 * AT_SECURE: the kernel started this process setuid, setgid or with
	 * file capabilities (or a security module asked for secure mode).
	 * Its environment then belongs to the caller, who is not whom the
	 * process runs as: a setuid-root tool that merely imports nstest,
	 * run with NSRUN_AS_NSRUN=1, would otherwise become a launcher as
	 * root (issue 20: it read /etc/shadow and wrote into /etc). Such a
	 * binary runs as itself; nsrun itself refuses to start a run.
	 */
	int secure = getauxval(AT_SECURE) != 0;

	/* A node's init: all of it is C (nodeinit.c); it never returns. */
	if (argc > 1 && strcmp(argv[1], NSRUN_NODE_INIT_MARKER) == 0)
		nsrun_node_init(argc, argv, environ);

	if (nsrun_launch_on_request && (secure || getenv(NSRUN_AS_NSRUN) == NULL))
		return; /* a test binary, run as itself */
	st->kind = nsrun_launch_decide(argc, argv, &st->root, &isolated);
	if (st->kind == NSRUN_KIND_NONE)
		return;
	if (secure)
		return fail("refusing to start a run: nsrun is setuid, setgid or has file capabilities, "
			    "and runs only as the user who calls it (remove them: chmod u-s,g-s; setcap -r)",
			    ENOTSUP);
	st->uid = (int)getuid();
	st->gid = (int)getgid();
	st->nsrun_pid = (int)getpid();
	{
		pid_t fg = tcgetpgrp(0);
		st->terminal = fg >= 0 && fg == getpgrp();
	}
	if (!isolated) {
		snprintf(path, sizeof path, "/run/user/%d/nsrun/install.json", st->uid);
		st->joined = access(path, F_OK) == 0;
	}
	st->unpriv_port = -1;
	if (st->kind == NSRUN_KIND_UP) {
		/* Published ports are bound here, as the caller: read now, in
		 * the caller's network namespace, which ports that allows. */
		if (geteuid() == 0 && !st->joined) {
			st->unpriv_port = 0;
		} else {
			char buf[16];
			int fd = open("/proc/sys/net/ipv4/ip_unprivileged_port_start", O_RDONLY | O_CLOEXEC);
			if (fd >= 0) {
				ssize_t n = read(fd, buf, sizeof buf - 1);
				if (n > 0) {
					buf[n] = 0;
					st->unpriv_port = atoi(buf);
				}
				close(fd);
			}
		}
	}
	if (st->joined) {
		/* Mounts gone (after a reboot or the last logout): run isolated;
		 * Go reads the install record again and says why. */
		snprintf(path, sizeof path, "/run/user/%d/nsrun/userns", st->uid);
		ufd = open(path, O_RDONLY | O_CLOEXEC);
		if (ufd < 0 || setns(ufd, CLONE_NEWUSER) < 0) {
			int err = errno;
			if (ufd >= 0)
				close(ufd);
			if (err != ENOENT && err != EINVAL)
				return fail("join the gateway user namespace", err);
			st->joined = 0;
		} else {
			close(ufd);
		}
	}
	if (!st->joined) {
		flags |= CLONE_NEWUSER;
	}
	if (pipe2(sync, O_CLOEXEC) < 0)
		return fail("create the launch pipe", errno);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ports) < 0) {
		fail("create the port socket", errno);
		close(sync[0]);
		close(sync[1]);
		return;
	}

	/* The caller's pid namespace, for the supervisor to tell the user on
	 * the host from a node of another run: both are outside the run's
	 * pid namespace (SO_PEERCRED names neither), but only the first can
	 * send an open descriptor of this namespace (a node sees none of its
	 * processes). */
	pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
	/* The supervisor inherits record(). Across the clone the signals
	 * wait, blocked: one that came before is the launcher's (it goes to
	 * the supervisor once Go listens), one that comes after is each
	 * process's that gets it. */
	catch_early();
	early = early_set();
	sigprocmask(SIG_BLOCK, &early, &unblocked);
	pid = (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
	if (pid != 0 && pidns >= 0)
		close(pidns);
	if (pid != 0)
		sigprocmask(SIG_SETMASK, &unblocked, NULL);
	if (pid < 0) {
		int err = errno;
		release_early();
		fail(st->joined ? "create the run's pid and mount namespaces" : "create the run's user namespace", err);
		close(sync[0]);
		close(sync[1]);
		close(ports[0]);
		close(ports[1]);
		return;
	}
	if (pid == 0) {
		/* The supervisor: wait for the go-ahead, then start Go. */
		char go;
		struct pollfd p = {.fd = sync[0], .events = POLLIN};

		/* What the launcher got before the clone is its to forward;
		 * record() keeps catching until Go's handlers take over. */
		early_signal = 0;
		sigprocmask(SIG_SETMASK, &unblocked, NULL);

		close(sync[1]);
		close(ports[0]);
		/* Until the Go runtime starts, this signal's default action
		 * ends the supervisor when the launcher dies; from
		 * launch.LauncherGone on, the supervisor hears it and ends the
		 * run itself, letting the capture finish its last record. */
		prctl(PR_SET_PDEATHSIG, NSRUN_LAUNCHER_GONE);
		populate_image(); /* while the launcher writes the id maps */
		if (read(sync[0], &go, 1) != 1)
			_exit(125); /* the launcher failed or died */
		/* The launcher holds its end open while it lives. */
		if (poll(&p, 1, 0) == 1 && (p.revents & POLLHUP))
			_exit(125);
		close(sync[0]);
		if (st->kind == NSRUN_KIND_UP)
			setpgid(0, 0);
		st->launched = 1;
		st->port_fd = ports[1];
		st->caller_pidns_fd = pidns;
		/* The supervisor's network namespace becomes the run's bridge
		 * namespace; the caller's stays with the launcher. */
		if (unshare(CLONE_NEWNET) < 0) {
			fail("create the run's bridge network namespace", errno);
			return;
		}
		/* Forked now, while this process is small and single-threaded
		 * and holds a handful of descriptors (spawner.c). */
		st->spawner_fd = nsrun_spawner_start(argc, argv, &st->spawner_pid);
		return;
	}
	close(sync[0]);
	close(ports[1]);
	if (!st->joined) {
		/* Map the caller's own ids: as uid 0 for --root, else as
		 * themselves, so that CMD needs no user namespace of its own. */
		int in_uid = st->root ? 0 : st->uid, in_gid = st->root ? 0 : st->gid;
		const char *bad = nsrun_write_id_maps(pid, in_uid, st->uid, in_gid, st->gid);

		if (bad) {
			fail(strcmp(bad, "uid_map") == 0 ? "write the run's uid_map"
			     : strcmp(bad, "setgroups") == 0 ? "deny setgroups in the run's user namespace"
							     : "write the run's gid_map",
			     errno);
			close(sync[1]);
			close(ports[0]);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			release_early();
			return;
		}
	}
	if (write(sync[1], "1", 1) != 1) {
		fail("start the supervisor", errno);
		close(sync[1]);
		close(ports[0]);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		release_early();
		return;
	}
	/* sync[1] stays open: the supervisor sees POLLHUP if we die early. */
	wait_supervisor(pid, st->kind == NSRUN_KIND_UP || !st->terminal, ports[0]);
}

static void __attribute__((constructor)) nsrun_launch_init(int argc, char **argv)
{
	nsrun_launch_state.port_fd = -1;
	nsrun_launch_state.caller_pidns_fd = -1;
	nsrun_launch_state.unpriv_port = -1;
	nsrun_launch_state.spawner_fd = -1;
	launch(argc, argv);
}
