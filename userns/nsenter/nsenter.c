// Joins the user and network namespaces named by _NSRUN_JOIN_USERNS and
// _NSRUN_JOIN_NETNS before the Go runtime starts any thread. See nsenter.go.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what, const char *path)
{
	fprintf(stderr,
		"nsrun: cannot join the gateway namespaces of nsrun-helper: %s %s: %s\n"
		"nsrun: run `sudo nsrun-helper install` again, or pass --isolated\n",
		what, path, strerror(errno));
	_exit(125);
}

void nsrun_nsenter(void)
{
	const char *user = getenv("_NSRUN_JOIN_USERNS");
	const char *net = getenv("_NSRUN_JOIN_NETNS");
	int ufd, nfd;

	if (user == NULL || net == NULL)
		return;
	ufd = open(user, O_RDONLY | O_CLOEXEC);
	if (ufd < 0)
		die("open", user);
	nfd = open(net, O_RDONLY | O_CLOEXEC);
	if (nfd < 0)
		die("open", net);
	if (setns(ufd, CLONE_NEWUSER) < 0)
		die("join user namespace", user);
	if (setns(nfd, CLONE_NEWNET) < 0)
		die("join network namespace", net);
	close(ufd);
	close(nfd);
}
