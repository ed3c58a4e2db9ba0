#!/usr/bin/env python3
"""driver.py — load, fault and sampling half of the soak test (bench/soak.sh).

Sends mixed traffic to POST /v1/agent for a fixed time with bounded
concurrency (a fixed pool of client threads, paced to a global rate), rotates
faults in the fake upstream through its admin API, and samples agentd's and the
fake's memory and file descriptors from /proc. It writes what the clients saw
and what was sampled to an output directory; soak.sh turns that into the
summary and the verdict.

Traffic (scenario weights in SCENARIOS): plain questions (some slow, some low
priority), tool use (weather, calculator, notes, web search, several at once),
model markers (pause, refusal, max_tokens, unknown block/stop, iteration loop),
conversations (a pool of ids, so runs collide and evict), two runs on one
conversation at once (409), Idempotency-Key replays, reuse with another body
(422) and duplicates in flight (409), bad input (expected 4xx), client
disconnects while the run is going or while the body is being sent, and
probes/metrics scrapes.

Standard library only; every loop is bounded in count and time.
"""
import argparse
import http.client
import json
import os
import random
import socket
import statistics
import sys
import threading
import time

# A run's deadline (timeout_ms); agentd must answer before it (plus slack) or
# the client counts it as unanswered.
RUN_TIMEOUT_MS = 10000
CLIENT_TIMEOUT_S = RUN_TIMEOUT_MS / 1000.0 + 5
# How long after a fault ends its effects may still show (breaker half-open
# probe, the end of a 429 pause): soak.sh sets breaker open time and the
# retry-after caps below this.
FAULT_SETTLE_MS = 2000
CONVERSATION_POOL = 64
NOTE_CONTENTS = 64
CITIES = ["Paris", "London", "Berlin", "Tokyo", "Seattle", "New York", "Sydney", "Madrid",
          "Cairo", "Toronto"]
TOPICS = ["memory leaks", "circuit breakers", "sourdough", "tide tables", "prime numbers",
          "the C11 memory model", "jazz standards", "volcanoes"]
PLAIN = ["hello", "how are you today", "tell me about your day", "give me a short poem",
         "what do you think about soak tests", "good morning"]

# The rotation: every fault lasts fault_ms (duration_ms), one starts every
# fault_every_s. Each entry is (name, fault description for POST /_admin/faults).
FAULTS = [
    ("llm_429_retry_after", {"route": "messages", "status": 429,
                             "headers": {"retry-after": "1", "retry-after-ms": "800"}}),
    ("llm_500", {"route": "messages", "status": 500}),
    ("geocoding_503", {"route": "geocoding", "status": 503}),
    ("llm_reset", {"route": "messages", "reset": True}),
    ("search_500", {"route": "search", "status": 500}),
    ("llm_slow_4s", {"route": "messages", "delay_ms": 4000}),
    ("forecast_reset", {"route": "forecast", "reset": True}),
    ("llm_hang", {"route": "messages", "hang": True}),
    ("llm_malformed", {"route": "messages", "malformed": True}),
    ("search_hang", {"route": "search", "hang": True}),
    ("llm_529_overloaded", {"route": "messages", "status": 529}),
    ("geocoding_malformed", {"route": "geocoding", "malformed": True}),
    ("llm_400_permanent", {"route": "messages", "status": 400}),
    ("forecast_slow_3s", {"route": "forecast", "delay_ms": 3000}),
    ("all_slow_800ms", {"route": "*", "delay_ms": 800}),
    ("models_503", {"route": "models", "status": 503}),
]

# Answers the injected faults explain: retries exhausted or circuit open
# (503), a permanent refusal (502), a deadline (504), a 429 pause that would
# outlast the deadline or a low-priority run refused during it (429).
FAULT_EXPLAINED = {"503 upstream_unavailable", "502 upstream_error", "504 deadline_exceeded",
                   "429 rate_limited"}


def now_s():
    return time.monotonic()


