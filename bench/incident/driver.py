#!/usr/bin/env python3
"""driver.py — load and measurement half of the incident-replay benchmark.

Replays the incident agentd's resilience layer was built for: steady traffic
while the LLM API answers 429 with retry-after for a long stretch. It sends
POST /v1/agent open-loop at a fixed rate (a slow server does not slow the
offered load, as in real traffic), injects the 429 stretch through the fake
upstream's admin API, then correlates what the clients saw with what reached
the upstream (the fake's request log) and prints the figures the targets are
stated in. Standard library only; every loop is bounded in count and time.
"""
import argparse
import http.client
import json
import sys
import threading
import time

# Most requests in flight at once: rate * deadline is the steady-state worst case
# (20/s * 30 s = 600); beyond this bound a request is counted as not sent.
MAX_IN_FLIGHT = 1000


def monotonic_ms():
    return time.monotonic() * 1000.0


def admin(port, method, path, body=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body) if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


class Request:
    __slots__ = ("sent_ms", "done_ms", "status", "error_type", "llm_attempts", "retry_after")

    def __init__(self, sent_ms):
        self.sent_ms = sent_ms
        self.done_ms = None
        self.status = 0  # 0 = transport failure
        self.error_type = None
        self.llm_attempts = None
        self.retry_after = None


