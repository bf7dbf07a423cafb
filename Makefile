# smart-imaging: build, run a demo nginx, test.
#
#   make run    install what is missing, build nginx + the module, and start
#               nginx on 127.0.0.1:8080 serving the sample images
#   make stop   stop that nginx
#   make test   install what is missing and run every test (CI runs this),
#               including a build against Debian's nginx package
#   make system-nginx   build the module for Debian's /usr/sbin/nginx
#   make deb    the Debian package for that nginx, in target/deb/
#               (libnginx-mod-http-smart-imaging_<version>_<arch>.deb)
#   make bench  criterion benchmarks (decode + encode per megapixel)
#   make bench-corpus  bytes saved, scores and speed per client and kind of
#               image on ../shared/corpus (the numbers in docs/benchmarks.md)
#   make fuzz   the long fuzzing run (docs/testing.md#fuzzing); make
#               test-fuzz, a short one, is part of make test
#   make test-valgrind  nginx with the module under valgrind, requests
#               through every codec (part of make test)
#
# Everything is built once, in cargo's dev profile (codecs are compiled with
# opt-level 3 there, see Cargo.toml), and shared by run and test.

SHELL := /bin/bash
CARGO ?= cargo
PORT ?= 8080
ORIGIN_PORT ?= 8081
RUN_DIR := $(CURDIR)/.nginx-run
MODULE := target/debug/libngx_http_smart_imaging_module.so
# nginx-sys builds nginx inside its OUT_DIR; take the newest one.
NGINX = $(shell ls -t target/debug/build/nginx-sys-*/out/objs/nginx 2>/dev/null | head -n 1)

.PHONY: deps build run stop test test-rust test-t test-system-nginx test-deb test-source-tree system-nginx deb bench bench-corpus clean-run

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build

