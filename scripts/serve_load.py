#!/usr/bin/env python3
"""Load test for `realnet serve` (Python standard library only).

N client threads, each with its own keep-alive connection, POST images from a folder to
/v1/predict back to back for a fixed time; prints one JSON object: requests, errors, throughput and
latency percentiles. Bounded in time (--seconds) and count (--max-requests); it talks only to the
--url given (use a loopback address).

    python3 scripts/serve_load.py --url http://127.0.0.1:8080 \
        --images ../shared/data/mvtec_ad/bottle/test --connections 16 --seconds 60
"""
import argparse
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def images(folder):
    out = []
    for root, _, files in os.walk(folder):
        for f in sorted(files):
            if f.lower().endswith(EXTS):
                with open(os.path.join(root, f), "rb") as fh:
                    out.append(fh.read())
    return out


def percentile(sorted_v, p):
    if not sorted_v:
        return None
    return sorted_v[min(len(sorted_v) - 1, int(round(p / 100 * (len(sorted_v) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--images", required=True, help="folder of images (searched recursively)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-requests", type=int, default=100000)
    ap.add_argument("--timeout", type=float, default=60, help="client socket timeout, seconds")
    a = ap.parse_args()

    url = urllib.parse.urlparse(a.url)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("refusing a non-loopback --url: this is a local load test")
    data = images(a.images)
    if not data:
        sys.exit(f"no images under {a.images}")

    # Wait (up to a minute) for the server to answer /healthz, so start-up is not counted as errors.
    for _ in range(120):
        try:
            c = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=5)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        time.sleep(0.5)
    else:
        sys.exit(f"{a.url}/healthz does not answer")

    lock = threading.Lock()
    latencies, statuses, errors, sent = [], {}, [], [0]
    deadline = time.monotonic() + a.seconds

    def worker(i):
        conn = None
        k = i
        while time.monotonic() < deadline:
            with lock:
                if sent[0] >= a.max_requests:
                    return
                sent[0] += 1
            body = data[k % len(data)]
            k += a.connections
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=a.timeout)
                conn.request("POST", "/v1/predict", body, {"Content-Type": "application/octet-stream"})
                r = conn.getresponse()
                payload = r.read()
                dt = time.monotonic() - t0
                ok = r.status == 200 and "predictions" in json.loads(payload)
                with lock:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    if ok:
                        latencies.append(dt)
                    else:
                        errors.append(f"{r.status}: {payload[:200]!r}")
            except Exception as e:  # a dropped connection or timeout counts as an error
                with lock:
                    errors.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    t_start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(a.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t_start
    lat = sorted(latencies)
    ms = lambda v: None if v is None else round(v * 1000, 1)
    print(json.dumps({
        "connections": a.connections,
        "seconds": round(wall, 1),
        "images": len(data),
        "requests_ok": len(lat),
        "errors": len(errors),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "throughput_rps": round(len(lat) / wall, 2),
        "latency_ms": {"p50": ms(percentile(lat, 50)), "p90": ms(percentile(lat, 90)),
                       "p99": ms(percentile(lat, 99)), "max": ms(lat[-1] if lat else None)},
        "first_errors": errors[:5],
    }, indent=1))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
