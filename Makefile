# nsrun — see README.md.
GO       ?= go
BIN      ?= bin
PREFIX   ?= /usr/local
MANDIR   ?= $(PREFIX)/share/man
# The commit printed after the version (internal/version.Semver).
COMMIT   ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
LDFLAGS   = -s -w -X github.com/nsrun/nsrun/internal/version.commit=$(COMMIT)
# nsrun is linked statically (its C launcher needs cgo): a run starts it
# once, and a static binary starts faster (no dynamic loader).
STATIC    = -tags netgo,osusergo -ldflags '$(LDFLAGS) -linkmode external -extldflags -static' 
SHELL    := /bin/bash

.PHONY: all build demo test unit e2e e2e-race lint bench install uninstall clean

all: build

build:
	$(GO) build -trimpath $(STATIC) -o $(BIN)/nsrun ./cmd/nsrun
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/nsrun-helper ./cmd/nsrun-helper
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/nsrun-capture ./cmd/nsrun-capture
	$(BIN)/nsrun help --man > $(BIN)/nsrun.1

# Build, then run a command as a host on a network of its own: no root.
demo: build
	$(BIN)/nsrun --ip 172.18.0.7 --hostname demo -- sh -c \
	  'echo "I am $$(hostname) ($$(id -un)), my network:"; ip -br addr; ip route'

# Unit tests (no root) and end-to-end tests (real namespaces; see README);
# package nstest is tested end to end, run as the test user (test/nstest_test.go).
test: lint unit e2e

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v -e /test -e /nstest)

e2e:
	$(GO) test -count=1 -v -timeout 20m ./test/

# The end-to-end tests against an nsrun built with -race (dynamically
# linked): any data race the supervisor or the CLI reports fails the test
# that ran. E2E_RACE_RUN narrows it (a go test -run pattern).
E2E_RACE_RUN ?= .
e2e-race:
	NSRUN_TEST_RACE=1 $(GO) test -count=1 -v -timeout 20m -run '$(E2E_RACE_RUN)' ./test/

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) test -count=1 ./internal/docpointers/    # every doc pointer and link resolves
	@for m in examples/*/go.mod; do (cd $$(dirname $$m) && $(GO) vet ./...) || exit 1; done
	@if command -v staticcheck >/dev/null; then staticcheck ./...; \
	  elif [ -x "$$($(GO) env GOPATH)/bin/staticcheck" ]; then "$$($(GO) env GOPATH)/bin/staticcheck" ./...; \
	  else echo "staticcheck not installed (go install honnef.co/go/tools/cmd/staticcheck@latest); skipped"; fi

bench: build
	bench/run.sh

# make install (as root: sudo make install) installs what make build (as
# you) built, and builds nothing: sudo's PATH has no Go, and a build as
# root would leave root-owned files in your tree.
install:
	@for f in nsrun nsrun-helper nsrun-capture nsrun.1; do \
	  test -f $(BIN)/$$f || { echo "make install: $(BIN)/$$f is not built; run make build first (as yourself, not with sudo), then sudo make install" >&2; exit 1; }; \
	done
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN)/nsrun $(DESTDIR)$(PREFIX)/bin/nsrun
	install -m 0755 $(BIN)/nsrun-helper $(DESTDIR)$(PREFIX)/bin/nsrun-helper
	install -m 0755 $(BIN)/nsrun-capture $(DESTDIR)$(PREFIX)/bin/nsrun-capture
	install -d $(DESTDIR)$(MANDIR)/man1
	install -m 0644 $(BIN)/nsrun.1 $(DESTDIR)$(MANDIR)/man1/nsrun.1
	@echo "installed nsrun, nsrun-helper and nsrun-capture in $(DESTDIR)$(PREFIX)/bin; to give your runs an uplink, run once: sudo $(DESTDIR)$(PREFIX)/bin/nsrun-helper install"

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/nsrun $(DESTDIR)$(PREFIX)/bin/nsrun-helper $(DESTDIR)$(PREFIX)/bin/nsrun-capture $(DESTDIR)$(MANDIR)/man1/nsrun.1

clean:
	rm -rf $(BIN) e2e.log
