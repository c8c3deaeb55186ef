# Sigil. Every tool is pinned in go.mod (see tools.go) and run with `go run`.
GO ?= go
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable

.PHONY: run test test-postgres generate check-generated lint bench load tidy-check

## run: start the server with its embedded defaults (127.0.0.1:8090, ./data)
run:
	$(GO) run ./cmd/sigil

## test: the test suite (SQLite, in-process SMTP, real keys)
test:
	$(GO) test ./...

## test-postgres: the store tests again on PostgreSQL
test-postgres:
	SIGIL_TEST_POSTGRES_URL='$(POSTGRES_URL)' $(GO) test -count=1 ./store/...

## generate: spec/*.yaml -> gen/openapi.json -> gen/sigil.gen.go
generate:
	cd gen && $(GO) generate ./...

## check-generated: fail if `make generate` would change anything
check-generated: generate
	@git diff --exit-code --stat -- gen/ || (echo "generated code is stale: run 'make generate' and commit gen/"; exit 1)
	@test -z "$$(git ls-files --others --exclude-standard gen/)" || (echo "untracked generated files in gen/"; exit 1)

## lint: gofmt, go vet, go.mod tidy
lint:
	@test -z "$$(gofmt -l cmd gen handlers spec store tools.go)" || (gofmt -l cmd gen handlers spec store tools.go; echo "gofmt needed"; exit 1)
	$(GO) vet ./...
	$(GO) mod tidy -diff

## bench: micro-benchmarks
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./handlers/signing/ ./store/ ./spec/validate/