class Stats:
    """Counters shared by the client threads (one lock, short sections)."""

    def __init__(self, t0, warmup_s):
        self.lock = threading.Lock()
        self.t0 = t0
        self.warmup_s = warmup_s
        self.by_status = {}
        self.by_scenario = {}
        self.anomalies = {}
        self.examples = []
        self.exchanges = 0
        self.exchanges_after_warmup = 0
        self.scenarios = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.keepalive_retries = 0
        self.ok_latencies = []  # reservoir sample of 200-answer latencies (s)
        self.ok_seen = 0
        self.windows = []  # fault influence windows (start_s, end_s, name), relative to t0
        self.fault_counts = {}
        self.admin_errors = 0
        self.explained_outside_faults = 0
        self.rng = random.Random(7)

    def begin(self):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end(self):
        with self.lock:
            self.in_flight -= 1

    def near_fault(self, sent, done):
        """True when [sent, done] meets a fault or the settle time after it. Lock held."""
        for s, e, _ in reversed(self.windows):
            if e + FAULT_SETTLE_MS / 1000.0 < sent:
                return False  # every earlier fault ended earlier still
            if done >= s:
                return True
        return False

    def record(self, scenario, label, sent, done, anomaly=None, detail=""):
        rel_sent, rel_done = sent - self.t0, done - self.t0
        with self.lock:
            self.exchanges += 1
            if rel_sent >= self.warmup_s:
                self.exchanges_after_warmup += 1
            self.by_status[label] = self.by_status.get(label, 0) + 1
            k = (scenario, label)
            self.by_scenario[k] = self.by_scenario.get(k, 0) + 1
            if label in FAULT_EXPLAINED and not self.near_fault(rel_sent, rel_done):
                self.explained_outside_faults += 1
                anomaly = anomaly or "fault-type answer with no fault active nearby"
            if label == "200":
                self.ok_seen += 1
                if len(self.ok_latencies) < 20000:
                    self.ok_latencies.append(done - sent)
                else:
                    j = self.rng.randrange(self.ok_seen)
                    if j < 20000:
                        self.ok_latencies[j] = done - sent
            if anomaly:
                self.anomalies[anomaly] = self.anomalies.get(anomaly, 0) + 1
                if len(self.examples) < 25:
                    self.examples.append("t=%.1fs %s %s: %s %s" % (rel_sent, scenario, label,
                                                                    anomaly, detail[:200]))


class Answer:
    __slots__ = ("status", "headers", "data", "etype", "obj")

    def __init__(self, status, headers, data):
        self.status = status
        self.headers = headers
        self.data = data
        self.etype = None
        self.obj = None
        try:
            self.obj = json.loads(data) if data else None
        except ValueError:
            self.obj = None
        if status != 200 and isinstance(self.obj, dict):
            err = self.obj.get("error")
            if isinstance(err, dict):
                self.etype = err.get("type")

    @property
    def label(self):
        return "%d %s" % (self.status, self.etype) if self.etype else str(self.status)


def exchange(conn, method, path, body, headers):
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)


