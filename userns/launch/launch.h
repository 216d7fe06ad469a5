// What the launcher did before the Go runtime started; read by launch.go.
#ifndef NSRUN_LAUNCH_H
#define NSRUN_LAUNCH_H

#include <signal.h>

enum { NSRUN_KIND_NONE, NSRUN_KIND_RUN, NSRUN_KIND_UP };

/* The supervisor's parent-death signal: a real-time signal (SIGRTMIN+4 in
 * glibc) that glibc and Go leave alone, whose default action terminates. */
#define NSRUN_LAUNCHER_GONE 38

struct nsrun_launch {
	int kind;      /* NSRUN_KIND_*: what the command line asks for */
	int launched;  /* this process is the run's supervisor */
	int joined;    /* in the gateway's user namespace of nsrun-helper */
	int root;      /* --root: mapped as uid 0 */
	int terminal;  /* stdin is the caller's foreground terminal */
	int uid, gid;  /* the caller's, on the host */
	int nsrun_pid; /* the launcher's pid, as the caller sees it */
	int port_fd;   /* socket to ask the launcher for published ports */
	/* The supervisor's: the launcher's (the caller's) pid namespace,
	 * opened before the clone, -1 if /proc could not give it. A control
	 * client outside the run's pid namespace is the user on the host
	 * only when it shows this one (supervise.authorize). */
	int caller_pidns_fd;
	/* The lowest TCP port the launcher may bind in the caller's network
	 * namespace (net.ipv4.ip_unprivileged_port_start there; 0 for root
	 * outside the gateway), -1 when unknown. Read for `up` only. */
	int unpriv_port;
	/* The supervisor's end of the spawner's socket (spawner.c), -1 if
	 * there is no spawner: package guest then execs each node's init. */
	int spawner_fd;
	int spawner_pid; /* its pid, 0 if none */
	const char *err_step; /* launching failed at this step ... */
	int err_errno;        /* ... with this errno */
};

extern struct nsrun_launch nsrun_launch_state;

/* Set to 1, before the launcher's constructor runs, by a binary that is
 * not nsrun but can serve as nsrun (a test binary importing nstest): the
 * launcher then acts only when NSRUN_AS_NSRUN is set in the environment. */
extern int nsrun_launch_on_request;
#define NSRUN_AS_NSRUN "NSRUN_AS_NSRUN"
/* argv[1] of a node's init: nsrun run again (package guest), which runs
 * nsrun_node_init (nodeinit.c) and no Go. */
#define NSRUN_NODE_INIT_MARKER "__nsrun_node_init"

/* argv[2] of a node's init: these flags, in decimal. */
enum {
	NSRUN_INIT_MAP_USER = 1,    /* the command in a user namespace mapping uid, gid to 0 */
	NSRUN_INIT_ALL_CAPS = 2,    /* the command keeps every capability (ambient) */
	NSRUN_INIT_SETPGID = 4,     /* the command in a process group of its own */
	NSRUN_INIT_TERMINAL = 8,    /* SIGINT, SIGQUIT reach the command from a terminal */
	NSRUN_INIT_EXEC = 16,       /* an exec's starter: no /proc, passes every signal on */
	NSRUN_INIT_SHARED_PROC = 32 /* keep the run's /proc */
};

/* The exit code of a run, or a node's init, that could not be set up
 * (exitcode.SetupFailed). */
#define NSRUN_EXIT_SETUP_FAILED 125

void nsrun_node_init(int argc, char **argv, char **envp) __attribute__((noreturn));

/* nsrun_node_init_forked is a node's init forked by the spawner, not
 * exec'd: flags as in argv[2], its configuration on fd 3 and its status
 * pipe on fd 4 as for nsrun_node_init; the command starts with signal
 * mask cmd_mask. The caller has blocked the signals the init takes. */
void nsrun_node_init_forked(int flags, const sigset_t *cmd_mask) __attribute__((noreturn));

/* nsrun_node_init_fail reports on fd 4 that a node's init could not be
 * set up (what, and errno err) and exits with NSRUN_EXIT_SETUP_FAILED. */
void nsrun_node_init_fail(const char *what, int err) __attribute__((noreturn));

/*
 * The spawner forks each node's init (spawner.c). A request is one
 * message on its socket: this header, and SCM_RIGHTS with the
 * NSRUN_SPAWN_NFDS descriptors in the order of enum nsrun_spawn_fd. The
 * spawner writes the init's pid (an int, in the run's pid namespace) or
 * -errno on the reply descriptor, and closes it.
 */
struct nsrun_spawn_req {
	int flags;   /* NSRUN_INIT_*: the init's flags */
	int setpgid; /* the init in a process group of its own */
};

enum nsrun_spawn_fd {
	NSRUN_SPAWN_REPLY,  /* write end of the reply pipe */
	NSRUN_SPAWN_NET,    /* the node's network namespace */
	NSRUN_SPAWN_UTS,    /* its UTS namespace */
	NSRUN_SPAWN_MNT,    /* its mount namespace */
	NSRUN_SPAWN_STDIN,  /* the init's fds 0, 1, 2 */
	NSRUN_SPAWN_STDOUT,
	NSRUN_SPAWN_STDERR,
	NSRUN_SPAWN_CONFIG, /* read end of the configuration pipe (fd 3) */
	NSRUN_SPAWN_STATUS, /* write end of the status pipe (fd 4) */
	NSRUN_SPAWN_NFDS
};

/* nsrun_spawner_start forks the spawner, in the supervisor before the Go
 * runtime starts (argv is the process's, whose words the spawner and the
 * inits it forks overwrite with their names for ps); it returns the
 * supervisor's end of its socket, or -1, and sets *pid to the spawner's. */
int nsrun_spawner_start(int argc, char **argv, int *pid);

/* nsrun_write_id_maps maps in_uid to out_uid and in_gid to out_gid (one
 * id each) in the user namespace of pid, setgroups denied; it returns
 * NULL, or the file of /proc/PID it could not write (errno says why). */
const char *nsrun_write_id_maps(pid_t pid, int in_uid, int out_uid, int in_gid, int out_gid);

int nsrun_launch_decide(int argc, char **argv, int *root, int *isolated);

/* The last signal the launcher forwards (SIGINT, SIGQUIT, SIGTERM, SIGHUP,
 * SIGUSR1, SIGUSR2) that the supervisor got before the Go runtime caught
 * signals itself; 0 if none. */
int nsrun_launch_early_signal(void);

/* A request of the supervisor to the launcher for a published port: a
 * TCP socket listening on addr:port in the caller's network namespace,
 * or a UDP socket bound there. Family 0 is no port but a word of the
 * supervisor's (no reply), its kind in port: NSRUN_WORD_LISTENING, its Go
 * code listens for signals now; NSRUN_WORD_EXITING, it is about to exit
 * with the code in addr[0] (see wait_supervisor). */
enum { NSRUN_WORD_LISTENING = 0, NSRUN_WORD_EXITING = 1 };

struct nsrun_port_req {
	unsigned char family; /* 4 or 6; 0: a word (port says which) */
	unsigned char udp;    /* 1: UDP, 0: TCP */
	unsigned short port;       /* host order */
	unsigned char addr[16];    /* 4 bytes for IPv4 */
};

#endif
