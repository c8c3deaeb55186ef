# Sigil. Every tool is pinned in go.mod (see tools.go) and run with `go run`.
GO ?= go
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable

.PHONY: run test test-postgres generate check-generated regen-check check-deps lint bench microbench load tidy-check conformance conformance-postgres

## run: start the server with its embedded defaults (127.0.0.1:8090, ./data)
run:
	$(GO) run ./cmd/sigil

## build: the sigil binary, with its version (git describe) for `sigil version`
.PHONY: build
build:
	$(GO) build -ldflags "-X main.version=$$(git describe --tags --always --dirty 2>/dev/null || echo devel)" -o sigil ./cmd/sigil

## static: sigil and sigil-conformance as static Linux binaries (SQLite linked in) in dist/linux-$(ARCH)/;
##         ARCH=arm64 cross-compiles (Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
## dist: release archives dist/sigil-VERSION-linux-{amd64,arm64}.tar.gz (both binaries, README, deploy/,
##       the runner's start scripts) and dist/SHA256SUMS; VERSION is git describe unless set
## dist-check: the amd64 archive on a clean root (nothing but the unpacked archive), the arm64 one under qemu
ARCH ?= $(shell $(GO) env GOARCH)
.PHONY: static dist dist-check nocgo-check
static:
	GO='$(GO)' ./.ci/dist static $(ARCH)
dist:
	GO='$(GO)' ./.ci/dist
dist-check: dist
	./.ci/dist-check

## image: the container image sigil:VERSION (deploy/image: the static binaries FROM scratch, user 65532, /data volume)
##        with podman; image-check also runs it (a lookup, a restart with the data kept, a mounted configuration)
.PHONY: image image-check
image:
	./.ci/image build
image-check:
	./.ci/image check

## nocgo-check: CGO_ENABLED=0 builds everything; such a sigil refuses SQLite with a clear error and serves PostgreSQL
nocgo-check:
	POSTGRES_URL='$(POSTGRES_URL)' ./.ci/nocgo

## test: the test suite (SQLite, in-process SMTP, real keys)
test:
	$(GO) test ./...

## test-postgres: the store tests again on PostgreSQL, the PostgreSQL outage test (a TCP proxy cuts the database off), the crash test on PostgreSQL
test-postgres:
	SIGIL_TEST_POSTGRES_URL='$(POSTGRES_URL)' $(GO) test -count=1 ./store/...
	SIGIL_TEST_POSTGRES_URL='$(POSTGRES_URL)' $(GO) test -count=1 -run '^TestPostgresOutage$$' ./handlers/
	SIGIL_TEST_POSTGRES_URL='$(POSTGRES_URL)' $(GO) test -count=1 -run '^TestCrashLosesNoAcknowledgedBindPostgres$$' ./cmd/sigil/

## fuzz: every operation's body through the whole stack, briefly (FUZZTIME=30s): never a 5xx or a panic;
##       then the lookup body decoder against encoding/json, and the schema walker against kin-openapi
FUZZTIME ?= 30s
.PHONY: fuzz
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzOperations$$' -fuzztime $(FUZZTIME) ./handlers/
	$(GO) test -run '^$$' -fuzz '^FuzzHandDecoder$$' -fuzztime $(FUZZTIME) ./handlers/
	$(GO) test -run '^$$' -fuzz '^FuzzFastSchema$$' -fuzztime $(FUZZTIME) ./spec/validate/

## conformance: sigil-conformance against a freshly started sigil on SQLite (prints the table;
##              CONFORMANCE_FLAGS='-junit out.xml -only PATTERN -v' are passed on)
conformance:
	POSTGRES_URL='$(POSTGRES_URL)' ./.ci/conformance sqlite $(CONFORMANCE_FLAGS)

## conformance-postgres: the same on a new PostgreSQL database (dropped afterwards)
conformance-postgres:
	POSTGRES_URL='$(POSTGRES_URL)' ./.ci/conformance postgres $(CONFORMANCE_FLAGS)

## clients: real client SDKs from npm (matrix-js-sdk, matrix-bot-sdk; .ci/clients/package-lock.json) drive their
##          identity-server calls, as Element's Discovery settings and invite dialog make them, against the
##          sigil binary (node --test; the table of calls goes to .ci/out/clients.md; see .ci/clients/README.md)
.PHONY: clients
clients:
	./.ci/clients/run

## conformance-strict: the same with Sigil's stricter choices (-profile strict)
## conformance-expiry: the expiry cases, Sigil started with 2s token and session lifetimes
## mutants: plants one-line bugs in a copy of Sigil; fails unless sigil-conformance catches each
.PHONY: conformance-strict conformance-expiry mutants
conformance-strict:
	POSTGRES_URL='$(POSTGRES_URL)' ./.ci/conformance sqlite -profile strict $(CONFORMANCE_FLAGS)
conformance-expiry:
	POSTGRES_URL='$(POSTGRES_URL)' ./.ci/conformance sqlite -short-lifetimes 2s $(CONFORMANCE_FLAGS)
mutants:
	./.ci/mutants

## generate: spec/*.yaml -> gen/openapi.json -> gen/sigil.gen.go
generate:
	cd gen && $(GO) generate ./...

## check-generated: fail if `make generate` would change anything
check-generated: generate
	@git diff --exit-code --stat -- gen/ || (echo "generated code is stale: run 'make generate' and commit gen/"; exit 1)
	@test -z "$$(git ls-files --others --exclude-standard gen/)" || (echo "untracked generated files in gen/"; exit 1)

## regen-check: regenerate a copy of the project with an extra upstream-style Swagger tree in a
##              subfolder of spec/; its operation must reach the document and the compiler name its method
regen-check:
	@./.ci/regen-check

