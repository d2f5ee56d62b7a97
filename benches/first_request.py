"""Time from starting `evalr run` to its first request reaching the server (issue 16).

A chat-completions server on 127.0.0.1 notes the monotonic time each run's first request
arrives and answers every request at once with the letter "A" (with logprobs), so the run
goes on to its end. The clock starts just before the evalr process is spawned; what is
measured is everything evalr does before it sends: process start, argument parsing, program,
dataset and model resolution, results folder, tokenizer, TLS and HTTP client set-up.

Usage: python3 benches/first_request.py EVALR_BINARY RUNS -- EVALR_RUN_ARGS...
(the endpoint and key are put in the environment; pass --model azure:DEPLOYMENT).
Prints one line per run and the median, in milliseconds.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FIRST = {"at": None}
LOCK = threading.Lock()

ANSWER = json.dumps(
    {
        "id": "bench",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "A"},
                "logprobs": {
                    "content": [
                        {
                            "token": "A",
                            "logprob": -0.1,
                            "top_logprobs": [
                                {"token": "A", "logprob": -0.1},
                                {"token": "B", "logprob": -2.5},
                                {"token": "C", "logprob": -3.0},
                                {"token": "D", "logprob": -3.5},
                            ],
                        }
                    ]
                },
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 1, "total_tokens": 101},
    }
).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        now = time.monotonic()
        with LOCK:
            if FIRST["at"] is None:
                FIRST["at"] = now
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    def log_message(self, *args):
        pass


def main():
    binary, runs = sys.argv[1], int(sys.argv[2])
    args = sys.argv[sys.argv.index("--") + 1 :]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(
        os.environ,
        AZURE_OPENAI_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}",
        AZURE_OPENAI_API_KEY="bench-key",
    )
    times = []
    for i in range(runs + 1):  # the first run warms the page cache and is not counted
        with tempfile.TemporaryDirectory() as results:
            FIRST["at"] = None
            start = time.monotonic()
            done = subprocess.run(
                [binary, "run", *args, "--results-dir", f"{results}/run"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if done.returncode != 0:
                sys.exit(f"evalr failed ({done.returncode}): {done.stderr.decode()}")
            if FIRST["at"] is None:
                sys.exit("evalr finished without sending a request")
            if i > 0:
                ms = (FIRST["at"] - start) * 1000
                times.append(ms)
                print(f"run {i}: first request after {ms:.1f} ms")
    print(f"median {statistics.median(times):.1f} ms (min {min(times):.1f}, max {max(times):.1f})")


if __name__ == "__main__":
    main()
