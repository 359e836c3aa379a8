# Fusebox developer entry points. `make test` is exactly what CI runs.
.PHONY: test demo tools clean-tools

test:
	bash scripts/test.sh

demo:
	cargo run --release --quiet -p fusebox-examples --bin outage-timeline

tools:
	bash scripts/install-tools.sh

clean-tools:
	rm -rf .tools
