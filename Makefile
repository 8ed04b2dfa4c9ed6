# stagegate — see README.md. Two commands set everything up on a fresh
# machine with only Go: `make run` and `make test`.

GO       ?= go
BIN      := bin
TOOLS    := k8s opa cosign registry crane crds chromium
GOTEST   ?= $(GO) test -count=1
TEST_TIMEOUT ?= 45m
# Each fuzz target runs this long in `make test`, and FUZZ_SECONDS in `make fuzz`.
FUZZ_SECONDS_TEST ?= 5
FUZZ_SECONDS ?= 120

.PHONY: all build run test unit policy-test e2e bench fuzz soak tools lint fmt clean

all: build

build:
	$(GO) build -trimpath -o $(BIN)/stagegate ./cmd/stagegate

## run: serve on embedded defaults (bbolt ledger in data/, generated keys,
## certificates and token, an embedded registry with sample images).
run: build
	$(BIN)/stagegate serve --dev

## tools: build the pinned real parts the tests use into bin/ (cached by version).
tools:
	hack/tools.sh $(TOOLS)

## test: vet, policy tests with opa, unit and end-to-end tests (a real
## kube-apiserver, registry and cosign), then a short run of every fuzz target.
test: tools
	$(GO) vet ./...
	$(BIN)/opa test policies/
	$(GOTEST) -timeout $(TEST_TIMEOUT) ./...
	hack/fuzz.sh $(FUZZ_SECONDS_TEST) ./internal/...

policy-test: tools
	$(BIN)/opa test policies/ -v

unit:
	$(GOTEST) $$($(GO) list ./... | grep -v /test/e2e)

e2e: tools
	$(GOTEST) -timeout $(TEST_TIMEOUT) -v ./test/e2e/...

bench: tools
	$(GO) run ./bench

## fuzz: every fuzz target for FUZZ_SECONDS; crashers land in testdata/fuzz/.
fuzz:
	hack/fuzz.sh $(FUZZ_SECONDS) ./internal/...

## soak (not CI): 1000 crash/restart cycles of serve under promotion load,
## then 10 minutes of mixed load (admission at 500/s plus promotions) with
## zero errors and flat memory (BENCH_SOAK_DURATION=1m for a try), and a
## replica wiped at 10^5 entries rejoining through a snapshot.
soak: tools
	STAGEGATE_SOAK_CYCLES=1000 $(GOTEST) -timeout 2h -v -run Crash ./test/e2e/reliability/
	STAGEGATE_HA_CATCHUP_ENTRIES=100000 $(GOTEST) -timeout 1h -v -run TestEmptyDiskRejoinsThroughSnapshot ./test/e2e/ha/
	$(GO) run ./bench -soak

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)/stagegate