def one_request(port, body, timeout_s, req, slots):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
        try:
            conn.request("POST", "/v1/agent", body=body,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            payload = resp.read()
            req.status = resp.status
            req.retry_after = resp.getheader("Retry-After")
            try:
                o = json.loads(payload)
            except ValueError:
                o = None
            if isinstance(o, dict):
                if resp.status == 200:
                    req.llm_attempts = (o.get("usage") or {}).get("llm_attempts")
                else:
                    req.error_type = (o.get("error") or {}).get("type")
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as e:
        req.error_type = "transport: %s" % type(e).__name__
    req.done_ms = monotonic_ms()
    slots.release()


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def fake_clock_offset(fake_port):
    """driver_ms - fake_ms, from one logged GET /v1/models whose send window is known."""
    admin(fake_port, "DELETE", "/_admin/requests?route=models")
    before = monotonic_ms()
    conn = http.client.HTTPConnection("127.0.0.1", fake_port, timeout=10)
    # limit=3 tells this request apart from agentd's own readiness probes (limit=1).
    conn.request("GET", "/v1/models?limit=3", headers={"x-api-key": "sk-bench",
                                                     "anthropic-version": "2023-06-01"})
    conn.getresponse().read()
    conn.close()
    after = monotonic_ms()
    _, log = admin(fake_port, "GET", "/_admin/requests?route=models")
    mine = [e for e in log if (e.get("query") or {}).get("limit") == "3"]
    return (before + after) / 2.0 - mine[-1]["ts_ms"], (after - before) / 2.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agentd-port", type=int, required=True)
    ap.add_argument("--fake-port", type=int, required=True)
    ap.add_argument("--rate", type=float, default=20.0, help="requests per second")
    ap.add_argument("--duration-s", type=float, default=60.0)
    ap.add_argument("--stretch-start-s", type=float, default=20.0)
    ap.add_argument("--stretch-s", type=float, default=20.0)
    ap.add_argument("--retry-after-ms", type=int, default=1000)
    ap.add_argument("--timeout-ms", type=int, default=30000, help="the requests' timeout_ms")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--fake-log-out", default=None)
    a = ap.parse_args()
    if not (0 < a.rate <= 1000 and 0 < a.duration_s <= 600 and 0 < a.stretch_s <= a.duration_s):
        sys.exit("driver: rate 0..1000/s, duration 0..600 s, stretch within the duration")

    offset_ms, offset_err_ms = fake_clock_offset(a.fake_port)
    admin(a.fake_port, "DELETE", "/_admin/faults")
    admin(a.fake_port, "DELETE", "/_admin/requests")

    body = json.dumps({"input": "hello", "timeout_ms": a.timeout_ms})
    client_timeout_s = a.timeout_ms / 1000.0 + 10
    slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
    requests, threads, not_sent = [], [], 0
    total = int(a.rate * a.duration_s)
    fault = {
        "route": "messages", "status": 429, "duration_ms": int(a.stretch_s * 1000),
        "headers": {"retry-after-ms": str(a.retry_after_ms),
                    "retry-after": str(max(1, (a.retry_after_ms + 999) // 1000))},
    }
    stretch = None
    t0 = monotonic_ms()
    for i in range(total):
        due = t0 + i * 1000.0 / a.rate
        if stretch is None and due >= t0 + a.stretch_start_s * 1000:
            before = monotonic_ms()
            st, _ = admin(a.fake_port, "POST", "/_admin/faults", fault)
            if st != 201:
                sys.exit("driver: the fake refused the fault (%d)" % st)
            # The fake starts the fault's clock while answering the admin call.
            start = (before + monotonic_ms()) / 2.0
            stretch = (start, start + a.stretch_s * 1000)
        delay = (due - monotonic_ms()) / 1000.0
        if delay > 0:
            time.sleep(delay)
        if not slots.acquire(blocking=False):
            not_sent += 1
            continue
        req = Request(monotonic_ms())
        requests.append(req)
        th = threading.Thread(target=one_request,
                              args=(a.agentd_port, body, client_timeout_s, req, slots),
                              daemon=True)
        th.start()
        threads.append(th)
    join_until = monotonic_ms() + (client_timeout_s + 5) * 1000
    for th in threads:
        th.join(max(0.0, (join_until - monotonic_ms()) / 1000.0))
    unfinished = sum(1 for r in requests if r.done_ms is None)

    _, fake_log = admin(a.fake_port, "GET", "/_admin/requests?route=messages", timeout=60)
    if a.fake_log_out:
        with open(a.fake_log_out, "w") as f:
            json.dump(fake_log, f)

    # ---- figures -----------------------------------------------------------------
    s0, s1 = stretch
    done = [r for r in requests if r.done_ms is not None]
    ok = [r for r in done if r.status == 200]
    lat = sorted(r.done_ms - r.sent_ms for r in done)
    in_stretch = [r for r in requests if s0 <= r.sent_ms < s1]
    ok_in_stretch = [r for r in in_stretch if r.status == 200]
    # Requests whose deadline outlasts the stretch: all of them when timeout_ms >= stretch.
    outlasting = [r for r in requests if r.sent_ms + a.timeout_ms > s1]
    ok_outlasting = [r for r in outlasting if r.status == 200]
    up = [(e["ts_ms"] + offset_ms, e["status"]) for e in fake_log]
    up_in_stretch = [u for u in up if s0 <= u[0] < s1]
    up_429 = sum(1 for u in up if u[1] == 429)
    first_up_ok_after = min((u[0] for u in up if u[0] >= s1 and u[1] == 200), default=None)
    first_client_ok_after = min((r.done_ms for r in ok if r.done_ms >= s1), default=None)
    statuses = {}
    for r in requests:
        key = str(r.status) + (" " + r.error_type if r.error_type else "")
        statuses[key] = statuses.get(key, 0) + 1

    def share(n, d):
        return 100.0 * n / d if d else float("nan")

    res = {
        "rate_per_s": a.rate, "duration_s": a.duration_s, "stretch_s": a.stretch_s,
        "retry_after_ms": a.retry_after_ms, "timeout_ms": a.timeout_ms,
        "requests_sent": len(requests), "requests_not_sent": not_sent,
        "requests_unfinished": unfinished, "statuses": statuses,
        "success_pct_all": share(len(ok), len(requests)),
        "success_pct_deadline_outlasts_stretch": share(len(ok_outlasting), len(outlasting)),
        "success_pct_sent_in_stretch": share(len(ok_in_stretch), len(in_stretch)),
        "requests_sent_in_stretch": len(in_stretch),
        "upstream_attempts_total": len(up), "upstream_429s": up_429,
        "upstream_attempts_in_stretch": len(up_in_stretch),
        "attempts_per_request_in_stretch": (len(up_in_stretch) / len(in_stretch)
                                            if in_stretch else float("nan")),
        "attempts_per_request_overall": len(up) / len(requests) if requests else float("nan"),
        "latency_ms_p50": percentile(lat, 50), "latency_ms_p99": percentile(lat, 99),
        "latency_ms_max": lat[-1] if lat else float("nan"),
        "first_upstream_success_after_stretch_ms": (first_up_ok_after - s1
                                                    if first_up_ok_after else None),
        "first_client_success_after_stretch_ms": (first_client_ok_after - s1
                                                  if first_client_ok_after else None),
        "clock_offset_uncertainty_ms": offset_err_ms,
    }
    # Upstream attempts per second around the stretch (what the herd looks like).
    per_s = {}
    for ts, st in up:
        k = int((ts - s0) // 1000)
        per_s.setdefault(k, [0, 0])
        per_s[k][0] += 1
        per_s[k][1] += st == 429
    res["upstream_per_second_from_stretch_start"] = {
        str(k): {"attempts": v[0], "429": v[1]} for k, v in sorted(per_s.items()) if -2 <= k <= 23}
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=1)

    def fmt(v, unit=""):
        return "n/a" if v is None else ("%.1f%s" % (v, unit))

    print("requests sent            %d (not sent: %d, unfinished: %d)"
          % (len(requests), not_sent, unfinished))
    print("answers                  %s" % ", ".join("%s x%d" % kv for kv in sorted(statuses.items())))
    print("success, all             %.2f %%" % res["success_pct_all"])
    print("success, deadline > end  %.2f %%   (target >= 99 %%)"
          % res["success_pct_deadline_outlasts_stretch"])
    print("success, sent in stretch %.2f %%  (%d requests)"
          % (res["success_pct_sent_in_stretch"], len(in_stretch)))
    print("attempts/request stretch %.2f     (target <= 1.3; %d upstream attempts, %d were 429)"
          % (res["attempts_per_request_in_stretch"], len(up_in_stretch), up_429))
    print("attempts/request overall %.2f" % res["attempts_per_request_overall"])
    print("latency p50 / p99 / max  %s / %s / %s" % (fmt(res["latency_ms_p50"], " ms"),
                                                    fmt(res["latency_ms_p99"], " ms"),
                                                    fmt(res["latency_ms_max"], " ms")))
    print("end of stretch -> first upstream success %s, first client success %s (target <= 1500 ms)"
          % (fmt(res["first_upstream_success_after_stretch_ms"], " ms"),
             fmt(res["first_client_success_after_stretch_ms"], " ms")))
    met = (res["success_pct_deadline_outlasts_stretch"] >= 99.0
           and res["attempts_per_request_in_stretch"] <= 1.3
           and res["first_client_success_after_stretch_ms"] is not None
           and res["first_client_success_after_stretch_ms"] <= 1500)
    print("targets                  %s" % ("met" if met else "MISSED"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
