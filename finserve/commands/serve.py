"""`finserve up` (the whole stack on Ray Serve) and `finserve ask` (one request through it)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Serving config YAML (default: embedded).")
]


def up(
    config: ConfigOpt = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default FINSERVE_HTTP_PORT or 8000).")] = None,
    host: Annotated[
        str | None, typer.Option(help="Bind address (default FINSERVE_HTTP_HOST or 127.0.0.1).")
    ] = None,
    grpc_port: Annotated[
        int | None, typer.Option(help="gRPC port (default FINSERVE_GRPC_PORT or 8081).")
    ] = None,
    ingest: Annotated[bool, typer.Option(help="Build the retrieval index first if it is missing.")] = True,
) -> None:
    """Start the guarded RAG stack on a local Ray; Ctrl-C or SIGTERM shuts it down cleanly."""
    from rich.console import Console

    from finserve.serving.runner import run_stack

    console = Console(stderr=True)
    from finserve.serving.config import load_serving_config

    cfg = load_serving_config(config)
    if port is not None:
        cfg.gateway.http_port = port
    if host is not None:
        cfg.gateway.host = host
    if grpc_port is not None:
        cfg.gateway.grpc_port = grpc_port
    _bind_for_auth(cfg, console)

    stop = threading.Event()
    code = run_stack(cfg, stop, console=console, ingest_if_missing=ingest)
    raise typer.Exit(code)


def drain(
    config: ConfigOpt = None,
    address: Annotated[
        str,
        typer.Option(
            help="Ray cluster to join: default the `finserve up` running on this data dir, else Ray's auto lookup "
            "(RAY_ADDRESS, or the cluster `ray start` began on this node: a KubeRay pod's)."
        ),
    ] = "auto",
    join_timeout: Annotated[
        float, typer.Option(help="Most seconds to join the cluster, on top of the drain's grace_s.")
    ] = 10.0,
) -> None:
    """Drain a running stack: every Gateway replica answers not ready, then wait until none has a request in
    flight (the config's drain section). The RayService head pod's preStop hook; a second signal ends the wait.
    Exit status 0: drained (or nothing was serving); 1: the grace ran out; 2: the cluster could not be joined
    (or the drain config is invalid)."""
    import signal
    import time

    import yaml
    from rich.console import Console

    from finserve.serving import run_record
    from finserve.serving.drain.config import load_drain_config
    from finserve.serving.drain.coordinator import JoinError, drain_cluster, token_found
    from finserve.serving.drain.decide import NOT_JOINED, DrainVerdict, exit_code
    from finserve.serving.drain.join import Cluster, plan_join
    from finserve.serving.paths import data_dir

    console = Console(stderr=True)
    try:
        drain_cfg = load_drain_config(str(config) if config else None, os.environ)
    except (OSError, ValueError, yaml.YAMLError) as exc:  # ValueError: pydantic's ValidationError too
        console.print(f"[red]drain config: {exc}[/]", soft_wrap=True)
        raise typer.Exit(NOT_JOINED) from exc
    try:
        record = run_record.read(data_dir())
    except OSError:  # no data dir to be had (a read-only container): no local stack either
        record = None
    local = (
        Cluster(record.pid, record.ray_address, record.ray_auth)
        if record is not None and record.ray_address
        else None
    )
    plan = plan_join(address, local, os.environ, token_found(os.environ, Path.home()))
    forced = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: forced.set())
    t0 = time.monotonic()
    verdicts: list[DrainVerdict | None] = []  # filled by the worker thread: the drain's verdict, or
    errors: list[str] = []  # why the cluster could not be joined

    def say(line: str) -> None:
        console.print(f"{time.monotonic() - t0:5.1f} s  {line}", soft_wrap=True)

    def work() -> None:
        try:
            verdicts.append(drain_cluster(drain_cfg, plan, forced, say))
        except JoinError as exc:
            errors.append(str(exc))

    # Joining can hang (a GCS that went away is retried for a minute): the whole command is bounded.
    worker = threading.Thread(target=work, name="drain", daemon=True)
    worker.start()
    worker.join(join_timeout + drain_cfg.grace_s + 2)
    if worker.is_alive():
        console.print(
            f"[red]drain gave up after {time.monotonic() - t0:.1f} s: no answer from the Ray cluster at "
            f"{plan.address} ({plan.source})[/]",
            soft_wrap=True,
        )
        raise typer.Exit(NOT_JOINED)
    if errors:
        console.print(f"[red]{errors[0]}[/]", soft_wrap=True)
        raise typer.Exit(NOT_JOINED)
    verdict = verdicts[0] if verdicts else None
    reason = "nothing was serving" if verdict is None else verdict.reason
    console.print(f"drain over after {time.monotonic() - t0:.1f} s ({reason})")
    raise typer.Exit(exit_code(verdict))


def _bind_for_auth(cfg, console) -> None:  # noqa: ANN001 - ServingConfig and rich Console, imported lazily
    """No credential configured: loopback only; auth.mode none elsewhere: a warning (serving/access/policy.py)."""
    from finserve.serving.access import Authenticator
    from finserve.serving.access.policy import bind

    auth = Authenticator(cfg.auth, cfg.gateway.default_tenant, cfg.gateway.api_key_env)
    decision = bind(cfg.gateway.host, cfg.auth.mode, auth.enabled)
    cfg.gateway.host = decision.host
    console.print(f"[yellow]{decision.message}[/]" if decision.warn else decision.message)


def ask(
    question: Annotated[str, typer.Argument(help="The customer's question.")],
    url: Annotated[str, typer.Option(help="Gateway base URL (with --grpc: HOST:PORT).")] = "",
    model: Annotated[str, typer.Option(help="Model name (see GET /v1/models).")] = "finserve-banking",
    adapter: Annotated[str | None, typer.Option(help="Force an adapter version NAME@VERSION.")] = None,
    raw: Annotated[bool, typer.Option("--json", help="Print the whole JSON response.")] = False,
    max_tokens: Annotated[int, typer.Option(help="Most tokens to generate.")] = 96,
    grpc: Annotated[bool, typer.Option("--grpc", help="Ask over gRPC (Open Inference Protocol v2).")] = False,
) -> None:
    """Send one question through the running stack and print the guarded answer."""
    if grpc:
        _ask_grpc(question, url, model, adapter, raw, max_tokens)
        return
    import httpx
    from rich.console import Console

    base = url or f"http://127.0.0.1:{os.environ.get('FINSERVE_HTTP_PORT', '8000')}"
    headers = {"x-finserve-adapter": adapter} if adapter else {}
    if key := os.environ.get("FINSERVE_TOKEN") or os.environ.get("FINSERVE_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens}
    try:
        resp = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=300)
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot reach {base}: {exc}", err=True)
        raise typer.Exit(2) from exc
    data = resp.json()
    if raw or resp.status_code != 200:
        typer.echo(json.dumps(data, indent=2))
        raise typer.Exit(0 if resp.status_code == 200 else 1)
    info = data["finserve"]
    console = Console()
    console.print(data["choices"][0]["message"]["content"])
    console.print(
        f"[dim]intent={info['intent']} adapter={info['adapter']} citations={','.join(info['citations'])} "
        f"pii={info['pii']} total={info['timings_ms'].get('total')} ms[/]"
    )


def _ask_grpc(
    question: str, target: str, model: str, adapter: str | None, raw: bool, max_tokens: int
) -> None:
    import grpc
    from google.protobuf.json_format import MessageToJson
    from rich.console import Console

    from finserve.serving.oip_grpc import grpc_predict_v2_pb2 as pb
    from finserve.serving.oip_grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    target = target or f"127.0.0.1:{os.environ.get('FINSERVE_GRPC_PORT', '8081')}"
    metadata = [("x-finserve-adapter", adapter)] if adapter else []
    if key := os.environ.get("FINSERVE_TOKEN") or os.environ.get("FINSERVE_API_KEY"):
        metadata.append(("authorization", f"Bearer {key}"))
    text = pb.ModelInferRequest.InferInputTensor(
        name="text",
        datatype="BYTES",
        shape=[1],
        contents=pb.InferTensorContents(bytes_contents=[question.encode()]),
    )
    request = pb.ModelInferRequest(
        model_name=model, inputs=[text], parameters={"max_tokens": pb.InferParameter(int64_param=max_tokens)}
    )
    with grpc.insecure_channel(target) as channel:
        try:
            resp = GRPCInferenceServiceStub(channel).ModelInfer(request, metadata=metadata, timeout=300)
        except grpc.RpcError as exc:
            typer.echo(f"error: {exc.code().name}: {exc.details()}", err=True)
            raise typer.Exit(1) from exc
    if raw:
        typer.echo(MessageToJson(resp))
        return
    out = {t.name: t.contents.bytes_contents[0].decode() for t in resp.outputs}
    console = Console()
    console.print(out["text"])
    console.print(
        f"[dim]intent={out['intent']} adapter={out['adapter']} citations={out['citations']} "
        f"request_id={out['request_id']}[/]"
    )


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(drain)
    app.command()(ask)


if __name__ == "__main__":  # pragma: no cover
    typer.run(up)  # exits with the command's status itself
