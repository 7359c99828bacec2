#!/usr/bin/env bash
# The project's test command: every crate's unit, integration, scenario, property and end-to-end
# tests, on SQLite and on PostgreSQL.
#
# PostgreSQL: CALLBRIDGE_TEST_POSTGRES_URL when set; else a server answering on 127.0.0.1:5432
# (trust auth); else a private throw-away server started from the installed PostgreSQL binaries
# (stopped on exit). With none of these the run fails and says why: the scale-out tests are never
# skipped silently.
#
# Browser tests (crates/cli/tests/browser.rs): Debian's Chromium and chromedriver, at /usr/bin or
# where CALLBRIDGE_CHROMIUM and CALLBRIDGE_CHROMEDRIVER say; when missing they are installed (as
# root, with apt-get) or the run fails and says why. Their screenshots: target/browser-screens/.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_private_dir=""
stop_private_postgres() {
  if [ -n "$pg_private_dir" ] && [ -f "$pg_private_dir/data/postmaster.pid" ]; then
    run_as_pg "$pg_bin/pg_ctl" -D "$pg_private_dir/data" -m fast stop >/dev/null 2>&1 || true
  fi
  if [ -n "$pg_private_dir" ]; then rm -rf "$pg_private_dir"; fi
}
trap stop_private_postgres EXIT

