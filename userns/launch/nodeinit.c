// A node's init, in C: nsrun run again as PID 1 of the node's own pid
// namespace (or as the starter of `nsrun net exec` in a running node). It
// runs from the launcher's constructor and never returns, so no Go runtime
// starts in it: a node costs one exec of this small loop, not the start of
// a 10 MB Go program (see package guest, which starts it).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launch.h"

/* The init's ends of its pipes: the supervisor writes the configuration
 * on the first and closes it (package guest); the init reports on the
 * second. */
#define CONFIG_FD 3
#define STATUS_FD 4

/* report writes the init's status as one JSON object, {"pid":N} or
 * {"error":"..."}, and closes the pipe. */
static void report(int pid, const char *msg)
{
	char buf[1024];
	size_t n = 0;

	if (msg == NULL) {
		n = (size_t)snprintf(buf, sizeof buf, "{\"pid\":%d}\n", pid);
	} else {
		n = (size_t)snprintf(buf, sizeof buf, "{\"error\":\"");
		for (const char *p = msg; *p && n < sizeof buf - 16; p++) {
			unsigned char c = (unsigned char)*p;
			if (c == '"' || c == '\\')
				n += (size_t)snprintf(buf + n, sizeof buf - n, "\\%c", c);
			else if (c < 0x20)
				n += (size_t)snprintf(buf + n, sizeof buf - n, "\\u%04x", c);
			else
				buf[n++] = (char)c;
		}
		n += (size_t)snprintf(buf + n, sizeof buf - n, "\"}\n");
	}
	if (write(STATUS_FD, buf, n) < 0) {
		/* The supervisor is gone; so will this node be. */
	}
	close(STATUS_FD);
}

/* errstr is strerror as Go words it: lower case. */
static const char *errstr(int err, char *buf, size_t size)
{
	snprintf(buf, size, "%s", strerror(err));
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

/* failf reports why the command did not start and exits. */
static void __attribute__((noreturn)) failf(const char *what, const char *arg, int err)
{
	char msg[512], e[128];

	snprintf(msg, sizeof msg, "%s%s%s: %s", what, arg ? " " : "", arg ? arg : "",
		 errstr(err, e, sizeof e));
	report(0, msg);
	_exit(NSRUN_EXIT_SETUP_FAILED);
}

/* drop_inherited_caps clears the ambient and inheritable capabilities, so
 * the command keeps none unless it runs as uid 0 (as when the supervisor
 * forked it before nodes had an init). */
static int drop_inherited_caps(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];

	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
		return -1;
	if (syscall(SYS_capget, &hdr, data) < 0)
		return -1;
	data[0].inheritable = data[1].inheritable = 0;
	return (int)syscall(SYS_capset, &hdr, data);
}

/*
 * default_actions gives the command every signal's default action but
 * SIGHUP's and SIGINT's, which it keeps ignored if they were (nohup, a
 * shell's background job), as a Go program's children get them: the
 * supervisor ignores SIGPIPE in a detached run, and the init inherits
 * that, but `yes | head -1` in a node must end quietly.
 */
static void default_actions(void)
{
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP && sig != SIGHUP && sig != SIGINT)
			signal(sig, SIG_DFL);
}

/* The command's side of the start: a failed step is written to the error
 * pipe as two ints, the step and the errno. */
enum { STEP_SYNC = 1, STEP_SETGID, STEP_SETUID, STEP_CHDIR, STEP_EXEC };

static void child_fail(int errfd, int step)
{
	int msg[2] = {step, errno};

	if (write(errfd, msg, sizeof msg) < 0) {
		/* Nothing more to do: the init reads EOF and says so. */
	}
	_exit(127);
}

struct command {
	const char *path, *dir;
	char **argv, **envp;
	int flags, uid, gid;
};

/*
 * start clones the command: with NSRUN_INIT_MAP_USER in a user namespace of
 * its own that maps uid and gid to this namespace's uid 0 (this process
 * writes its maps, then lets it go on), in its own process group with
 * NSRUN_INIT_SETPGID, with the signal mask the init was started with. It
 * returns the command's pid once the command has been exec'd, or reports
 * why not and exits.
 */
