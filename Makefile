# Fusebox developer entry points. `make test` is exactly what CI runs.
.PHONY: test demo timeline tools clean-tools

test:
	bash scripts/test.sh

# The local cluster demo: 3 nats-server nodes, service instances, a scripted outage.
# DEMO_ARGS: --instances N, --scale F (script speed), --ci (no screen redraws), --no-python.
demo:
	bash scripts/install-tools.sh
	cargo build --release --quiet -p fusebox-examples --bin service-instance
	FUSEBOX_NATS_SERVER="$(CURDIR)/.tools/bin/nats-server" \
		cargo run --release --quiet -p fusebox-examples --bin cluster-demo -- $(DEMO_ARGS)

# The same kind of outage through the deterministic simulated fleet (no NATS).
timeline:
	cargo run --release --quiet -p fusebox-examples --bin outage-timeline

tools:
	bash scripts/install-tools.sh

clean-tools:
	rm -rf .tools
