# RTM developer entry points. `make run` and `make test` are the two the
# README promises; keep both working at every commit.
GO        ?= go
PKGS      := ./...
# The race detector multiplies the cost of Pebble, sarama and kfake; `make
# test-race` runs it on the packages whose concurrency is our own code (CI
# runs it after make test). Recursive `=`: listed only when used.
RACE_PKGS  = $(shell $(GO) list ./topics/... ./config/... ./processors/... ./rules/...)

# The fault-injection suite over separate processes (test/chaos): the reduced
# schedule by default, FULL=1 for the full one.
chaos:
	$(GO) run ./test/chaos $(if $(FULL),-full)

# The losses the first multi-process runs found, reproduced one at a time
# over 3,000 members (each must now end with every member reached once).
chaos-repro:
	$(GO) build -o bin/chaos ./test/chaos
	for s in broker sigterm line; do ./bin/chaos -scenario $$s || exit 1; done

.PHONY: test-browser test-race test-deploy fuzz chaos chaos-repro bench-ops run test bench bench-json bench-recovery bench-audience bench-grule lint build clean

build:
	$(GO) build -o bin/rtm ./cmd/rtm

run: build
	./bin/rtm dev --replication 1

# Every test once, without the race detector. Vet is `make lint`, fuzzing
# `make fuzz` and the race detector `make test-race` (CI runs all three):
# each compiles every dependency again (vet, fuzz or race instrumentation),
# which is most of what a fresh clone's first `make test` used to spend.
# Most of what is left is compiling and linking: -vet=off leaves vet to
# make lint, and the test binaries are linked without DWARF (-s -w; stack
# traces do not need it).
test:
	$(GO) test -count=1 -timeout 5m -vet=off -ldflags='-s -w' $(PKGS)

# The packages whose concurrency is our own code, under the race detector,
# the end-to-end pipeline test included.
test-race:
	$(GO) test -count=1 -timeout 10m -race $(RACE_PKGS)

# The compose file and Kubernetes manifests checked against the code
# (compose-go, k8s.io/api: build tag deploy, so that make test does not
# compile them; CI runs this).
test-deploy:
	$(GO) test -count=1 -tags deploy -run '^Test(ComposeFile|SchemaProblems|ImageFiles|DecodeStrictRefusesUnknownFields|KubernetesManifests)$$' ./cmd/rtm

# The web console driven in headless Chromium against rtm dev (chromedp:
# build tag browser, so that make test does not compile it; needs
# Debian's chromium, which .ci/run installs). RTM_CONSOLE_SCREENSHOTS=DIR
# also writes its screenshots there: docs/console.png is 03-upload-error.png
# (with fonts-noto-cjk installed, so the example's Japanese shows).
test-browser:
	$(GO) test -count=1 -timeout 5m -tags browser -run '^TestConsoleInBrowser$$' ./cmd/rtm

# Every fuzz target of the repository (func FuzzX in a _test.go file), one
# after the other for FUZZTIME each: `make fuzz FUZZTIME=5m` for a long
# run. Minimising a new input is capped, so that a big seed (a workbook)
# does not spend the time budget on it. A failure leaves the input under
# the package's testdata/fuzz (commit it as a regression seed).
FUZZTIME ?= 30s
fuzz:
	@for f in $$(git ls-files '*_test.go' | xargs grep -l '^func Fuzz'); do \
	  for n in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
	    echo "fuzz $$n ($$(dirname $$f), $(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$n$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./$$(dirname $$f) >/tmp/rtm-fuzz.$$$$.log 2>&1 \
	      || { cat /tmp/rtm-fuzz.$$$$.log; rm -f /tmp/rtm-fuzz.$$$$.log; exit 1; }; \
	  done; \
	done; rm -f /tmp/rtm-fuzz.$$$$.log

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

bench-json:
	cd bench/jsoncodec && $(GO) test -run '^$$' -bench . -benchmem -count 5

bench-recovery:
	$(GO) run ./bench/recovery -records 1000000

# lint also vets the benchmark modules, which build against this one (a
# replace): that catches their go.mod left behind by a dependency change here.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags deploy ./cmd/rtm
	$(GO) vet -tags browser ./cmd/rtm
	cd bench/grule && $(GO) vet ./...
	cd bench/jsoncodec && $(GO) vet ./...

clean:
	rm -rf bin

bench-audience:
	$(GO) run ./bench/audience -members 1000000 -favouriters 100000

bench-grule:
	cd bench/grule && $(GO) test -run '^$$' -bench . -benchmem -count 5

# What operating RTM costs (restart, scale-out, node loss, rolling release)
# with every stage as its own process and 1M members: bench/ops.
bench-ops:
	$(GO) run ./bench/ops -members 1000000