static pid_t start(const struct command *c, const sigset_t *mask)
{
	int errp[2], syncp[2] = {-1, -1}, msg[2];
	int map_user = (c->flags & NSRUN_INIT_MAP_USER) != 0;
	ssize_t n;
	pid_t pid;

	if (pipe2(errp, O_CLOEXEC) < 0 || (map_user && pipe2(syncp, O_CLOEXEC) < 0))
		failf("node init: pipe", NULL, errno);
	/* A raw clone, as fork would be: this process is single-threaded C. */
	pid = (pid_t)syscall(SYS_clone, SIGCHLD | (map_user ? CLONE_NEWUSER : 0), NULL, NULL, NULL, NULL);
	if (pid < 0)
		failf("node init: start the command", NULL, errno);
	if (pid == 0) {
		close(errp[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (c->flags & NSRUN_INIT_SETPGID)
			setpgid(0, 0);
		if (map_user) {
			char go;

			close(syncp[1]);
			if (read(syncp[0], &go, 1) != 1) {
				errno = EPIPE;
				child_fail(errp[1], STEP_SYNC);
			}
			if (setresgid((gid_t)c->gid, (gid_t)c->gid, (gid_t)c->gid) < 0)
				child_fail(errp[1], STEP_SETGID);
			if (setresuid((uid_t)c->uid, (uid_t)c->uid, (uid_t)c->uid) < 0)
				child_fail(errp[1], STEP_SETUID);
		}
		if (c->dir[0] && chdir(c->dir) < 0)
			child_fail(errp[1], STEP_CHDIR);
		default_actions();
		sigprocmask(SIG_SETMASK, mask, NULL);
		execve(c->path, c->argv, c->envp);
		child_fail(errp[1], STEP_EXEC);
	}
	close(errp[1]);
	if (map_user) {
		const char *bad;

		close(syncp[0]);
		bad = nsrun_write_id_maps(pid, c->uid, 0, c->gid, 0);
		if (bad || write(syncp[1], "1", 1) != 1) {
			int err = errno;

			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			failf("node init: write the command's", bad ? bad : "id maps", err);
		}
		close(syncp[1]);
	}
	n = read(errp[0], msg, sizeof msg);
	close(errp[0]);
	if (n == (ssize_t)sizeof msg) {
		static const char *const steps[] = {"node init: start the command",
						    "node init: enter the command's user namespace",
						    "setgid", "setuid", "chdir", "fork/exec"};
		int step = msg[0] >= STEP_SYNC && msg[0] <= STEP_EXEC ? msg[0] : 0;

		waitpid(pid, NULL, 0);
		failf(steps[step], step == STEP_CHDIR ? c->dir : step == STEP_EXEC ? c->path : NULL, msg[1]);
	}
	return pid;
}

/* The signals an init catches: those the launcher forwards, and for an
 * exec's starter also those `nsrun net exec` passes on. */
static const int forwarded[] = {SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGINT, SIGQUIT};
static const int exec_forwarded[] = {SIGWINCH, SIGCONT, SIGTSTP, SIGTTIN, SIGTTOU, SIGALRM};

/* reap collects every child that has ended, and says whether the command
 * (pid) was one, with its exit code (128+N when signal N ended it). */
static int reap(pid_t pid, int *code)
{
	int ended = 0;

	for (;;) {
		int st;
		pid_t w = waitpid(-1, &st, WNOHANG);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return ended;
		if (w == pid) {
			ended = 1;
			*code = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
		}
	}
}

/*
 * read_config reads the configuration from CONFIG_FD to its end: NUL-ended
 * fields, path, dir, uid, gid, the number of the command's words, the
 * words, then the command's environment. The fields point into one buffer
 * that lives as long as the process.
 */
static int read_config(struct command *c)
{
	size_t size = 4096, len = 0, nf = 0, f = 0, argc;
	char *buf = malloc(size), **fields;

	if (buf == NULL)
		return -1;
	for (;;) {
		ssize_t n;

		if (len == size) {
			char *b = size < (64u << 20) ? realloc(buf, size *= 2) : NULL;
			if (b == NULL)
				return -1;
			buf = b;
		}
		n = read(CONFIG_FD, buf + len, size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(CONFIG_FD);
	for (size_t i = 0; i < len; i++)
		nf += buf[i] == '\0';
	errno = EINVAL;
	if (len == 0 || buf[len - 1] != '\0' || nf < 6)
		return -1;
	/* Two NULL-ended lists: argv, then envp. */
	if ((fields = calloc(nf + 2, sizeof *fields)) == NULL)
		return -1;
	for (size_t i = 0; i < len; i += strlen(buf + i) + 1)
		fields[f++] = buf + i;
	argc = strtoul(fields[4], NULL, 10);
	if (argc < 1 || argc > nf - 5)
		return -1;
	c->path = fields[0];
	c->dir = fields[1];
	c->uid = atoi(fields[2]);
	c->gid = atoi(fields[3]);
	/* fields: 5 header fields, argc words, the environment, NULL, NULL:
	 * the environment moves up by one, after argv's NULL. */
	memmove(fields + 5 + argc + 1, fields + 5 + argc, (nf - 5 - argc) * sizeof *fields);
	fields[5 + argc] = NULL;
	c->argv = fields + 5;
	c->envp = fields + 5 + argc + 1;
	return 0;
}

/* caught_set is the set of signals an init with flags takes. */
static sigset_t caught_set(int flags)
{
	sigset_t caught;

	sigemptyset(&caught);
	for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		sigaddset(&caught, forwarded[i]);
	sigaddset(&caught, SIGCHLD);
	if (flags & NSRUN_INIT_EXEC)
		for (size_t i = 0; i < sizeof exec_forwarded / sizeof exec_forwarded[0]; i++)
			sigaddset(&caught, exec_forwarded[i]);
	return caught;
}

static void run_init(int flags, const sigset_t *caught, const sigset_t *cmd_mask) __attribute__((noreturn));

/*
 * nsrun_node_init is the whole life of an exec'd node's init. argv: [name,
 * marker, flags] (NSRUN_INIT_*, in decimal); fd 3 holds the rest of its
 * configuration (read_config), fd 4 is the status pipe. It mounts the
 * node's /proc (unless NSRUN_INIT_EXEC or NSRUN_INIT_SHARED_PROC), starts
 * the command, reports its pid, passes signals on, reaps every process of
 * the node that ends (orphans are re-parented to it), and exits with the
 * command's exit code once the command has ended. As PID 1 of the node's
 * pid namespace, its exit kills every other process of the node: a node
 * is its command. Signals are blocked from its first instruction and
 * taken with sigwaitinfo: one that comes before the command runs waits,
 * and reaches the command once it does. (The kernel drops a signal to
 * PID 1 of a pid namespace while its action is the default, but never a
 * blocked one.) envp is unused: the command's environment is in the
 * configuration, as for an init the spawner forks.
 */
void nsrun_node_init(int argc, char **argv, char **envp)
{
	int flags = argc > 2 ? atoi(argv[2]) : 0;
	sigset_t caught = caught_set(flags), old;

	(void)envp;
	sigprocmask(SIG_BLOCK, &caught, &old);
	/* Where the kernel started this binary setuid, setgid or with file
	 * capabilities, its argv and fds are the caller's, not nsrun's. */
	if (getauxval(AT_SECURE)) {
		static const char msg[] = "nsrun: refusing to act as a node's init: the binary is setuid, setgid or has file capabilities\n";
		if (write(2, msg, sizeof msg - 1) < 0) {
		}
		_exit(NSRUN_EXIT_SETUP_FAILED);
	}
	run_init(flags, &caught, &old);
}

void nsrun_node_init_forked(int flags, const sigset_t *cmd_mask)
{
	sigset_t caught = caught_set(flags);

	sigprocmask(SIG_SETMASK, &caught, NULL);
	run_init(flags, &caught, cmd_mask);
}

void nsrun_node_init_fail(const char *what, int err) { failf(what, NULL, err); }

/* run_init is an init's life from its configuration on: the signals in
 * caught are blocked; the command starts with cmd_mask. */
static void run_init(int flags, const sigset_t *caught, const sigset_t *cmd_mask)
{
	struct command c;
	int terminal, code = NSRUN_EXIT_SETUP_FAILED;
	int missed[16];
	size_t nmissed = 0;
	pid_t pid;

	if (fcntl(STATUS_FD, F_SETFD, FD_CLOEXEC) < 0 || fcntl(CONFIG_FD, F_SETFD, FD_CLOEXEC) < 0)
		_exit(NSRUN_EXIT_SETUP_FAILED);
	if (read_config(&c) < 0)
		failf("node init: read its configuration", NULL, errno);
	c.flags = flags;
	/* A node's init is PID 1 of the node's own pid and mount namespaces;
	 * anywhere else its /proc mount would cover the caller's. */
	if (!(c.flags & NSRUN_INIT_EXEC) && getpid() != 1) {
		report(0, "node init: not PID 1 of a pid namespace of its own");
		_exit(NSRUN_EXIT_SETUP_FAILED);
	}
	if (!(c.flags & (NSRUN_INIT_EXEC | NSRUN_INIT_SHARED_PROC)) &&
	    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		failf("node init: mount /proc of the node's pid namespace", NULL, errno);
	/* ps shows it by this name (it was started as /proc/self/exe, or
	 * forked from the supervisor). */
	prctl(PR_SET_NAME, (c.flags & NSRUN_INIT_EXEC) ? "nsrun-exec" : "nsrun-init", 0, 0, 0);
	if (!(c.flags & NSRUN_INIT_ALL_CAPS) && drop_inherited_caps() < 0)
		failf("node init: drop the inherited capabilities", NULL, errno);
	/* Signals that came before the command: it would have had them, from
	 * the terminal or from here, had it run; it gets them once it runs
	 * (taken off the queue, or the terminal case below would drop them). */
	{
		sigset_t early = *caught;
		struct timespec now = {0, 0};
		int sig;

		sigdelset(&early, SIGCHLD);
		while (nmissed < sizeof missed / sizeof missed[0] &&
		       (sig = sigtimedwait(&early, NULL, &now)) > 0)
			missed[nmissed++] = sig;
	}
	pid = start(&c, cmd_mask);
	report(pid, NULL);
	for (size_t i = 0; i < nmissed; i++)
		kill((c.flags & NSRUN_INIT_SETPGID) ? -pid : pid, missed[i]);
	/* SIGINT and SIGQUIT at a terminal: the command has them already. */
	terminal = (c.flags & NSRUN_INIT_TERMINAL) && !(c.flags & NSRUN_INIT_EXEC);
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(caught, &si);

		if (sig < 0)
			continue; /* EINTR */
		if (sig == SIGCHLD) {
			if (reap(pid, &code))
				_exit(code);
			continue;
		}
		if (terminal && (sig == SIGINT || sig == SIGQUIT))
			continue;
		kill((c.flags & NSRUN_INIT_SETPGID) ? -pid : pid, sig);
	}
}
