# Fusebox developer entry points. `make test` is exactly what CI runs.
.PHONY: test demo fleet-bench timeline sim explore scale ops-check tools clean-tools

test:
	bash scripts/test.sh

# The local cluster demo: 3 nats-server nodes, service instances, a scripted outage.
# DEMO_ARGS: --instances N, --scale F (script speed), --ci (no screen redraws), --no-python.
demo:
	bash scripts/install-tools.sh
	cargo build --release --quiet -p fusebox-examples --bin service-instance
	FUSEBOX_NATS_SERVER="$(CURDIR)/.tools/bin/nats-server" \
		cargo run --release --quiet -p fusebox-examples --bin cluster-demo -- $(DEMO_ARGS)

# The fleet-scale bench (BENCHMARKS.md, "Fleet scale"): a grid of nodes x breakers in one
# process against nats-server processes it starts itself; about 5.5 minutes by default.
# FLEET_ARGS: e.g. --points 1x1,1x100,4x100,1x1000,4x1000 --secs 15 --cluster --repeat 3.
fleet-bench:
	bash scripts/install-tools.sh
	cargo build --release --quiet -p fleet-bench
	FUSEBOX_NATS_SERVER="$(CURDIR)/.tools/bin/nats-server" \
		cargo run --release --quiet -p fleet-bench -- $(FLEET_ARGS)

# The same kind of outage through the deterministic simulated fleet (no NATS).
timeline:
	cargo run --release --quiet -p fusebox-examples --bin outage-timeline

# The seeded fault simulation and the exhaustive model of the real machine
# (docs/verification.md). SIM_ARGS / EXPLORE_ARGS: e.g. --seeds 10000 --nodes 5, --nodes 3.
sim:
	cargo run --release --quiet -p model-check -- sim $(or $(SIM_ARGS),--seeds 1000 --nodes 3)

explore:
	cargo run --release --quiet -p model-check -- explore $(EXPLORE_ARGS)

# The scale preset: the node shell's fleet-scale bounds as properties (docs/verification.md).
# SCALE_ARGS: e.g. --nodes 100 --breakers 200 --shards 32 --ms 20000.
scale:
	cargo run --release --quiet -p model-check -- scale $(SCALE_ARGS)

# The shipped Prometheus alert rules: promtool's checks and their unit tests (as in `make test`).
ops-check:
	bash scripts/install-tools.sh
	.tools/bin/promtool check rules ops/prometheus/fusebox-alerts.yml
	.tools/bin/promtool test rules ops/prometheus/fusebox-alerts.test.yml

tools:
	bash scripts/install-tools.sh

clean-tools:
	rm -rf .tools
