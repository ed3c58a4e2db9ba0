#!/usr/bin/env python3
"""driver.py — the blip of benchmark (d) of bench/run.sh, and the upstream rate around it.

Runs beside the load (wrk through bench/wrk/post.lua, started by run.sh at the
same moment): at --at-s it makes the fake upstream reset every LLM request that
reaches it during --blip-ms (a fault with reset and duration_ms), and all along
it samples the fake's count of LLM requests (GET /_admin/stats) every
--sample-ms. It reports the upstream's request rate in the seconds around the
blip and compares the rate one second after the blip with the rate before it:
"full upstream rate 1 s after the blip". Standard library only; every loop is
bounded in count and time.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "incident"))
from driver import admin, monotonic_ms  # noqa: E402 (bench/incident/driver.py)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fake-port", type=int, required=True)
    ap.add_argument("--at-s", type=float, default=5.0, help="blip start, from now")
    ap.add_argument("--blip-ms", type=int, default=250)
    ap.add_argument("--duration-s", type=float, default=12.0, help="sampling ends then")
    ap.add_argument("--sample-ms", type=int, default=100)
    ap.add_argument("--kv-out", default=None, help="the figures as key=value lines")
    a = ap.parse_args()
    if not (4 <= a.at_s < a.duration_s <= 60 and 1 <= a.blip_ms <= 10000
            and 10 <= a.sample_ms <= 1000 and a.at_s * 1000 + a.blip_ms + 2000 <= a.duration_s * 1000):
        sys.exit("driver: need 4 <= at_s, the blip and 2 s after it within duration_s <= 60, "
                 "blip 1..10000 ms, sample 10..1000 ms")

    t0 = monotonic_ms()
    samples = []  # (driver ms, LLM requests the fake has seen)
    blip0 = None
    for _ in range(int(a.duration_s * 1000 / a.sample_ms) + 10):
        now = monotonic_ms()
        if now >= t0 + a.duration_s * 1000:
            break
        if blip0 is None and now >= t0 + a.at_s * 1000:
            st, _ = admin(a.fake_port, "POST", "/_admin/faults",
                          {"route": "messages", "reset": True, "duration_ms": a.blip_ms})
            if st != 201:
                sys.exit("driver: the fake refused the fault (%d)" % st)
            blip0 = (now + monotonic_ms()) / 2.0
        st, stats = admin(a.fake_port, "GET", "/_admin/stats")
        if st != 200:
            sys.exit("driver: GET /_admin/stats answered %d" % st)
        samples.append(((now + monotonic_ms()) / 2.0, stats["messages"]))
        wait = (now + a.sample_ms - monotonic_ms()) / 1000.0
        if wait > 0:
            time.sleep(wait)
    _, faults = admin(a.fake_port, "GET", "/_admin/faults")
    reset = sum(f.get("hits", 0) for f in faults)
    blip1 = blip0 + a.blip_ms

    def count_at(t):
        """LLM requests seen by t (linear between the samples around it)."""
        prev = samples[0]
        for s in samples[1:]:
            if s[0] >= t:
                if s[0] == prev[0]:
                    return s[1]
                return prev[1] + (s[1] - prev[1]) * (t - prev[0]) / (s[0] - prev[0])
            prev = s
        return samples[-1][1]

    def rate(t_from, t_to):
        return (count_at(t_to) - count_at(t_from)) * 1000.0 / (t_to - t_from)

    before = rate(blip0 - 3000, blip0)
    after = rate(blip1 + 1000, blip1 + 2000)
    per_s = [(k, rate(blip0 + k * 1000, blip0 + (k + 1) * 1000))
             for k in range(-3, int((samples[-1][0] - blip0) // 1000))]
    res = {
        "blip_at_s": "%.2f" % ((blip0 - t0) / 1000.0), "blip_ms": a.blip_ms,
        "upstream_requests_reset": reset,
        "upstream_per_s_3s_before_blip": "%.0f" % before,
        "upstream_per_s_1s_after_blip": "%.0f" % after,
        "upstream_rate_after_pct_of_before": "%.1f" % (100.0 * after / before if before else 0),
        "upstream_per_s_from_blip_start": " ".join("%d:%.0f" % kv for kv in per_s),
    }
    out = "".join("%s=%s\n" % kv for kv in res.items())
    if a.kv_out:
        with open(a.kv_out, "w") as f:
            f.write(out)
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
