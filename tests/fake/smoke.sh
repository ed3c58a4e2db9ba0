#!/usr/bin/env bash
# smoke.sh — end-to-end check of the fake upstream with bash + curl only.
#
# Usage: tests/fake/smoke.sh [path/to/fake_upstream]
#   (or FAKE_UPSTREAM=path). Without a binary it builds one into a temp dir.
#
# Starts the fake on ephemeral loopback ports, exercises every route, every
# marker of the rule-based model, each fault kind, the request log, 2000
# concurrent delayed requests and a clean SIGTERM, and prints
# "N passed, M failed" as its last line (exit status 1 on any failure).
# Set SMOKE_CONCURRENCY=0 to skip the concurrency check.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d)
PIDS=()
PASS=0
FAIL=0

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

finish() {
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" -eq 0 ]
    exit $?
}

BIN=${1:-${FAKE_UPSTREAM:-}}
if [ -z "$BIN" ]; then
    BIN=$WORK/fake_upstream
    # shellcheck disable=SC2046
    if ! gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -I"$ROOT/include" "$HERE"/*.c \
        $(pkg-config --cflags --libs libmicrohttpd jansson) -lpthread -lm -o "$BIN"; then
        FAIL=1
        echo "FAIL: build" >&2
        finish
    fi
fi

ok() { PASS=$((PASS + 1)); }
bad() {
    FAIL=$((FAIL + 1))
    echo "FAIL: $*" >&2
}

# assert NAME COMMAND...: passes when the command succeeds.
assert() {
    local name=$1
    shift
    if "$@"; then ok; else bad "$name"; fi
}

# start_fake NAME ARGS...: starts an instance; sets PID_<NAME>, PORT_<NAME>.
start_fake() {
    local name=$1 i
    shift
    "$BIN" --listen 127.0.0.1:0 --port-file "$WORK/$name.port" "$@" \
        >"$WORK/$name.out" 2>"$WORK/$name.err" &
    local pid=$!
    PIDS+=("$pid")
    for i in $(seq 1 200); do
        [ -s "$WORK/$name.port" ] && break
        sleep 0.05
    done
    printf -v "PID_$name" '%s' "$pid"
    printf -v "PORT_$name" '%s' "$(cat "$WORK/$name.port" 2>/dev/null)"
}

BASE=
# call METHOD PATH [CURL_ARGS...]: sets CODE, BODY, HDRS, RC, TIME.
call() {
    local method=$1 path=$2 out
    shift 2
    rm -f "$WORK/body" "$WORK/hdrs"
    out=$(curl -s -X "$method" -o "$WORK/body" -D "$WORK/hdrs" \
        -w '%{http_code} %{time_total}' "$@" "$BASE$path")
    RC=$?
    CODE=${out%% *}
    TIME=${out#* }
    BODY=$(cat "$WORK/body" 2>/dev/null)
    HDRS=$(tr -d '\r' <"$WORK/hdrs" 2>/dev/null)
}

KEY=(-H 'x-api-key: test-key' -H 'anthropic-version: 2023-06-01')
# msg BODY [CURL_ARGS...]: POST /v1/messages with valid headers.
msg() {
    local body=$1
    shift
    call POST /v1/messages "${KEY[@]}" -H 'content-type: application/json' \
        --data-binary "$body" "$@"
}
# say TEXT [EXTRA_JSON_FIELDS]: one user message (TEXT must not need JSON escaping).
say() {
    msg "{\"model\":\"claude-test\",\"max_tokens\":64${2:+,$2},\"messages\":[{\"role\":\"user\",\"content\":\"$1\"}]}"
}

# t NAME CODE [SUBSTRING...]: status is CODE and the body contains every substring.
t() {
    local name=$1 code=$2 s why=""
    shift 2
    [ "$CODE" = "$code" ] || why="status '$CODE' (curl rc $RC), wanted $code"
    for s in "$@"; do
        [[ "$BODY" == *"$s"* ]] || why="$why; body lacks [$s]"
    done
    if [ -z "$why" ]; then ok; else bad "$name: $why; body: ${BODY:0:400}"; fi
}
# lacks NAME SUBSTRING: the body does not contain it.
lacks() {
    if [[ "$BODY" != *"$2"* ]]; then ok; else bad "$1: body has [$2]: ${BODY:0:300}"; fi
}
# hdr NAME "name: value": the last response had this header line (name case-insensitive).
hdr() {
    if [ -n "$2" ] && grep -qixF -- "$2" <<<"$HDRS"; then ok; else bad "$1: no header [$2] in: $HDRS"; fi
}
# at_least NAME SECONDS: the last call took at least that long.
at_least() {
    if awk -v t="$TIME" -v m="$2" 'BEGIN { exit !(t >= m) }'; then ok; else
        bad "$1: took ${TIME}s, wanted >= $2s"
    fi
}
# at_most NAME SECONDS
at_most() {
    if awk -v t="$TIME" -v m="$2" 'BEGIN { exit !(t <= m) }'; then ok; else
        bad "$1: took ${TIME}s, wanted <= $2s"
    fi
}
fault() {
    call POST /_admin/faults --data-binary "$1"
    FAULT_ID=$(sed -n 's/^{"id":\([0-9]*\)}$/\1/p' <<<"$BODY")
    [ "$CODE" = 201 ] && [ -n "$FAULT_ID" ] || bad "adding fault $1: $CODE $BODY"
}
stat_of() { curl -s "$BASE/_admin/stats" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }
# wait_in_flight N: waits up to 5 s for in_flight to drop to N.
wait_in_flight() {
    local i
    for i in $(seq 1 100); do
        [ "$(stat_of in_flight)" = "$1" ] && return 0
        sleep 0.05
    done
    return 1
}

# ---- startup -------------------------------------------------------------
start_fake main --quiet
BASE=http://127.0.0.1:$PORT_main
assert "port file holds a port" grep -qxE '[0-9]+' "$WORK/main.port"
assert "stdout announces the port" \
    grep -qxF "fake_upstream listening on 127.0.0.1:$PORT_main" "$WORK/main.out"
call GET /_admin/health
t "health" 200 '{"status":"ok"}'

# ---- /v1/messages: the rule-based model ------------------------------------
say "hello there"
t "echo" 200 '"id":"msg_fake_' '"type":"message"' '"role":"assistant"' '"model":"claude-test"' \
    '"content":[{"type":"text","text":"You said: hello there"}]' '"stop_reason":"end_turn"' \
    '"stop_sequence":null' '"usage":{"input_tokens":'
assert "request-id header" grep -qE '^request-id: req_fake_[0-9]+$' <<<"$HDRS"
assert "message id matches request-id" \
    grep -qF "\"id\":\"msg_fake_$(sed -n 's/^request-id: req_fake_//p' <<<"$HDRS")\"" <<<"$BODY"

say "What is the weather in Paris?"
t "weather intent" 200 '"stop_reason":"tool_use"' '"name":"get_weather","input":{"location":"Paris"}'
lacks "single tool has no intro text" "I'll use"
say "weather in new york and then something"
t "weather delimiter and" 200 '"input":{"location":"new york"}'
say "Please search for best ramen, thanks"
t "search intent" 200 '"name":"web_search","input":{"query":"best ramen"}'
say "Save note: buy milk and eggs"
t "note intent runs to the end" 200 '"name":"save_note","input":{"content":"buy milk and eggs"}'
say "What is (2 + 3) * 4?"
t "calculator intent" 200 '"name":"calculator","input":{"expression":"(2 + 3) * 4"}'
say "In 2024 I had 3 cats"
t "numbers without operator are no expression" 200 '"You said: In 2024 I had 3 cats"'
say "Weather in Tokyo and search for sushi. Also 6*7"
t "several intents" 200 '"content":[{"type":"text","text":"I'"'"'ll use 3 tools."}' \
    '{"type":"tool_use","id":"toolu_' '"input":{"location":"Tokyo"}' '"input":{"query":"sushi"}' \
    '"input":{"expression":"6*7"}' '"stop_reason":"tool_use"'
assert "tool_use ids are unique" \
    test "$(grep -o '"id":"toolu_[0-9_]*"' <<<"$BODY" | sort -u | wc -l)" -eq 3
say "weather in Paris" '"tools":[{"name":"calculator","input_schema":{"type":"object"}}]'
t "undeclared tool is not called" 200 '"You said: weather in Paris"'
say "weather in Paris" '"tools":[{"name":"get_weather","input_schema":{"type":"object"}}],"tool_choice":{"type":"none"}'
t "tool_choice none" 200 '"You said: weather in Paris"'

TU='{"role":"assistant","content":[{"type":"text","text":"x"},{"type":"tool_use","id":"t1","name":"get_weather","input":{"location":"Paris"}},{"type":"tool_use","id":"t2","name":"calculator","input":{"expression":"1/0"}}]}'
msg '{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"weather in Paris and 1/0"},'"$TU"',{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"18°C sunny"},{"type":"tool_result","tool_use_id":"t2","content":[{"type":"text","text":"division by zero"}],"is_error":true}]}]}'
t "tool results quoted" 200 '"text":"Here is what I found: 18°C sunny | error: division by zero"' \
    '"stop_reason":"end_turn"'
LOOP='{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"calculator","input":{"expression":"1+1"}}]}'
msg '{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"[loop] what is 1+1"},'"$LOOP"',{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"2"}]}]}'
t "[loop] calls the calculator again" 200 '"name":"calculator","input":{"expression":"1+1"}' \
    '"stop_reason":"tool_use"'
msg '{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"text","text":"You said: hi"}]},{"role":"user","content":[{"type":"text","text":"again"}]}]}'
t "history turn count" 200 '"text":"You said: again (turn 2)"'
msg '{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"[pause] think"},{"role":"assistant","content":[{"type":"text","text":"thinking…"}]}]}'
t "continuation after pause_turn" 200 '"text":"continued."' '"stop_reason":"end_turn"'

say "[pause] think hard"
t "[pause]" 200 '"text":"thinking…"' '"stop_reason":"pause_turn"'
say "[refuse] something"
t "[refuse]" 200 '"text":"I can'"'"'t help with that."' '"stop_reason":"refusal"'
say "[max_tokens] long story"
t "[max_tokens]" 200 '"text":"truncated"' '"stop_reason":"max_tokens"'
say "[unknown_block] hi"
t "[unknown_block]" 200 '"content":[{"type":"mystery_block","data":1},{"type":"text"' \
    '"stop_reason":"end_turn"'
say "[unknown_stop] hi"
t "[unknown_stop]" 200 '"stop_reason":"brand_new_reason"'
say "[slow:400] hi"
t "[slow:N]" 200 '"You said: [slow:400] hi"'
at_least "[slow:N] delays" 0.38

# ---- /v1/messages: validation like the real API ----------------------------
call POST /v1/messages -H 'x-api-key: test-key' --data-binary '{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}]}'
t "missing anthropic-version" 400 '"type":"error","error":{"type":"invalid_request_error"' '"request_id":"req_fake_'
call POST /v1/messages -H 'x-api-key: test-key' -H 'anthropic-version: 2020-01-01' --data-binary '{}'
t "wrong anthropic-version" 400 'invalid_request_error'
call POST /v1/messages -H 'anthropic-version: 2023-06-01' --data-binary '{}'
t "missing x-api-key" 401 '"type":"authentication_error"'
assert "401 carries request-id" grep -q '^request-id: req_fake_' <<<"$HDRS"
call POST /v1/messages -H 'x-api-key;' -H 'anthropic-version: 2023-06-01' --data-binary '{}'
t "empty x-api-key" 401 'authentication_error'
msg '{"model":"m","max_tokens":'
t "bad JSON" 400 'invalid_request_error'
msg '{"model":"m","messages":[{"role":"user","content":"x"}]}'
t "missing max_tokens" 400 'max_tokens: Field required'
msg '{"model":"m","max_tokens":5,"messages":[{"role":"assistant","content":"x"}]}'
t "first message must be user" 400 'first message must use the \"user\" role'
msg '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},{"role":"user","content":"y"}]}'
t "roles must alternate" 400 'roles must alternate'
msg '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},'"$LOOP"',{"role":"user","content":"no results"}]}'
t "tool_use without tool_result" 400 '`tool_use` ids were found without `tool_result` blocks'
msg '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},'"$LOOP"',{"role":"user","content":[{"type":"text","text":"hi"},{"type":"tool_result","tool_use_id":"t1","content":"2"}]}]}'
t "tool_result must come first" 400 'invalid_request_error'
msg '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},'"$LOOP"',{"role":"user","content":[{"type":"tool_result","tool_use_id":"nope","content":"2"}]}]}'
t "tool_result for an unknown id" 400 'unexpected `tool_use_id`'
msg '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},'"$TU"',{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"a"}]}]}'
t "one tool_result per tool_use" 400 '`tool_use` ids were found without'
msg '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},'"$LOOP"']}'
t "final assistant with tool_use" 400 'invalid_request_error'
call GET /v1/messages "${KEY[@]}"
t "GET /v1/messages" 405 'invalid_request_error'
hdr "405 Allow" "allow: POST"

# ---- /v1/models, Open-Meteo, SearXNG, unknown paths -----------------------
call GET '/v1/models?limit=1' "${KEY[@]}"
t "models" 200 '{"data":[{"type":"model","id":"claude-sonnet-4-20250514","display_name":"Claude Sonnet 4","created_at":"2025-05-14T00:00:00Z"}],"has_more":false,"first_id":"claude-sonnet-4-20250514","last_id":"claude-sonnet-4-20250514"}'
call GET '/v1/models?limit=1' -H 'anthropic-version: 2023-06-01'
t "models without key" 401 'authentication_error'
call GET '/v1/search?name=seattle&count=1'
t "geocoding" 200 '"results":[{"id":5809844,"name":"Seattle","latitude":47.60621,"longitude":-122.33207,"country":"United States"' '"timezone":"America/Los_Angeles"' '"generationtime_ms":0.1'
call GET '/v1/search?name=New%20York&count=1'
t "geocoding percent-decoded" 200 '"name":"New York"'
call GET '/v1/search?name=Atlantis&count=1'
t "geocoding unknown city" 200 '{"generationtime_ms":0.1}'
call GET '/v1/search?count=1'
t "geocoding without name" 400 '"error":true,"reason":'
call GET '/v1/forecast?latitude=48.85341&longitude=2.3488&current=temperature_2m,wind_speed_10m,weather_code'
t "forecast" 200 '"latitude":48.85341,"longitude":2.3488' '"current_units":{"time":"iso8601","interval":"seconds","temperature_2m":"°C","wind_speed_10m":"km/h","weather_code":"wmo code"}' '"current":{"time":"2026-11-27T12:00","interval":900,"temperature_2m":' '"wind_speed_10m":' '"weather_code":'
FIRST=$BODY
call GET '/v1/forecast?latitude=48.85341&longitude=2.3488&current=temperature_2m,wind_speed_10m,weather_code'
assert "forecast is deterministic" test "$FIRST" = "$BODY"
call GET '/v1/forecast?latitude=91&longitude=0&current=temperature_2m'
t "forecast latitude out of range" 400 '"error":true'
call GET '/v1/forecast?latitude=abc&longitude=0'
t "forecast bad latitude" 400 '"error":true'
call GET '/v1/forecast?longitude=0'
t "forecast missing latitude" 400 '"error":true'
call GET '/search?q=rust%20async&format=json'
t "searxng" 200 '{"query":"rust async","number_of_results":7,"results":[{"title":"Result 1 for rust async","url":"https://example.org/r/' '"engine":'
assert "searxng has 7 results" test "$(grep -o '"title":' <<<"$BODY" | wc -l)" -eq 7
call GET '/search?q=rust'
t "searxng without format=json" 403
call GET /nope
t "unknown path" 404 '"error":"not found"'
call GET /v1/nope "${KEY[@]}"
t "unknown /v1 path" 404 'not_found_error'

# ---- the request log -------------------------------------------------------
call DELETE /_admin/requests
t "clear log" 200 '"cleared":'
say "log me"
call GET '/v1/search?name=Paris&count=1'
call GET /_admin/requests
t "log entries" 200 '"method":"POST","route":"messages","path":"/v1/messages","query":{},"status":200,"fault":null,"headers":{"anthropic-version":"2023-06-01","content-type":"application/json","x-api-key-present":true,"traceparent":null,"tracestate":null},"body":{"model":"claude-test","max_tokens":64,"messages":[{"role":"user","content":"log me"}]}}' \
    '"method":"GET","route":"geocoding","path":"/v1/search","query":{"name":"Paris","count":"1"},"status":200,"fault":null,"headers":{"anthropic-version":null,"content-type":null,"x-api-key-present":false,"traceparent":null,"tracestate":null},"body":null}' '"ts_ms":'
assert "log is in order" test "$(grep -o '"route":"[a-z]*"' <<<"$BODY" | tr -d '\n')" = '"route":"messages""route":"geocoding"'
call GET '/_admin/requests?route=geocoding'
assert "log route filter" test "$(grep -o '"seq":' <<<"$BODY" | wc -l)" -eq 1

# ---- faults ----------------------------------------------------------------
fault '{"route":"messages","status":529,"headers":{"retry-after":"2","retry-after-ms":"150","x-should-retry":"true"},"count":1}'
say "hi"
t "fault status" 529 '{"type":"error","error":{"type":"overloaded_error","message":' '"request_id":"req_fake_'
hdr "fault header retry-after" "retry-after: 2"
hdr "fault header retry-after-ms" "retry-after-ms: 150"
hdr "fault header x-should-retry" "x-should-retry: true"
assert "fault answer has request-id" grep -q '^request-id: req_fake_' <<<"$HDRS"
say "hi"
t "count 1 is spent" 200 'You said: hi'
fault '{"route":"messages","status":429,"error_type":"custom_error","count":1}'
say "hi"
t "error_type override" 429 '"type":"custom_error"'
for s in 400:invalid_request_error 401:authentication_error 403:permission_error \
    404:not_found_error 413:request_too_large 429:rate_limit_error 500:api_error \
    503:overloaded_error 504:timeout_error; do
    fault "{\"route\":\"messages\",\"status\":${s%%:*},\"count\":1}"
    say "hi"
    t "status ${s%%:*} maps to ${s#*:}" "${s%%:*}" "\"type\":\"${s#*:}\""
done
fault '{"route":"models","status":503,"count":1}'
call GET /v1/models "${KEY[@]}"
t "fault on models" 503 'overloaded_error'

fault '{"route":"geocoding","status":503,"count":2}'
call GET '/v1/search?name=Paris'
t "count 2, first" 503 '"error":true'
call GET '/v1/search?name=Paris'
t "count 2, second" 503
call GET '/v1/search?name=Paris'
t "count 2, then normal" 200 '"name":"Paris"'

fault '{"route":"geocoding","status":503,"count":5}'
curl -s --parallel --parallel-immediate --parallel-max 20 -o /dev/null -w '%{http_code}\n' \
    "$BASE/v1/search?name=Paris&i=[1-20]" >"$WORK/par" 2>/dev/null
assert "concurrent requests do not overshoot count" test "$(grep -c '^503$' "$WORK/par")" -eq 5
assert "the rest are answered normally" test "$(grep -c '^200$' "$WORK/par")" -eq 15

fault '{"route":"search","status":500,"duration_ms":1500}'
call GET '/search?q=a&format=json'
t "duration fault active" 500 '"error":true'
sleep 1.7
call GET '/search?q=a&format=json'
t "duration fault expired" 200 '"query":"a"'

fault '{"route":"forecast","delay_ms":400,"count":1}'
call GET '/v1/forecast?latitude=1&longitude=2'
t "delay fault answers normally" 200 '"latitude":1'
at_least "delay fault waits" 0.38
fault '{"route":"forecast","delay_ms":300,"status":502,"count":1}'
call GET '/v1/forecast?latitude=1&longitude=2'
t "delay + status" 502
at_least "delay + status waits" 0.28

fault '{"route":"models","hang":true,"count":1}'
HANG_ID=$FAULT_ID
call GET /v1/models "${KEY[@]}" --max-time 1
assert "hang never answers (curl timeout)" test "$RC" -eq 28
assert "hung request released when the client goes away" wait_in_flight 0
call GET '/_admin/requests?route=models'
t "hang logged with status 0" 200 "\"status\":0,\"fault\":$HANG_ID"

fault '{"route":"messages","reset":true,"count":1}'
say "hi"
assert "reset closes without an answer" test "$RC" -eq 52 -o "$RC" -eq 56
say "hi"
t "after reset" 200

fault '{"route":"messages","malformed":true,"count":1}'
say "hi"
t "malformed is 200" 200 '{"id":"msg_fake_'
lacks "malformed body is truncated" '"usage"'

fault '{"route":"*","status":503,"count":1}'
call GET '/search?q=a&format=json'
t "route * matches any upstream route" 503

fault '{"route":"search","headers":{"x-extra":"1"},"count":1}'
call GET '/search?q=a&format=json'
t "headers-only fault answers normally" 200 '"query":"a"'
hdr "headers-only fault adds header" "x-extra: 1"

call POST /_admin/faults --data-binary '{"route":"messages","stauts":500}'
t "fault with unknown field" 400 '"error":'
call POST /_admin/faults --data-binary '{"route":"admin","status":500}'
t "fault with bad route" 400 '"error":'
call POST /_admin/faults --data-binary '{"route":"messages","status":500,"hang":true}'
t "exclusive fault kinds" 400 '"error":'
fault '{"route":"search","status":500}'
call GET /_admin/faults
t "list faults" 200 "\"id\":$FAULT_ID,\"route\":\"search\",\"status\":500" "\"id\":$HANG_ID,\"route\":\"models\"" '"hits":1' '"active":false'
call DELETE "/_admin/faults/$FAULT_ID"
t "delete one fault" 200 "\"removed\":$FAULT_ID"
call GET '/search?q=a&format=json'
t "deleted fault no longer applies" 200
call DELETE /_admin/faults
t "clear faults" 200 '"cleared":'
call GET /_admin/faults
t "faults cleared" 200 '[]'

# ---- per-model faults, the rate limit, the prompt cache ---------------------
fault '{"route":"messages","model":"model-a","status":529,"message":"model-a is overloaded"}'
msg '{"model":"model-a","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}'
t "model fault hits its model" 529 '"type":"overloaded_error","message":"model-a is overloaded"'
msg '{"model":"model-b","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}'
t "model fault spares the others" 200 '"model":"model-b"'
call POST /_admin/faults --data-binary '{"route":"search","model":"m","status":500}'
t "model fault only on messages" 400 '"error":'
call POST /_admin/faults --data-binary '{"route":"messages","message":"no status"}'
t "message only with status" 400 '"error":'
call DELETE /_admin/faults
call POST /_admin/ratelimit --data-binary '{"requests":2,"window_ms":60000}'
t "rate limit set" 200 '"requests":2'
say "one"
t "within the rate limit" 200
hdr "rate limit size" "anthropic-ratelimit-requests-limit: 2"
hdr "one request left" "anthropic-ratelimit-requests-remaining: 1"
assert "reset in RFC 3339" grep -qiE '^anthropic-ratelimit-requests-reset: [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$' <<<"$HDRS"
say "two"
hdr "none left" "anthropic-ratelimit-requests-remaining: 0"
say "three"
t "over the rate limit" 429 '"type":"rate_limit_error"'
assert "429 with retry-after" grep -qiE '^retry-after: [0-9]+$' <<<"$HDRS"
call POST /_admin/ratelimit --data-binary '{"requests":-1,"window_ms":1}'
t "bad rate limit" 400 '"error":'
call POST /_admin/ratelimit --data-binary '{"requests":0,"window_ms":1}'
t "rate limit off" 200 '"requests":0'
say "four"
t "no limit, no headers" 200
assert "no rate-limit headers when off" bash -c '! grep -qi "^anthropic-ratelimit" <<<"$1"' _ "$HDRS"
LONG=$(printf 'cacheable system prompt %.0s' $(seq 1 40))
CACHED='{"model":"m","max_tokens":64,"system":[{"type":"text","text":"'"$LONG"'","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"text","text":"cache me","cache_control":{"type":"ephemeral"}}]}]}'
msg "$CACHED"
t "first cached request writes" 200 '"cache_read_input_tokens":0'
assert "cache write counted" grep -qE '"cache_creation_input_tokens":[1-9]' <<<"$BODY"
msg "$CACHED"
t "second cached request reads" 200 '"cache_creation_input_tokens":0'
assert "cache read counted" grep -qE '"cache_read_input_tokens":[1-9]' <<<"$BODY"
say "no breakpoints"
t "no breakpoints, no cache" 200 '"cache_creation_input_tokens":0,"cache_read_input_tokens":0'

call GET /_admin/stats
t "stats" 200 '"messages":' '"models":' '"geocoding":' '"forecast":' '"search":' '"admin":' '"in_flight":0'

# ---- --api-key and --delay-ms ---------------------------------------------
# A delay far above what a loaded CI machine adds, so "not delayed" has room.
start_fake keyed --quiet --api-key s3cret --delay-ms 2000
SAVED=$BASE
BASE=http://127.0.0.1:$PORT_keyed
say "hi"
t "--api-key rejects another key" 401 '"message":"invalid x-api-key"'
call POST /v1/messages -H 'x-api-key: s3cret' -H 'anthropic-version: 2023-06-01' \
    --data-binary '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
t "--api-key accepts the key" 200 'You said: hi'
at_least "--delay-ms delays answers" 1.95
call GET /v1/models -H 'x-api-key: s3cret' -H 'anthropic-version: 2023-06-01'
t "--delay-ms leaves other routes alone" 200
at_most "models not delayed" 1.0
BASE=$SAVED

# ---- 2000 concurrent delayed requests ------------------------------------
if [ "${SMOKE_CONCURRENCY:-1}" != 0 ]; then
    N_PROCS=8
    PER_PROC=250
    DELAY_MS=2000
    printf '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"[slow:%d] hi"}]}' \
        "$DELAY_MS" >"$WORK/slow.json"
    call DELETE /_admin/requests
    T0=$(date +%s%N)
    CURLS=()
    for p in $(seq 1 $N_PROCS); do
        curl -s --parallel --parallel-immediate --parallel-max $PER_PROC --max-time 25 \
            "${KEY[@]}" --data-binary @"$WORK/slow.json" -o /dev/null -w '%{http_code}\n' \
            "$BASE/v1/messages?p=$p&i=[1-$PER_PROC]" >"$WORK/conc.$p" 2>/dev/null &
        CURLS+=($!)
    done
    PEAK=0
    while kill -0 "${CURLS[@]}" 2>/dev/null; do
        n=$(stat_of in_flight)
        [ -n "$n" ] && [ "$n" -gt "$PEAK" ] && PEAK=$n
        sleep 0.1
    done
    wait "${CURLS[@]}"
    ELAPSED_MS=$((($(date +%s%N) - T0) / 1000000))
    TOTAL=$((N_PROCS * PER_PROC))
    GOT=$(cat "$WORK"/conc.* | grep -c '^200$')
    echo "concurrency: $GOT/$TOTAL answered 200, each delayed ${DELAY_MS} ms," \
        "peak in_flight $PEAK, elapsed ${ELAPSED_MS} ms" >&2
    assert "all $TOTAL concurrent delayed requests answered" test "$GOT" -eq "$TOTAL"
    assert "all $TOTAL were in flight at once" test "$PEAK" -ge "$TOTAL"
    assert "concurrent run bounded (< 20 s)" test "$ELAPSED_MS" -lt 20000
    assert "nothing left in flight" wait_in_flight 0
fi

# ---- clean stop with parked connections ----------------------------------
fault '{"route":"search","hang":true}'
curl -s --max-time 10 "$BASE/search?q=a&format=json" >/dev/null 2>&1 &
HANG_CURL=$!
say "[slow:60000] hi" --max-time 0.5 # leaves a delayed answer parked
curl -s --max-time 10 "${KEY[@]}" --data-binary @"$WORK/slow.json" "$BASE/v1/messages" \
    >/dev/null 2>&1 &
sleep 0.3
T0=$(date +%s%N)
kill -TERM "$PID_main"
wait "$PID_main"
STOP_RC=$?
STOP_MS=$((($(date +%s%N) - T0) / 1000000))
assert "SIGTERM exits 0 with hanging and delayed requests (rc $STOP_RC)" test "$STOP_RC" -eq 0
assert "SIGTERM stops promptly (${STOP_MS} ms)" test "$STOP_MS" -lt 3000
wait "$HANG_CURL" 2>/dev/null
if [ -s "$WORK/main.err" ]; then
    echo "--- fake_upstream stderr:" >&2
    head -50 "$WORK/main.err" >&2
fi

finish