# initdb refuses to run as root: use the postgres account when there is one.
run_as_pg() {
  if [ "$(id -u)" = 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
      echo "test.sh: running as root and there is no 'postgres' user to run a PostgreSQL server as" >&2
      return 1
    fi
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

answers() { psql "$1" -Atc 'select 1' >/dev/null 2>&1; }

ensure_postgres() {
  if ! command -v psql >/dev/null 2>&1; then
    echo "test.sh: FAILED: psql is not installed; the PostgreSQL tests need a client and a server" >&2
    echo "test.sh: install them (Debian: apt-get install postgresql) or run .ci/run, which does" >&2
    exit 1
  fi
  if [ -n "${CALLBRIDGE_TEST_POSTGRES_URL:-}" ]; then
    if ! answers "$CALLBRIDGE_TEST_POSTGRES_URL"; then
      echo "test.sh: FAILED: CALLBRIDGE_TEST_POSTGRES_URL is set but nothing answers there" >&2
      exit 1
    fi
    echo "== PostgreSQL: the server named by CALLBRIDGE_TEST_POSTGRES_URL"
    return
  fi
  local default_url="postgres://postgres@127.0.0.1:5432/postgres"
  if answers "$default_url"; then
    export CALLBRIDGE_TEST_POSTGRES_URL="$default_url"
    echo "== PostgreSQL: the server answering on 127.0.0.1:5432"
    return
  fi
  pg_bin=""
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_bin="$(pg_config --bindir)"
  else
    pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
  fi
  if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
    echo "test.sh: FAILED: no PostgreSQL answers on 127.0.0.1:5432 and no server binaries (initdb) are installed" >&2
    echo "test.sh: install PostgreSQL (Debian: apt-get install postgresql), start one, or set CALLBRIDGE_TEST_POSTGRES_URL" >&2
    exit 1
  fi
  local port=54329
  pg_private_dir="$(mktemp -d /tmp/callbridge-test-pg.XXXXXX)"
  chmod 0755 "$pg_private_dir"
  if [ "$(id -u)" = 0 ]; then chown postgres "$pg_private_dir"; fi
  echo "== PostgreSQL: none answers on 127.0.0.1:5432; starting a private server on port $port ($pg_bin)"
  run_as_pg "$pg_bin/initdb" -D "$pg_private_dir/data" -U postgres -A trust >"$pg_private_dir/initdb.log" 2>&1 || {
    echo "test.sh: FAILED: initdb did not succeed:" >&2; cat "$pg_private_dir/initdb.log" >&2; exit 1; }
  run_as_pg "$pg_bin/pg_ctl" -D "$pg_private_dir/data" -l "$pg_private_dir/server.log" -w \
    -o "-p $port -k $pg_private_dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null || {
    echo "test.sh: FAILED: the private PostgreSQL did not start:" >&2; cat "$pg_private_dir/server.log" >&2; exit 1; }
  export CALLBRIDGE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  answers "$CALLBRIDGE_TEST_POSTGRES_URL" || { echo "test.sh: FAILED: the private PostgreSQL does not answer" >&2; exit 1; }
}

version_of() { "$1" --version 2>/dev/null | grep -Eo '[0-9]+(\.[0-9]+)+' | head -1; }

ensure_browser() {
  local chromium="${CALLBRIDGE_CHROMIUM:-/usr/bin/chromium}"
  local driver="${CALLBRIDGE_CHROMEDRIVER:-/usr/bin/chromedriver}"
  if [ ! -x "$chromium" ] || [ ! -x "$driver" ]; then
    if [ -n "${CALLBRIDGE_CHROMIUM:-}${CALLBRIDGE_CHROMEDRIVER:-}" ]; then
      echo "test.sh: FAILED: the browser tests need Chromium at $chromium and chromedriver at $driver (CALLBRIDGE_CHROMIUM / CALLBRIDGE_CHROMEDRIVER); one of them is not an executable file" >&2
      exit 1
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "== Browser: Chromium or chromedriver missing; installing Debian's chromium and chromium-driver"
      if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
        echo "test.sh: FAILED: apt-get could not install chromium and chromium-driver, which the browser tests need" >&2
        exit 1
      fi
    else
      echo "test.sh: FAILED: the browser tests need Chromium ($chromium) and chromedriver ($driver), and they are not installed" >&2
      echo "test.sh: install them (Debian, as root: apt-get install chromium chromium-driver), run this as root to have it done, or set CALLBRIDGE_CHROMIUM and CALLBRIDGE_CHROMEDRIVER" >&2
      exit 1
    fi
  fi
  local browser_version driver_version
  browser_version="$(version_of "$chromium")"
  driver_version="$(version_of "$driver")"
  if [ -z "$browser_version" ] || [ -z "$driver_version" ]; then
    echo "test.sh: FAILED: $chromium or $driver does not run (--version printed no version)" >&2
    exit 1
  fi
  # chromedriver drives only the Chromium of its own major version.
  if [ "${browser_version%%.*}" != "${driver_version%%.*}" ]; then
    echo "test.sh: FAILED: chromedriver $driver_version cannot drive Chromium $browser_version (major versions differ)" >&2
    exit 1
  fi
  echo "== Browser: chromium $browser_version (chromedriver $driver_version)"
}

ensure_postgres
ensure_browser

# The total line: passed, failed and skipped over every test binary, and how many tests ran on
# PostgreSQL (each test that makes a PostgreSQL database notes itself in the file named by
# CALLBRIDGE_TEST_POSTGRES_LOG; crates/test-support/src/postgres.rs).
run_log="$(mktemp /tmp/callbridge-test-run.XXXXXX)"
pg_log="$(mktemp /tmp/callbridge-test-pg-log.XXXXXX)"
export CALLBRIDGE_TEST_POSTGRES_LOG="$pg_log"
# The container test (crates/cli/tests/container.rs) notes here whether it ran: without a Docker
# daemon it cannot, and the total line says so.
container_log="$(mktemp /tmp/callbridge-test-container.XXXXXX)"
export CALLBRIDGE_TEST_CONTAINER_LOG="$container_log"
# The chaos suite and the short fuzz run note their figures here (one line a run), printed
# before the total line: a passing test's own output is hidden by the test runner.
figures_log="$(mktemp /tmp/callbridge-test-figures.XXXXXX)"
export CALLBRIDGE_TEST_FIGURES_LOG="$figures_log"
set +e
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$run_log"
status=${PIPESTATUS[0]}
set -e
sum_of() { grep -Eo "$1" "$run_log" | grep -Eo '[0-9]+' | awk '{s+=$1} END {print s+0}'; }
passed=$(sum_of '^test result: [a-zA-Z]+\. [0-9]+ passed')
failed=$(sum_of '[0-9]+ failed;')
skipped=$(sum_of '[0-9]+ ignored;')
pg_tests=$(sort -u "$pg_log" | grep -c . || true)
container_said="$(head -1 "$container_log")"
if [ -z "$container_said" ]; then
  container_said="container test: NOT RUN (not selected)"
fi
if [ -s "$figures_log" ]; then
  echo "== figures"
  cat "$figures_log"
fi
rm -f "$run_log" "$pg_log" "$container_log" "$figures_log"
if [ "$pg_tests" -gt 0 ]; then
  pg_said="PostgreSQL ran: $pg_tests tests made a PostgreSQL database"
else
  pg_said="PostgreSQL ran: NO test made a PostgreSQL database"
  if [ "$status" = 0 ] && [ "$#" = 0 ]; then
    echo "test.sh: FAILED: the whole suite ran and no test used PostgreSQL; the scale-out tests did not run" >&2
    status=1
  fi
fi
echo "== total: $passed passed, $failed failed, $skipped skipped; $pg_said; $container_said (exit $status)"
exit "$status"