## check-deps: the layout's dependency rules (README, "How it is built"), on `go list`
check-deps:
	@./.ci/check-deps

## lint: gofmt, go vet, go.mod tidy, dependency rules
lint: check-deps
	@test -z "$$(gofmt -l cmd gen handlers spec store tools.go)" || (gofmt -l cmd gen handlers spec store tools.go; echo "gofmt needed"; exit 1)
	$(GO) vet ./...
	$(GO) mod tidy -diff

## bench: micro-benchmarks, then the load benchmark (prints the tables; about 6 minutes)
bench: microbench load

## microbench: go test -bench for canonical JSON, signing, hashing, validation, the store and the stack
microbench:
	$(GO) test -run '^$$' -bench . -benchmem ./handlers/signing/ ./spec/validate/ ./handlers/

## bench-scaling: the stack's own speed-up from one core to two (BenchmarkStackParallel, -cpu 1,2: ns/op at 1 over
##                ns/op at 2), without the network or a load generator sharing the cores, with sigil's GOGC (300);
##                needs a quiet machine
.PHONY: bench-scaling
bench-scaling:
	GOGC=300 $(GO) test -run '^$$' -bench '^BenchmarkStackParallel$$' -benchtime 3s -cpu 1,2 ./handlers/

## load: the load benchmark (cmd/sigil-load, see its README): N=10k and 1M bindings, SQLite and PostgreSQL, every
##       workload, beside a bare net/http server on the same core, and on 2 cores (LOAD_FLAGS='-out load.md' to also
##       write the tables to a file)
.PHONY: load load-quick
load:
	SIGIL_LOAD_POSTGRES_URL='$(POSTGRES_URL)' $(GO) run ./cmd/sigil-load $(LOAD_FLAGS)

## soak: 7 minutes of load (seeding 1M takes 1-2 min on a quiet machine: under 10 in all) with 1,000,000 bindings, mixed load from 5,000 client addresses plus a flooding client;
##       prints RSS, heap, goroutines and DB size every 30 s; fails when peak RSS >= 200 MB, RSS is not flat
##       (last vs first minute within 10 %) or the database keeps growing
.PHONY: soak soak-quick
soak:
	$(GO) run ./cmd/sigil-load -soak 7m $(SOAK_FLAGS)

## soak-quick: the same for 2 minutes with 100,000 bindings, 15 s lifetimes, a sample every 10 s (in .ci/run)
soak-quick:
	$(GO) run ./cmd/sigil-load -soak 2m -soak-n 100000 -soak-interval 10s -soak-clients 500 -soak-lifetime 15s $(SOAK_FLAGS)

## soak-onbind: one homeserver that never answers onbind calls, four healthy ones; fails if any healthy
##              invite arrives more than 1 s after its bind (about 11 s; also part of make test)
.PHONY: soak-onbind
soak-onbind:
	$(GO) test -count=1 -v -run '^TestOnBindHangingHomeserverDelaysNoOther$$' ./cmd/sigil/

## load-quick: the load benchmark on SQLite with 10k bindings, 3 s per workload
load-quick:
	$(GO) run ./cmd/sigil-load -n 10000 -db sqlite -duration 3s -warmup 1s $(LOAD_FLAGS)

## load-sydent: bulk and v2 lookups on Sigil and on Sydent (matrix-org's Python identity server), same core, same
##              10k bindings and requests (SQLite); reports Sigil / Sydent per core. Manual, not in .ci/run: needs
##              SYDENT_SRC=a Sydent checkout at a37d60b (2.6.1; git clone https://github.com/matrix-org/sydent &&
##              git -C sydent checkout a37d60b) and installs Debian 12's python3 packages for it (apt-get; root or sudo)
SYDENT_SRC ?=
SYDENT_PYTHON ?= /usr/bin/python3
SYDENT_APT := python3-twisted python3-signedjson python3-matrix-common python3-nacl python3-phonenumbers \
	python3-netaddr python3-sortedcontainers python3-prometheus-client python3-service-identity \
	python3-unpaddedbase64 python3-jinja2 python3-yaml python3-attr python3-openssl python3-typing-extensions \
	python3-zope.interface
SYDENT_IMPORTS := twisted, signedjson, matrix_common, nacl, phonenumbers, netaddr, sortedcontainers, prometheus_client, \
	service_identity, unpaddedbase64, jinja2, yaml, attr, OpenSSL, typing_extensions, zope.interface
.PHONY: load-sydent sydent-deps
load-sydent: sydent-deps
	@test -n '$(SYDENT_SRC)' && test -f '$(SYDENT_SRC)/sydent/sydent.py' || { \
	  echo 'load-sydent: SYDENT_SRC must be a Sydent checkout at a37d60b (Sydent 2.6.1):'; \
	  echo '  git clone https://github.com/matrix-org/sydent && git -C sydent checkout a37d60b'; \
	  echo '  make load-sydent SYDENT_SRC=sydent'; exit 2; }
	$(GO) run ./cmd/sigil-load -n 10000 -db sqlite -workloads bulk_lookup_v1,lookup_v2 -duration 5s -warmup 1s -scale-cpus '' \
	  -sydent '$(SYDENT_SRC)' -sydent-python '$(SYDENT_PYTHON)' $(LOAD_FLAGS)

## sydent-deps: Debian's python3 packages Sydent imports at start (apt-get, only when one is missing)
sydent-deps:
	@$(SYDENT_PYTHON) -c 'import $(SYDENT_IMPORTS)' 2>/dev/null || { \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y --no-install-recommends $(SYDENT_APT); }
	@$(SYDENT_PYTHON) -c 'import $(SYDENT_IMPORTS)'
