# make test: what CI runs (.ci/run). It installs what it needs, then checks
# formatting, vets, and runs every test with the race detector.
GO ?= go

.PHONY: test deps fmt-check vet cross unit bench-smoke bench bench-peers fuzz soak ws-soak demo

test: deps fmt-check vet cross unit bench-smoke

# The real supervisors the integration tests run under, what boots systemd
# in a container, python3 for the non-Go worker under "baton run", and
# podman with runc for "baton run" as PID 1 of a container
# (integration/containers; runc, since Debian 12's crun refuses this
# machine kind's hybrid cgroups). Installed when missing (as root, from
# Debian).
DEB_PACKAGES = daemontools runit s6 systemd-container debootstrap python3 podman runc

# Debian packages, then Go modules for both modules.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "make test: run as root to install$$missing, or install them yourself"; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null || exit 1; \
	fi
	$(GO) mod download
	cd bench && $(GO) mod download
	cd examples/websocket && $(GO) mod download
	cd grpcdrain && $(GO) mod download
	cd examples/grpc && $(GO) mod download
	cd quicroute && $(GO) mod download
	cd examples/http3 && $(GO) mod download

fmt-check:
	@out=$$(gofmt -l . ); if [ -n "$$out" ]; then echo "gofmt: not formatted:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	cd bench && $(GO) vet ./...
	cd examples/websocket && $(GO) vet ./...
	cd grpcdrain && $(GO) vet ./...
	cd examples/grpc && $(GO) vet ./...
	cd quicroute && $(GO) vet ./...
	cd examples/http3 && $(GO) vet ./...

# The package must build (and New return ErrNotSupported) everywhere, and
# work on macOS.
cross:
	GOOS=darwin $(GO) vet ./...
	GOOS=windows $(GO) build ./...
	GOOS=freebsd $(GO) build ./...
	cd examples/websocket && GOOS=darwin $(GO) vet ./...
	cd grpcdrain && GOOS=darwin $(GO) vet ./...
	cd examples/grpc && GOOS=darwin $(GO) vet ./...
	cd quicroute && GOOS=darwin $(GO) vet ./...
	cd examples/http3 && GOOS=darwin $(GO) vet ./...

# Every test, fuzz seed corpora included, with the race detector. The
# integration tests (real daemontools, runit, s6, systemd 252 and 257 booted
# in systemd-nspawn, podman) must run: BATON_REQUIRE_INTEGRATION=1 turns a missing
# prerequisite into a failure instead of a skip.
unit:
	BATON_REQUIRE_INTEGRATION=1 $(GO) test -race -count=1 -timeout 15m ./...
	cd examples/websocket && $(GO) test -race -count=1 -timeout 5m ./...
	cd grpcdrain && $(GO) test -race -count=1 -timeout 5m ./...
	cd examples/grpc && $(GO) test -race -count=1 -timeout 5m ./...
	cd quicroute && $(GO) test -race -count=1 -timeout 5m ./...
	cd examples/http3 && $(GO) test -race -count=1 -timeout 5m ./...

# The WebSocket example's long run: WS_CONNS connections exchanging
# messages through WS_UPGRADES upgrades, not one lost (make test runs
# 200 through 10, with the race detector). About a minute on 2 cores.
WS_CONNS ?= 1000
WS_UPGRADES ?= 50
ws-soak:
	cd examples/websocket && BATON_WS_CONNS=$(WS_CONNS) BATON_WS_UPGRADES=$(WS_UPGRADES) $(GO) test -run '^TestUpgradesKeepWebSockets$$' -count=1 -timeout 30m -v ./server

# The benchmarks run once each, so they cannot rot.
bench-smoke:
	$(GO) test -run '^$$' -bench . -benchtime 2x -timeout 5m .
	cd bench && $(GO) test -run '^$$' -bench . -benchtime 2x -timeout 5m .
	cd bench && $(GO) test -race -count=1 ./cmd/...

# Handoff time and idle cost, baton alone.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 20x -count 5 .

# baton against cloudflare/tableflip, side by side in one run.
bench-peers:
	cd bench && $(GO) test -run '^$$' -bench . -benchtime 20x -count 5 .

# docs/RESULTS.md, regenerated from one run of the benchmarks: baton against
# tableflip and an SO_REUSEPORT re-bind, under load, handoff time by socket
# count, latency around upgrades, memory; with the machine and the commands.
# About 7 minutes on 2 cores; see bench/README.md.
.PHONY: results
results:
	cd bench && $(GO) run ./cmd/results -o ../docs/RESULTS.md

# Long fuzzing, FUZZTIME per target (not part of make test; the seeds are),
# of every Fuzz function in every package of the module and of quicroute
# (a module of its own), one at a time.
# -fuzzminimizetime bounds minimisation, which can otherwise stall a run
# (golang/go#48820) and hide a failure. FUZZFLAGS adds flags, such as
# -parallel 1 on a shared machine.
FUZZTIME ?= 2m
FUZZFLAGS ?=
fuzz:
	@for d in $$($(GO) list -f '{{.Dir}}' ./...) $$(cd quicroute && $(GO) list -f '{{.Dir}}' ./...); do \
		for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$d/*_test.go 2>/dev/null | cut -c6-); do \
			echo "fuzz: $$t in $$d"; \
			(cd $$d && $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10s $(FUZZFLAGS) .) || exit 1; done; done

# The demo server upgraded SOAK_UPGRADES times in a row under load (fresh,
# keep-alive and pausing clients): zero failed requests, zero reconnects,
# descriptors and RSS of each new generation flat, no process left; then
# ws-soak, 1,000 WebSockets through 50 upgrades (not part of make test,
# whose unit runs do 20 and 10 upgrades).
SOAK_UPGRADES ?= 1000
soak:
	BATON_SOAK_UPGRADES=$(SOAK_UPGRADES) $(GO) test -run '^TestSoak$$' -count=1 -timeout 3h -v ./internal/soak
	$(MAKE) ws-soak

demo:
	$(GO) run ./cmd/baton demo