class Client(threading.Thread):
    """One of the bounded pool: runs scenarios back to back, paced globally."""

    def __init__(self, idx, a, stats, pacer, stop_at, stop_evt):
        super().__init__(daemon=True, name="client-%d" % idx)
        self.idx = idx
        self.a = a
        self.stats = stats
        self.pacer = pacer
        self.stop_at = stop_at
        self.stop_evt = stop_evt
        self.rng = random.Random(a.seed * 1000 + idx)
        self.conn = None  # keep-alive connection for the simple scenarios
        self.conn_used = False
        self.n = 0

    # ---- plumbing ------------------------------------------------------------------
    def fresh(self, timeout=CLIENT_TIMEOUT_S):
        return http.client.HTTPConnection("127.0.0.1", self.a.agentd_port, timeout=timeout)

    def drop_conn(self):
        if self.conn is not None:
            self.conn.close()
        self.conn, self.conn_used = None, False

    def send(self, scenario, body, headers=None, keepalive=False, method="POST",
             path="/v1/agent", raw=False):
        """One exchange; returns (Answer or None, label, sent, done). Never raises."""
        h = {"Content-Type": "application/json"}
        if headers:
            h.update(headers)
        data = body if raw else json.dumps(body).encode()
        self.stats.begin()
        sent = now_s()
        try:
            for attempt in (0, 1):
                reused = keepalive and self.conn is not None and self.conn_used
                if keepalive:
                    if self.conn is None:
                        self.conn = self.fresh()
                    conn = self.conn
                else:
                    conn = self.fresh()
                try:
                    ans = exchange(conn, method, path, data, h)
                    if keepalive:
                        self.conn_used = True
                        if ans.headers.get("connection", "").lower() == "close":
                            self.drop_conn()
                    else:
                        conn.close()
                    return ans, ans.label, sent, now_s()
                except (http.client.RemoteDisconnected, BrokenPipeError,
                        ConnectionResetError) as e:
                    conn.close()
                    if keepalive:
                        self.drop_conn()
                    # A kept-alive connection the server closed while idle: once more, fresh.
                    if reused and attempt == 0:
                        with self.stats.lock:
                            self.stats.keepalive_retries += 1
                        sent = now_s()
                        continue
                    return None, "transport %s" % type(e).__name__, sent, now_s()
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    if keepalive:
                        self.drop_conn()
                    name = "no answer in %.0fs" % CLIENT_TIMEOUT_S \
                        if isinstance(e, socket.timeout) else "transport %s" % type(e).__name__
                    return None, name, sent, now_s()
            return None, "transport retry", sent, now_s()
        finally:
            self.stats.end()

    def judge(self, scenario, ans, label, sent, done, allowed=(), expect=None):
        """Records one exchange with an anomaly reason when it is not what it may be."""
        anomaly, detail = None, ""
        if ans is None:
            anomaly = "no HTTP answer"
        elif expect is not None:
            if ans.status != expect:
                anomaly, detail = "expected %d" % expect, ans.data[:160].decode("utf-8", "replace")
        elif ans.status == 200:
            if not (isinstance(ans.obj, dict) and isinstance(ans.obj.get("output"), str)):
                anomaly, detail = "200 without a JSON answer", ans.data[:160].decode("utf-8",
                                                                                     "replace")
        elif label not in FAULT_EXPLAINED and label not in allowed:
            anomaly = "unexpected answer"
            detail = ans.data[:160].decode("utf-8", "replace")
        self.stats.record(scenario, label, sent, done, anomaly, detail)

    def run_body(self, scenario, text, keepalive=True, **extra):
        body = {"input": text, "timeout_ms": RUN_TIMEOUT_MS}
        body.update(extra)
        ans, label, sent, done = self.send(scenario, body, keepalive=keepalive)
        self.judge(scenario, ans, label, sent, done)
        return ans

    # ---- scenarios -----------------------------------------------------------------
    def sc_plain(self):
        extra = {"priority": "low"} if self.rng.random() < 0.2 else {}
        self.run_body("plain", "%s #%d" % (self.rng.choice(PLAIN), self.n), **extra)

    def sc_slow(self):
        self.run_body("slow", "[slow:%d] %s" % (self.rng.randint(500, 3000),
                                                self.rng.choice(PLAIN)))

    def sc_weather(self):
        city = self.rng.choice(CITIES) if self.rng.random() < 0.9 else "Atlantis"
        self.run_body("weather", "What is the weather in %s?" % city)

    def sc_calculator(self):
        r = self.rng
        text = r.choice(["What is %d * %d?" % (r.randint(2, 999), r.randint(2, 999)),
                         "compute (%d + %d) ^ 2 / 7" % (r.randint(1, 99), r.randint(1, 99)),
                         "what is %d / 0" % r.randint(1, 9)])
        self.run_body("calculator", text)

    def sc_multi_tool(self):
        r = self.rng
        self.run_body("multi_tool", "What is the weather in %s and %d + %d, and search for %s" % (
            r.choice(CITIES), r.randint(1, 99), r.randint(1, 99), r.choice(TOPICS)))

    def sc_save_note(self):
        # A bounded set of contents: the same content again reports the existing file.
        self.run_body("save_note", "save note: soak note %d" % self.rng.randrange(NOTE_CONTENTS))

    def sc_web_search(self):
        self.run_body("web_search", "search for %s" % self.rng.choice(TOPICS))

    def sc_markers(self):
        m = self.rng.choice(["[pause] go on", "[refuse] something", "[max_tokens] a long story",
                             "[unknown_block] hi", "[unknown_stop] hi", "[loop] what is 1+1"])
        extra = {"max_iterations": 3} if m.startswith("[loop]") else {}
        self.run_body("markers", m, **extra)

    def sc_conversation(self):
        # A shared pool larger than agentd's conversation cap: turns land on
        # conversations other clients use (409 when at once) and evict each other.
        cid = "soak-conv-%d" % self.rng.randrange(CONVERSATION_POOL)
        text = self.rng.choice(["and then?", "what is %d * 3" % self.n,
                                "weather in %s" % self.rng.choice(CITIES), "tell me more"])
        body = {"input": text, "timeout_ms": RUN_TIMEOUT_MS, "conversation_id": cid}
        ans, label, sent, done = self.send("conversation", body, keepalive=True)
        self.judge("conversation", ans, label, sent, done, allowed=("409 conversation_busy",))

    def pair(self, scenario, first, second, headers=None):
        """Sends first, then second 200 ms later on another connection, while the first runs.
        Returns ((ans, label, sent, done) of first, same of second)."""
        h = {"Content-Type": "application/json"}
        if headers:
            h.update(headers)
        c1, c2 = self.fresh(), self.fresh()
        res = []
        self.stats.begin()
        self.stats.begin()
        try:
            t1 = now_s()
            try:
                c1.request("POST", "/v1/agent", body=json.dumps(first).encode(), headers=h)
            except (OSError, http.client.HTTPException) as e:
                c1.close()
                c1 = e
            time.sleep(0.2)
            for conn, body, t in ((c2, second, None), (c1, None, t1)):
                if isinstance(conn, Exception):
                    res.append((None, "transport %s" % type(conn).__name__, t1, now_s()))
                    continue
                sent = t if t is not None else now_s()
                try:
                    if body is not None:
                        conn.request("POST", "/v1/agent", body=json.dumps(body).encode(),
                                     headers=h)
                    resp = conn.getresponse()
                    ans = Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                                 resp.read())
                    res.append((ans, ans.label, sent, now_s()))
                except socket.timeout:
                    res.append((None, "no answer in %.0fs" % CLIENT_TIMEOUT_S, sent, now_s()))
                except (OSError, http.client.HTTPException) as e:
                    res.append((None, "transport %s" % type(e).__name__, sent, now_s()))
                finally:
                    conn.close()
        finally:
            self.stats.end()
            self.stats.end()
        return res[1], res[0]

    def sc_conversation_busy(self):
        cid = "soak-pair-%d-%d" % (self.idx, self.n)
        first = {"input": "[slow:1500] first turn", "conversation_id": cid,
                 "timeout_ms": RUN_TIMEOUT_MS}
        second = {"input": "second turn", "conversation_id": cid, "timeout_ms": RUN_TIMEOUT_MS}
        (a1, l1, s1, d1), (a2, l2, s2, d2) = self.pair("conversation_busy", first, second)
        self.judge("conversation_busy", a1, l1, s1, d1)
        # The second must be refused while the first runs; if the first already
        # ended (a fault answered it at once) the second simply runs.
        ok = {"409 conversation_busy"} if (a1 is not None and d1 > d2) else set()
        anomaly = None
        if a2 is not None and a2.status == 200 and d1 > d2 and a1 is not None and \
                a1.status == 200:
            anomaly = "two runs at once on one conversation"
        if anomaly:
            self.stats.record("conversation_busy", l2, s2, d2, anomaly)
        else:
            self.judge("conversation_busy", a2, l2, s2, d2, allowed=tuple(ok))

    def idem_key(self):
        return "soak-%d-%d-%d" % (self.a.seed, self.idx, self.n)

    def sc_idem_replay(self):
        key = self.idem_key()
        body = {"input": "what is %d + %d" % (self.idx, self.n), "timeout_ms": RUN_TIMEOUT_MS}
        hdr = {"Idempotency-Key": key}
        a1, l1, s1, d1 = self.send("idem_replay", body, hdr)
        self.judge("idem_replay", a1, l1, s1, d1)
        a2, l2, s2, d2 = self.send("idem_replay", body, hdr)
        anomaly, detail = None, ""
        if a1 is not None and replayable(a1.status):
            if a2 is None or a2.status != a1.status or a2.data != a1.data:
                anomaly, detail = "replay differs from the first answer", l1
            elif a2.headers.get("idempotent-replayed") != "true":
                anomaly = "replay without Idempotent-Replayed: true"
        if anomaly:
            self.stats.record("idem_replay", l2, s2, d2, anomaly, detail)
        else:
            self.judge("idem_replay", a2, l2, s2, d2)

    def sc_idem_reuse(self):
        key = self.idem_key()
        hdr = {"Idempotency-Key": key}
        a1, l1, s1, d1 = self.send("idem_reuse", {"input": "hello %d" % self.n,
                                                  "timeout_ms": RUN_TIMEOUT_MS}, hdr)
        self.judge("idem_reuse", a1, l1, s1, d1)
        a2, l2, s2, d2 = self.send("idem_reuse", {"input": "another body %d" % self.n,
                                                  "timeout_ms": RUN_TIMEOUT_MS}, hdr)
        if a1 is not None and replayable(a1.status):
            self.judge("idem_reuse", a2, l2, s2, d2, expect=422)
        else:
            self.judge("idem_reuse", a2, l2, s2, d2)

    def sc_idem_in_progress(self):
        key = self.idem_key()
        body = {"input": "[slow:1500] idempotent %d" % self.n, "timeout_ms": RUN_TIMEOUT_MS}
        (a1, l1, s1, d1), (a2, l2, s2, d2) = self.pair("idem_in_progress", body, body,
                                                       {"Idempotency-Key": key})
        self.judge("idem_in_progress", a1, l1, s1, d1)
        allowed = ("409 idempotency_in_progress",) if d1 > d2 else ()
        if a2 is not None and a2.status == 200 and a2.headers.get("idempotent-replayed") != \
                "true" and a1 is not None and a1.status == 200:
            self.stats.record("idem_in_progress", l2, s2, d2, "the same key ran twice")
        else:
            self.judge("idem_in_progress", a2, l2, s2, d2, allowed=allowed + ("200",))

    def sc_bad_input(self):
        cases = [
            ("invalid_json", b'{"input": "hi"', None, 400),
            ("wrong_type", b'{"input": 42}', None, 400),
            ("unknown_field", b'{"input": "hi", "bogus": 1}', None, 400),
            ("bad_max_iterations", b'{"input": "hi", "max_iterations": 0}', None, 400),
            ("missing_input", b"{}", None, 400),
            ("empty_body", b"", None, 400),
            ("invalid_utf8", b'{"input": "\xff\xfe"}', None, 400),
            ("bad_conversation_id", b'{"input": "hi", "conversation_id": "has space"}', None,
             400),
            ("bad_idempotency_key", b'{"input": "hi"}', {"Idempotency-Key": "k" * 300}, 400),
            ("not_json", b"input=hi", {"Content-Type": "text/plain"}, 415),
            ("oversized", None, None, 413),
            ("wrong_method", None, None, 405),
            ("unknown_path", b'{"input": "hi"}', None, 404),
        ]
        name, body, hdr, expect = self.rng.choice(cases)
        method, path = "POST", "/v1/agent"
        if name == "oversized":
            body = self.a.oversized
        elif name == "wrong_method":
            method, body = "GET", None
        elif name == "unknown_path":
            path = "/v1/agents"
        ans, label, sent, done = self.send("bad_input", body, hdr, keepalive=name != "oversized",
                                           method=method, path=path, raw=True)
        self.judge("bad_input", ans, label, sent, done, expect=expect)

    def sc_disconnect(self):
        """The client gives up while its run is going (or while sending the body)."""
        if self.rng.random() < 0.2:
            self.half_body()
            return
        text = "[slow:%d] %s" % (self.rng.randint(1500, 4000), self.rng.choice(
            ["hello", "weather in %s" % self.rng.choice(CITIES), "what is 6 * 7"]))
        give_up = self.rng.uniform(0.2, 1.0)
        conn = self.fresh(timeout=give_up)
        self.stats.begin()
        sent = now_s()
        try:
            conn.request("POST", "/v1/agent", body=json.dumps(
                {"input": text, "timeout_ms": RUN_TIMEOUT_MS}).encode(),
                headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            ans = Answer(resp.status, {}, resp.read())
            # Answered before the client gave up (a fault can answer at once).
            self.judge("disconnect", ans, ans.label, sent, now_s())
        except socket.timeout:
            self.stats.record("disconnect", "client hung up", sent, now_s())
        except (OSError, http.client.HTTPException) as e:
            self.stats.record("disconnect", "transport %s" % type(e).__name__, sent, now_s(),
                              "no HTTP answer")
        finally:
            conn.close()
            self.stats.end()

    def half_body(self):
        """Announces a body and closes after half of it."""
        body = json.dumps({"input": "x" * 400}).encode()
        sent = now_s()
        try:
            s = socket.create_connection(("127.0.0.1", self.a.agentd_port), timeout=5)
            try:
                s.sendall(b"POST /v1/agent HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                          % len(body) + body[:len(body) // 2])
                time.sleep(0.05)
            finally:
                s.close()
            self.stats.record("disconnect", "client hung up mid-body", sent, now_s())
        except OSError as e:
            self.stats.record("disconnect", "transport %s" % type(e).__name__, sent, now_s(),
                              "no HTTP answer")

    def sc_probes(self):
        path = self.rng.choice(["/health/live", "/health/ready", "/metrics"])
        ans, label, sent, done = self.send("probes", None, method="GET", path=path, raw=True,
                                           keepalive=True)
        # Readiness may be 503 while the models probe is faulted.
        ok = (200, 503) if path == "/health/ready" else (200,)
        anomaly = "no HTTP answer" if ans is None else (
            None if ans.status in ok else "unexpected answer to GET " + path)
        self.stats.record("probes", label, sent, done, anomaly)

    SCENARIOS = [
        ("plain", 14), ("slow", 10), ("weather", 8), ("calculator", 7), ("multi_tool", 5),
        ("save_note", 5), ("web_search", 5), ("markers", 4), ("conversation", 10),
        ("conversation_busy", 4), ("idem_replay", 5), ("idem_reuse", 3), ("idem_in_progress", 2),
        ("bad_input", 9), ("disconnect", 6), ("probes", 3),
    ]

    def run(self):
        names = [n for n, _ in self.SCENARIOS]
        weights = [w for _, w in self.SCENARIOS]
        while not self.stop_evt.is_set():
            if not self.pacer.wait_turn(self.stop_at, self.stop_evt):
                break
            self.n += 1
            with self.stats.lock:
                self.stats.scenarios += 1
            name = self.rng.choices(names, weights)[0]
            try:
                getattr(self, "sc_" + name)()
            except Exception as e:  # a driver bug must not pass as an agentd result
                self.stats.record(name, "driver error %s" % type(e).__name__, now_s(), now_s(),
                                  "driver error", repr(e))
        self.drop_conn()


def replayable(status):
    return 200 <= status < 300 or (400 <= status < 500 and status not in (409, 429)) or \
        status == 502


class Pacer:
    """A global rate: client threads take evenly spaced turns."""

    def __init__(self, rate):
        self.gap = 1.0 / rate
        self.next = now_s()
        self.lock = threading.Lock()

    def wait_turn(self, stop_at, stop_evt):
        with self.lock:
            t = max(self.next, now_s())
            self.next = t + self.gap
        if t >= stop_at:
            return False
        delay = t - now_s()
        return not (delay > 0 and stop_evt.wait(delay)) and not stop_evt.is_set()


# ---- fault rotation ----------------------------------------------------------------------

def admin(port, method, path, body=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body) if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def fault_loop(a, stats, stop_at, stop_evt, log):
    i = 0
    nxt = stats.t0 + a.fault_every_s
    while not stop_evt.is_set() and nxt < stop_at:
        if stop_evt.wait(max(0.0, nxt - now_s())):
            break
        name, fault = FAULTS[i % len(FAULTS)]
        i += 1
        nxt += a.fault_every_s
        try:
            # The previous fault has expired: forget it, and empty the fake's
            # request log, so that the fake's memory stays flat.
            admin(a.fake_port, "DELETE", "/_admin/faults")
            admin(a.fake_port, "DELETE", "/_admin/requests")
            t1 = now_s()
            st, _ = admin(a.fake_port, "POST", "/_admin/faults", dict(fault,
                                                                     duration_ms=a.fault_ms))
            t2 = now_s()
        except (OSError, http.client.HTTPException) as e:
            with stats.lock:
                stats.admin_errors += 1
            log("fault %s: admin API failed: %r" % (name, e))
            continue
        if st != 201:
            with stats.lock:
                stats.admin_errors += 1
            log("fault %s: the fake answered %d" % (name, st))
            continue
        with stats.lock:
            stats.windows.append((t1 - stats.t0, t2 - stats.t0 + a.fault_ms / 1000.0, name))
            stats.fault_counts[name] = stats.fault_counts.get(name, 0) + 1
    try:
        admin(a.fake_port, "DELETE", "/_admin/faults")
    except (OSError, http.client.HTTPException):
        pass


# ---- sampling ----------------------------------------------------------------------------

def cpu_s(pid):
    """CPU seconds (user + system) used so far by pid: fields 14 and 15 of /proc/pid/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def tcp_table():
    """inode -> (state, local port, remote port) for every TCP socket of this netns."""
    t = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    p = line.split()
                    t[p[9]] = (p[3], int(p[1].rsplit(":", 1)[1], 16),
                               int(p[2].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return t


def fd_census(pid, own_port, peer_port):
    """Counts pid's descriptors: total, sockets, and its TCP sockets by role and state.
    'other' = every descriptor but the established client and upstream connections:
    what must stay flat under a steady load."""
    c = {"fds": 0, "sockets": 0, "client": 0, "upstream": 0, "close_wait": 0, "other": 0}
    inodes = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        c["fds"] += 1
        if target.startswith("socket:["):
            c["sockets"] += 1
            inodes.append(target[8:-1])
    table = tcp_table()
    for ino in inodes:
        st, lport, rport = table.get(ino, ("", 0, 0))
        if st == "01" and own_port and lport == own_port:
            c["client"] += 1
        elif st == "01" and peer_port and rport == peer_port:
            c["upstream"] += 1
        elif st == "08":
            c["close_wait"] += 1
    c["other"] = c["fds"] - c["client"] - c["upstream"]
    return c


SAMPLE_COLUMNS = ["t_s", "agentd_rss_kb", "agentd_threads", "agentd_fds", "agentd_fds_other",
                  "agentd_sock_client", "agentd_sock_upstream", "agentd_close_wait",
                  "fake_rss_kb", "fake_fds", "in_flight", "exchanges"]


def take_sample(a, stats):
    ap, fp = a.agentd_pid, a.fake_pid
    c = fd_census(ap, a.agentd_port, a.fake_port)
    fake_fds = len(os.listdir("/proc/%d/fd" % fp))
    with stats.lock:
        inf, ex = stats.in_flight, stats.exchanges
    return [round(now_s() - stats.t0, 1), status_kb(ap, "VmRSS"), status_kb(ap, "Threads"),
            c["fds"], c["other"], c["client"], c["upstream"], c["close_wait"],
            status_kb(fp, "VmRSS"), fake_fds, inf, ex]


def sampler(a, stats, samples, stop_evt, died, log):
    nxt = stats.t0
    last_progress = stats.t0
    while not stop_evt.is_set():
        try:
            s = take_sample(a, stats)
        except (OSError, ValueError) as e:
            died.append("sample failed (%r): agentd or the fake is gone" % e)
            log(died[-1])
            stop_evt.set()
            return
        samples.append(s)
        if now_s() - last_progress >= 30:
            last_progress = now_s()
            log("t=%4.0fs exchanges=%d in_flight=%d agentd rss=%.1fMB fds=%d (other %d) "
                "fake rss=%.1fMB fds=%d" % (s[0], s[11], s[10], s[1] / 1024.0, s[3], s[4],
                                             s[8] / 1024.0, s[9]))
        nxt += a.sample_s
        stop_evt.wait(max(0.0, nxt - now_s()))


# ---- figures -----------------------------------------------------------------------------

def median_in(samples, col, t_from, t_to):
    v = [s[col] for s in samples if t_from <= s[0] <= t_to]
    return statistics.median(v) if v else None


def slope_per_min(samples, col):
    pts = [(s[0], s[col]) for s in samples]
    if len(pts) < 3:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return 60.0 * sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else None


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def main():
    if sys.argv[1:] == ["--rotation-length"]:  # for soak.sh's default warm-up
        print(len(FAULTS))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agentd-port", type=int, required=True)
    ap.add_argument("--agentd-pid", type=int, required=True)
    ap.add_argument("--fake-port", type=int, required=True)
    ap.add_argument("--fake-pid", type=int, required=True)
    ap.add_argument("--duration-s", type=float, required=True)
    ap.add_argument("--warmup-s", type=float, required=True)
    ap.add_argument("--rss-window-s", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=48)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--sample-s", type=float, default=2)
    ap.add_argument("--fault-every-s", type=float, default=5)
    ap.add_argument("--fault-ms", type=int, default=1500)
    ap.add_argument("--max-body-bytes", type=int, default=1048576)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True, help="directory for results.kv and samples.tsv")
    a = ap.parse_args()
    if not (10 <= a.duration_s <= 86400 and 0 < a.warmup_s < a.duration_s
            and 1 <= a.concurrency <= 256 and 0 < a.rate <= 1000 and 0.5 <= a.sample_s <= 60
            and 1 <= a.fault_every_s <= 600 and 100 <= a.fault_ms <= a.fault_every_s * 1000):
        sys.exit("driver: a setting is out of range")
    # Over the limit by a little: agentd reads and drops it, then answers 413.
    a.oversized = json.dumps({"input": "x" * (a.max_body_bytes + 1024)}).encode()

    def log(msg):
        print("soak: " + msg, file=sys.stderr, flush=True)

    admin(a.fake_port, "DELETE", "/_admin/faults")
    admin(a.fake_port, "DELETE", "/_admin/requests")
    cpu0 = (cpu_s(a.agentd_pid), cpu_s(a.fake_pid), sum(os.times()[:2]))
    t0 = now_s()
    stop_at = t0 + a.duration_s
    stats = Stats(t0, a.warmup_s)
    stop_evt, sample_stop = threading.Event(), threading.Event()
    samples, died = [], []
    pacer = Pacer(a.rate)
    smp = threading.Thread(target=sampler, args=(a, stats, samples, sample_stop, died, log),
                           daemon=True)
    smp.start()
    flt = threading.Thread(target=fault_loop, args=(a, stats, stop_at, stop_evt, log),
                           daemon=True)
    flt.start()
    clients = [Client(i, a, stats, pacer, stop_at, stop_evt) for i in range(a.concurrency)]
    for c in clients:
        c.start()
    # Sleep until the end, watching for a dead process (the sampler sets sample_stop).
    while now_s() < stop_at and not sample_stop.is_set():
        sample_stop.wait(min(1.0, max(0.0, stop_at - now_s())))
    load_end = now_s() - t0
    end_sample = None
    cpu = None
    if not died:
        try:
            end_sample = take_sample(a, stats)
            samples.append(end_sample)
            cpu = (cpu_s(a.agentd_pid) - cpu0[0], cpu_s(a.fake_pid) - cpu0[1],
                   sum(os.times()[:2]) - cpu0[2])
        except (OSError, ValueError) as e:
            died.append("final sample failed (%r)" % e)
    stop_evt.set()
    flt.join(15)
    # Clients finish the exchange they are in: every one is bounded by CLIENT_TIMEOUT_S.
    join_until = now_s() + 2 * CLIENT_TIMEOUT_S + 5
    for c in clients:
        c.join(max(0.0, join_until - now_s()))
    unfinished = sum(1 for c in clients if c.is_alive())
    sample_stop.set()
    smp.join(a.sample_s + 5)

    # Drained: no request in flight; established client connections should go to 0.
    drained = None
    if not died:
        for _ in range(50):
            try:
                drained = fd_census(a.agentd_pid, a.agentd_port, a.fake_port)
            except OSError as e:
                died.append("drained census failed (%r)" % e)
                drained = None
                break
            if drained["client"] == 0:
                break
            time.sleep(0.1)

    with open(os.path.join(a.out, "samples.tsv"), "w") as f:
        f.write("\t".join(SAMPLE_COLUMNS) + "\n")
        for s in samples:
            f.write("\t".join(str(x) for x in s) + "\n")

    col = {n: i for i, n in enumerate(SAMPLE_COLUMNS)}
    # RSS "at warm-up end" and "at the end": the median of the samples in a
    # window ending there (one sample moves with what is in flight at that instant).
    w = min(a.rss_window_s, a.warmup_s / 2.0)
    # The load's samples after the warm-up (not those taken while draining).
    after = [s for s in samples if a.warmup_s <= s[0] <= load_end + 0.5]
    kv = [("duration_s", "%.1f" % load_end), ("warmup_s", "%g" % a.warmup_s),
          ("rss_window_s", "%g" % w), ("concurrency", a.concurrency), ("rate_per_s", a.rate),
          ("sample_s", a.sample_s), ("fault_every_s", a.fault_every_s),
          ("fault_ms", a.fault_ms), ("seed", a.seed), ("samples", len(samples)),
          ("scenarios", stats.scenarios), ("exchanges", stats.exchanges),
          ("exchanges_after_warmup", stats.exchanges_after_warmup),
          ("max_in_flight", stats.max_in_flight), ("keepalive_retries", stats.keepalive_retries),
          ("clients_unfinished", unfinished), ("fault_admin_errors", stats.admin_errors),
          ("faults_injected", sum(stats.fault_counts.values())),
          ("fault_explained_outside_faults", stats.explained_outside_faults),
          ("anomalies", sum(stats.anomalies.values())),
          ("process_gone", died[0] if died else "")]
    rss_w = median_in(samples, col["agentd_rss_kb"], a.warmup_s - w, a.warmup_s)
    rss_e = median_in(samples, col["agentd_rss_kb"], load_end - w, load_end + 1)
    if rss_w and rss_e:
        kv += [("agentd_rss_warmup_kb", "%d" % rss_w), ("agentd_rss_end_kb", "%d" % rss_e),
               ("agentd_rss_growth_pct", "%.2f" % (100.0 * (rss_e - rss_w) / rss_w))]
    if after:
        for name in ("agentd_rss_kb", "agentd_fds", "agentd_fds_other", "agentd_close_wait",
                     "fake_rss_kb", "fake_fds"):
            v = [s[col[name]] for s in after]
            kv += [(name + "_min_after_warmup", min(v)), (name + "_max_after_warmup", max(v))]
        sl = slope_per_min(after, col["agentd_rss_kb"])
        if sl is not None:
            kv.append(("agentd_rss_slope_kb_per_min_after_warmup", "%.1f" % sl))
    if samples:
        kv += [("agentd_rss_first_kb", samples[0][col["agentd_rss_kb"]]),
               ("fake_rss_first_kb", samples[0][col["fake_rss_kb"]])]
    if end_sample:
        kv += [("agentd_rss_end_point_kb", end_sample[col["agentd_rss_kb"]]),
               ("agentd_fds_end_point", end_sample[col["agentd_fds"]]),
               ("fake_rss_end_point_kb", end_sample[col["fake_rss_kb"]])]
    if drained:
        kv += [("agentd_fds_drained", drained["fds"]),
               ("agentd_sock_client_drained", drained["client"]),
               ("agentd_sock_upstream_drained", drained["upstream"]),
               ("agentd_close_wait_drained", drained["close_wait"]),
               ("agentd_fds_other_drained", drained["other"])]
    if cpu:
        kv += [("agentd_cpu_s", "%.1f" % cpu[0]), ("fake_cpu_s", "%.1f" % cpu[1]),
               ("driver_cpu_s", "%.1f" % cpu[2])]
    lat = sorted(stats.ok_latencies)
    kv += [("ok_latency_p50_ms", "%.1f" % (1000 * percentile(lat, 50))),
           ("ok_latency_p99_ms", "%.1f" % (1000 * percentile(lat, 99)))]
    for label, n in sorted(stats.by_status.items(), key=lambda x: (-x[1], x[0])):
        kv.append(("status[%s]" % label, n))
    for (sc, label), n in sorted(stats.by_scenario.items()):
        kv.append(("scenario[%s][%s]" % (sc, label), n))
    for name, n in sorted(stats.fault_counts.items()):
        kv.append(("fault[%s]" % name, n))
    for reason, n in sorted(stats.anomalies.items(), key=lambda x: -x[1]):
        kv.append(("anomaly[%s]" % reason, n))
    for i, ex in enumerate(stats.examples):
        kv.append(("anomaly_example_%02d" % i, ex.replace("\n", " ")))
    with open(os.path.join(a.out, "results.kv"), "w") as f:
        for k, v in kv:
            f.write("%s=%s\n" % (k, v))
    return 3 if died else 0


if __name__ == "__main__":
    sys.exit(main())
