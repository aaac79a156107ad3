"""What is measured: the mock upstream, and each gateway in front of it, with the exact command,
address and headers a client uses. Gateways run on ``GATEWAY_CORE``; the mock and the load
generators share ``LOAD_CORE``. With ``LLMTAP_BENCH_LAYOUT=unpinned`` nothing is pinned: every
process may run on both cores, as on a machine nobody tuned.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Service

BENCH_DIR = Path(__file__).resolve().parent.parent
ROOT = BENCH_DIR.parent
WORK = BENCH_DIR / ".work"
UNPINNED = os.environ.get("LLMTAP_BENCH_LAYOUT", "pinned") == "unpinned"
LOAD_CORE = "0-1" if UNPINNED else "0"
GATEWAY_CORE = "0-1" if UNPINNED else "1"
PYTHON = str(ROOT / ".venv" / "bin" / "python")

MOCK_PORT = 18100
MOCK_TLS_PORT = 18110
PORTS = {
    "nginx": 18101,
    "llmtap": 18102,
    "litellm": 18103,
    "portkey": 18104,
    "llmtap-proxy": 18105,
    # the same proxy from another checkout (LLMTAP_BENCH_BASE_SRC): "costs what it cost before"
    "llmtap-proxy-base": 18106,
    "llmtap-base": 18107,
    # the same gateways with the mock upstream over TLS (bench/tls.py)
    "nginx-tls": 18111,
    "llmtap-tls": 18112,
    "llmtap-proxy-tls": 18113,
}
CHAT_PATH = "/v1/chat/completions"
AUTH = {"Authorization": "Bearer sk-bench-not-a-real-key"}
GATEWAYS = ("nginx", "llmtap", "llmtap-proxy", "litellm", "portkey")


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    headers: dict[str, str] = field(default_factory=dict)
    path: str = CHAT_PATH

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


def mock_service(logs: Path) -> Service:
    return Service(
        "mock",
        [PYTHON, "-m", "llmtap", "mock-upstream", "--host", "127.0.0.1", "--port", str(MOCK_PORT)],
        MOCK_PORT,
        LOAD_CORE,
        logs / "mock.log",
    )


def target(name: str) -> Target:
    if name == "direct":
        return Target("direct", MOCK_PORT, dict(AUTH))
    if name == "portkey":
        headers = {
            **AUTH,
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": f"http://127.0.0.1:{MOCK_PORT}/v1",
        }
        return Target("portkey", PORTS["portkey"], headers)
    return Target(name, PORTS[name], dict(AUTH))


def llmtap_env(data_dir: Path, tls_ca: Path | None = None) -> dict[str, str]:
    # this checkout's llmtap, not the one the venv was installed from (a worktree shares the
    # main checkout's venv, whose editable install points at the main checkout's src/)
    env = {"PYTHONPATH": str(ROOT / "src"), "LLMTAP_DATA_DIR": str(data_dir)}
    if tls_ca is None:
        return {**env, "LLMTAP_OPENAI_BASE_URL": f"http://127.0.0.1:{MOCK_PORT}"}
    return {
        **env,
        "LLMTAP_OPENAI_BASE_URL": f"https://localhost:{MOCK_TLS_PORT}",
        "LLMTAP_UPSTREAM_CA_FILE": str(tls_ca),
    }


def gateway_service(name: str, logs: Path, run_dir: Path) -> Service:
    """``<gateway>-tls`` is the same gateway with the mock over TLS (its CA in
    ``run_dir/tls/ca.pem``, written by ``bench.tls.make_certs``)."""
    port = PORTS[name]
    tls_ca = run_dir / "tls" / "ca.pem" if name.endswith("-tls") else None
    base = name.removesuffix("-tls")
    if base == "nginx":
        template = "nginx-tls.conf.in" if tls_ca else "nginx.conf.in"
        conf = (BENCH_DIR / template).read_text()
        conf = conf.replace("@WORK@", str(run_dir)).replace("@PORT@", str(port))
        conf = conf.replace("@MOCK_PORT@", str(MOCK_TLS_PORT if tls_ca else MOCK_PORT))
        conf = conf.replace("@CA_FILE@", str(tls_ca))
        (run_dir / ("nginx-tls-tmp" if tls_ca else "nginx-tmp")).mkdir(parents=True, exist_ok=True)
        path = run_dir / f"{name}.conf"
        path.write_text(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        return Service(
            name,
            [nginx, "-c", str(path), "-e", str(run_dir / f"{name}-error.log")],
            port,
            GATEWAY_CORE,
            logs / f"{name}.log",
        )
    if base in ("llmtap", "llmtap-base"):
        data = run_dir / f"{name}-data"
        if data.exists():
            shutil.rmtree(data)
        argv = [PYTHON, "-m", "llmtap", "--data-dir", str(data), "serve"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--processes", "1"]
        env = llmtap_env(data, tls_ca)
        if base == "llmtap-base":
            env["PYTHONPATH"] = _base_src("llmtap-base")
        return Service(name, argv, port, GATEWAY_CORE, logs / f"{name}.log", env=env)
    if base in ("llmtap-proxy", "llmtap-proxy-base"):
        # the hot path alone: the proxy process publishing to the embedded queue, with no
        # consumer on this machine (the distributed layout, where consumers run elsewhere)
        data = run_dir / f"{name}-data"
        if data.exists():
            shutil.rmtree(data)
        argv = [PYTHON, "-m", "llmtap", "--data-dir", str(data), "proxy"]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        env = llmtap_env(data, tls_ca)
        if base == "llmtap-proxy-base":
            env["PYTHONPATH"] = _base_src(base)
        return Service(name, argv, port, GATEWAY_CORE, logs / f"{name}.log", env=env)
    if name == "litellm":
        conf = (BENCH_DIR / "litellm.yaml.in").read_text().replace("@MOCK_PORT@", str(MOCK_PORT))
        path = run_dir / "litellm.yaml"
        path.write_text(conf)
        argv = [str(WORK / "litellm" / "bin" / "litellm"), "--config", str(path)]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
        env = {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "NO_DOCS": "True"}
        return Service(
            name, argv, port, GATEWAY_CORE, logs / "litellm.log", env=env, start_timeout_s=180.0
        )
    if name == "portkey":
        entry = WORK / "portkey/node_modules/@portkey-ai/gateway/build/start-server.js"
        argv = ["node", str(BENCH_DIR / "portkey.mjs"), str(entry), f"--port={port}", "--headless"]
        return Service(
            name, argv, port, GATEWAY_CORE, logs / "portkey.log", env={"NODE_ENV": "production"}
        )
    raise ValueError(f"unknown gateway {name!r}")


def _base_src(name: str) -> str:
    """An older checkout's src/, put first on the path of a ``*-base`` gateway, which runs with
    this venv's dependencies: "costs what it cost before", measured in the same run."""
    src = os.environ.get("LLMTAP_BENCH_BASE_SRC", "")
    if not src or not (Path(src) / "llmtap" / "__init__.py").is_file():
        raise ValueError(f"{name} needs LLMTAP_BENCH_BASE_SRC=<checkout>/src")
    return src


def stream_client_argv() -> list[str]:
    return ["taskset", "-c", LOAD_CORE, PYTHON, "-m", "bench.streamclient"]


def python() -> str:
    return sys.executable