run: build stop
	@rm -rf $(RUN_DIR) && mkdir -p $(RUN_DIR)/{conf,logs,modules,html/images,html/shop}
	@cp $(MODULE) $(RUN_DIR)/modules/ngx_http_smart_imaging_module.so
	@cp samples/*.jpg samples/*.png $(RUN_DIR)/html/images/
	@cp samples/*.jpg samples/*.png $(RUN_DIR)/html/shop/
	@sed -e 's/@PORT@/$(PORT)/g' -e 's/@ORIGIN_PORT@/$(ORIGIN_PORT)/g' \
	    nginx-conf/demo.conf > $(RUN_DIR)/conf/nginx.conf
	@$(NGINX) -p $(RUN_DIR) -c conf/nginx.conf -e logs/error.log -t -q
	@$(NGINX) -p $(RUN_DIR) -c conf/nginx.conf -e logs/error.log
	@echo
	@echo "nginx with smart-imaging is running on http://127.0.0.1:$(PORT)/ (logs in $(RUN_DIR)/logs)"
	@echo "Samples: $$(cd samples && ls *.jpg *.png | tr '\n' ' ')"
	@echo "Try:"
	@echo "  curl -s -o /dev/null -D - -H 'Accept: image/webp' http://127.0.0.1:$(PORT)/images/$$(cd samples && ls *.jpg | head -n 1)"
	@echo "  curl -s -o /dev/null -D - http://127.0.0.1:$(PORT)/shop/$$(cd samples && ls *.png | head -n 1)   # proxied, no WebP in Accept"
	@echo "  curl -s -o /dev/null -D - -H 'Accept: image/webp' -H 'Sec-CH-DPR: 2' 'http://127.0.0.1:$(PORT)/responsive/$$(cd samples && ls *.jpg | head -n 1)?wid=200'   # 400 px wide"
	@echo "  curl -s http://127.0.0.1:$(PORT)/metrics   # the module's counters, for Prometheus (docs/metrics.md)"
	@echo "Stop it with: make stop"

stop:
	@if [ -f $(RUN_DIR)/logs/nginx.pid ]; then \
	    kill -QUIT $$(cat $(RUN_DIR)/logs/nginx.pid) 2>/dev/null || true; \
	    for i in $$(seq 50); do [ -f $(RUN_DIR)/logs/nginx.pid ] || break; sleep 0.1; done; \
	fi

test: deps test-rust test-t test-system-nginx test-deb test-source-tree test-bench-load test-fuzz test-valgrind

# `cargo test` alone does not produce the module (.so) the integration
# tests load: build it first.
test-rust: build
	$(CARGO) check --workspace --all-targets
	$(CARGO) test --workspace

test-t: build
	TEST_NGINX_BINARY=$(CURDIR)/$(NGINX) \
	TEST_NGINX_LOAD_MODULES=$(CURDIR)/$(MODULE) \
	TEST_NGINX_SAMPLES=$(CURDIR)/samples \
	prove -I t/lib -r t/

# Build against Debian's own nginx (installs nginx + nginx-dev; leaves no
# nginx service running) and check the module works in /usr/sbin/nginx.
system-nginx:
	scripts/build-for-system-nginx.sh

test-system-nginx: system-nginx
	tests/system_nginx.sh

# The Debian package (debian/, built like Debian's own libnginx-mod-*
# packages; the cargo build is system-nginx's, so after it this is quick),
# checked with lintian.
deb: system-nginx
	scripts/build-deb.sh

# Installs the package into the machine's nginx (apt-get install ./...deb),
# checks that its modules-enabled link loads the module into /usr/sbin/nginx
# and that it converts, then purges it (needs root).
test-deb: deb
	tests/deb_package.sh

# The Dockerfile's recipe (scripts/build-module.sh) against nginx-src's tree,
# loaded into the vendored nginx of the same version.
test-source-tree: build
	tests/source_tree_build.sh

bench: deps
	$(CARGO) bench -p smart-imaging-core --bench transcode

bench-corpus: deps
	$(CARGO) bench -p smart-imaging-core --bench corpus

# Load harness (issue #9), see benches/load/README.md:
#   make bench-load        the module, thumbor, image_filter and plain nginx
#                          under the same wrk load, every row, 20 s each; it
#                          installs what it needs (wrk, image_filter, thumbor
#                          in target/load/venv) and builds the release
#                          profile itself; table in target/load/report.md
#   make bench-load-smoke  4 rows (one per kind of server) of 8 s on the
#                          debug build `make build` makes (at 8 connections
#                          on 2 cores a conversion takes seconds: 3 s rows
#                          would see no module response complete)
.PHONY: bench-load bench-load-smoke test-bench-load
bench-load: deps
	benches/load/run

bench-load-smoke: build
	DURATION=$${DURATION:-8} PROFILE=debug benches/load/run \
	    module-webp-photos thumbor-webp-photos image-filter-photos plain-photos

# The bounded run of the load harness that `make test` includes: the smoke
# rows (the harness installs, starts, measures and stops every server).
test-bench-load: bench-load-smoke

clean-run: stop
	rm -rf $(RUN_DIR)

# Fuzzing (docs/testing.md#fuzzing): the targets in fuzz/fuzz_targets/
# (libFuzzer through cargo-fuzz, with AddressSanitizer, on the stable
# toolchain; fuzz/run.sh installs cargo-fuzz if it is missing).
#   make fuzz       every target in turn, each for FUZZ_RUNS executions
#                   (default 10 million) or FUZZ_SECONDS seconds (default
#                   0: no bound), whichever comes first; results in
#                   fuzz/logs/summary.txt, crashes in fuzz/artifacts/
#   make test-fuzz  every reproducer of a past crash (fuzz/regressions/),
#                   then TEST_FUZZ_SECONDS (default 45) per target
FUZZ_RUNS ?= 10000000
FUZZ_SECONDS ?= 0
TEST_FUZZ_SECONDS ?= 45
.PHONY: fuzz test-fuzz
fuzz: deps
	fuzz/run.sh build
	fuzz/run.sh regressions
	FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh run

test-fuzz: deps
	fuzz/run.sh build
	fuzz/run.sh regressions
	FUZZ_RUNS=100000000 FUZZ_SECONDS=$(TEST_FUZZ_SECONDS) fuzz/run.sh run

# nginx with the module under valgrind's memcheck (master and worker),
# requests that go through every codec, the guard, resizing, a corrupt
# input, a pixel bomb, HEAD, a client abort, the stash: the responses
# checked and no valgrind error allowed (tests/valgrind.sh; suppressions,
# each explained, in tests/valgrind.supp). About a minute.
.PHONY: test-valgrind
test-valgrind: build
	tests/valgrind.sh
