#!/usr/bin/env bash
# The full Fusebox test suite (`make test`, and CI via .ci/run).
# Honours CARGO_TARGET_DIR from the environment if set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

total_start=$SECONDS
step_no=0
step_start=$SECONDS
current=""

header() {
    if ((step_no > 0)); then
        printf '    (took %ss)\n' "$((SECONDS - step_start))"
    fi
    step_no=$((step_no + 1))
    step_start=$SECONDS
    current="$*"
    printf '\n==> [%s] %s\n' "$step_no" "$*"
}

on_exit() {
    local rc=$?
    if ((rc != 0)); then
        printf '\n==> FAILED (exit %s) at step [%s] %s after %ss total\n' \
            "$rc" "$step_no" "$current" "$((SECONDS - total_start))" >&2
    fi
}
trap on_exit EXIT

# Fresh CI builds gain nothing from incremental compilation.
if [[ "${CI:-}" == "true" ]]; then
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi

header "install tools (scripts/install-tools.sh)"
bash scripts/install-tools.sh
export FUSEBOX_NATS_SERVER="$PWD/.tools/bin/nats-server"
# The dashboard's browser test (fusebox-cli/tests/dashboard.rs); install-tools.sh installs it.
export FUSEBOX_CHROMIUM="${FUSEBOX_CHROMIUM:-/usr/bin/chromium}"

# The shipped alert rules: valid, and their unit tests pass (docs/operations.md).
header "promtool check rules / test rules (ops/prometheus)"
.tools/bin/promtool check rules ops/prometheus/fusebox-alerts.yml
.tools/bin/promtool test rules ops/prometheus/fusebox-alerts.test.yml

header "cargo fmt --all -- --check"
cargo fmt --all -- --check

header "cargo clippy --workspace --all-targets --locked -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

header "cargo test --workspace --locked (unit, integration, doc tests; FUSEBOX_NATS_SERVER=$FUSEBOX_NATS_SERVER)"
cargo test --workspace --locked

# The crates users depend on must stay publishable (versions on path dependencies, licence,
# metadata); packaging without the verify build costs seconds.
header "cargo package (the published crates, --no-verify)"
cargo package --locked --no-verify --allow-dirty -p breaker-actors -p transport-nats -p fusebox -p fusebox-cli --quiet

# `cargo install --path fusebox-cli` as a user runs it; --debug and the build's own target
# dir reuse what the test step compiled.
install_root="$(mktemp -d)"
header "cargo install --path fusebox-cli (into $install_root)"
cargo install --locked --quiet --debug --path fusebox-cli --root "$install_root" --target-dir "${CARGO_TARGET_DIR:-target}"
"$install_root/bin/fusebox" --version
rm -rf "$install_root"

header "RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps --locked"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

# The model-check suites (200 + 50 simulated seeds, the exhaustive 2-node models, the
# planted bugs) run inside `cargo test --workspace` above; docs/verification.md has the
# longer runs for nightly use.

# The loom models of the hot path (breaker-actors/tests/loom.rs). A target dir of its own,
# so the cfg change does not invalidate the main build; under CARGO_TARGET_DIR if set.
loom_target="${CARGO_TARGET_DIR:-target}/loom"
header "loom models of the hot path (RUSTFLAGS='--cfg loom' cargo test --profile loom -p breaker-actors --test loom --target-dir $loom_target)"
RUSTFLAGS="--cfg loom" cargo test --profile loom --locked -p breaker-actors --test loom --target-dir "$loom_target"

printf '    (took %ss)\n' "$((SECONDS - step_start))"
printf '\n==> all %s steps passed in %ss total\n' "$step_no" "$((SECONDS - total_start))"
