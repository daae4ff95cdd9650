# scripts/lib/porter-under-test.bash: sourced by scripts/schemathesis and
# scripts/openapi-client, which test a real porter from outside.
#
# pinned_venv installs a pinned Python tool into a venv under var/, once.
# start_porter builds target/debug/porter and runs `porter web` and
# `porter worker` on a fresh porter_test_* database (on DATABASE_URL's
# server) and their own Redis namespace, mailing into a file:// mailbox
# ($PORTER_MAILBOX); rate limits and the spacing of one address's emails
# (EMAIL_MIN_INTERVAL) are lifted so a tool's bursts are not refused and
# its emails are not held back. Everything is stopped and removed when the script exits.
# The caller sets REPO and TOOL (its name, for messages) and may export
# extra settings for the porter before start_porter.

: "${DATABASE_URL:?run scripts/services --print-env first}" "${REDIS_URL:?run scripts/services --print-env first}"

say() { echo "$TOOL: $*" >&2; }

# pinned_venv VENV PIP_SPEC...: (re)creates VENV with exactly these pinned
# PIP_SPECs unless it was made with them (VENV/pinned lists them).
pinned_venv() {
    local venv="$1"
    shift
    if [ "$(cat "$venv/pinned" 2>/dev/null)" != "$*" ]; then
        say "installing $* with pip into ${venv#"$REPO"/}"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
        echo "$*" >"$venv/pinned"
    fi
}

PORTER_MAILBOX="$(mktemp -d)"
porter_pids=()
porter_server_url="$DATABASE_URL"
porter_db="porter_test_${TOOL//-/_}_$$"
porter_namespace="porter-$TOOL-$$"
stop_porter() {
    for pid in "${porter_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${porter_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    psql "$porter_server_url" -X -q -c "DROP DATABASE IF EXISTS $porter_db WITH (FORCE)" >/dev/null 2>&1 || true
    redis-cli -u "$REDIS_URL" --scan --pattern "$porter_namespace:*" |
        xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null 2>&1 || true
    rm -rf "$PORTER_MAILBOX"
}
trap stop_porter EXIT

# start_porter: sets PORTER_URL (http://127.0.0.1:<port>) once porter web
# answers; its logs are $PORTER_MAILBOX/{migrate,web,worker}.log.
start_porter() {
    cargo build --locked --quiet --bin porter
    local port db_url
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    psql "$porter_server_url" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $porter_db" >/dev/null
    db_url="$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$porter_server_url" "$porter_db")"
    PORTER_URL="http://127.0.0.1:$port"
    export DATABASE_URL="$db_url" REDIS_NAMESPACE="$porter_namespace" PORT="$port" \
        PUBLIC_BASE_URL="$PORTER_URL/" SMTP_URL="file://$PORTER_MAILBOX" \
        MAIL_FROM="Porter <no-reply@porter.example>" RUST_LOG=warn \
        SECRET_KEY="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" \
        RATE_LIMIT_SIGN_UP_PER_IP=1000000/1m RATE_LIMIT_SIGN_UP_GLOBAL=1000000/1m \
        RATE_LIMIT_RESEND_PER_IP=1000000/1m RATE_LIMIT_RESEND_PER_EMAIL=1000000/1m \
        RATE_LIMIT_FAILED_ACTIVATION_PER_IP=1000000/1m HASH_MAX_WAIT=60s \
        RATE_LIMIT_FAILED_SIGN_IN_PER_LOGIN=1000000/1m RATE_LIMIT_FAILED_SIGN_IN_PER_IP=1000000/1m \
        RATE_LIMIT_SIGN_IN_PER_ACCOUNT=1000000/1m RATE_LIMIT_SIGN_IN_PER_IP=1000000/1m \
        RATE_LIMIT_RESET_PER_IP=1000000/1m RATE_LIMIT_RESET_PER_EMAIL=1000000/1m \
        RATE_LIMIT_FAILED_ADMIN_AUTH_PER_IP=1000000/1m EMAIL_PER_ADDRESS=1000000/1m \
        EMAIL_MIN_INTERVAL=1ms
    target/debug/porter migrate 2>"$PORTER_MAILBOX/migrate.log" || { cat "$PORTER_MAILBOX/migrate.log" >&2; exit 1; }
    target/debug/porter web 2>"$PORTER_MAILBOX/web.log" &
    porter_pids+=($!)
    target/debug/porter worker 2>"$PORTER_MAILBOX/worker.log" &
    porter_pids+=($!)
    python3 - "$PORTER_URL/healthz" "${porter_pids[@]}" <<'PYTHON' ||
import pathlib, sys, time, urllib.request
deadline = time.monotonic() + 60
while True:
    try:
        urllib.request.urlopen(sys.argv[1], timeout=5)
        break
    except OSError:
        for pid in sys.argv[2:]:
            stat = pathlib.Path(f"/proc/{pid}/stat")
            if not stat.exists() or stat.read_text().split(") ", 1)[1].startswith("Z"):
                sys.exit(f"porter (pid {pid}) stopped")
        if time.monotonic() > deadline:
            sys.exit("porter web did not answer within 60 s")
        time.sleep(0.2)
PYTHON
        { tail -n 20 "$PORTER_MAILBOX/web.log" "$PORTER_MAILBOX/worker.log" >&2; exit 1; }
}

# admin_api_key NAME: prints a new admin API key, made with the real CLI.
admin_api_key() {
    target/debug/porter api-keys create "$1" --json |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])'
}
