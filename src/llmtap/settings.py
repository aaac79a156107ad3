"""The one settings object, read once at start-up and passed down.

Every value can be set from the environment (``LLMTAP_<NAME>``), from a TOML file named by
``LLMTAP_CONFIG`` or ``--config``, or from CLI flags (which win). Adapters are picked by URL:
``queue_url``, ``records_url``, ``analytics_url`` and ``bodies_url``; left empty, they default to
the embedded adapters under ``data_dir``.

Every field carries a docstring: its first sentence is the field's ``--help`` line, and the
comment above a group of fields (``# proxy``, ``# api`` …) names the section that decides which
commands take it as an option (``llmtap.cli_options``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TOPIC_LOGS = "request-response-logs"
TOPIC_DLQ = "request-response-logs-dlq"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LLMTAP_", extra="forbid", frozen=True, use_attribute_docstrings=True
    )

    # general
    data_dir: Path = Path("llmtap-data")
    """Directory of everything embedded (queue, records, analytics, bodies, spool)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level of log lines written to stderr."""
    key_cache_ttl_s: float = 5.0
    """How long the proxy, the API and the consumer trust an answer about one llmtap key (its
    organization, or that it has none): a revoked key stops working at most this long after
    ``llmtap keys revoke``."""

    # adapters, chosen by URL (empty = embedded default under data_dir)
    queue_url: str = ""
    """Queue: ``kafka://host:9092``; empty is SQLite at ``<data_dir>/queue.db``."""
    records_url: str = ""
    """Records store: ``postgresql://user:pw@host/db``; empty is SQLite at ``<data_dir>/records.db``."""
    analytics_url: str = ""
    """Analytics store: ``clickhouse://host:8123``; empty is ``records://`` (the metrics are
    computed from the records store) when the records store is Postgres, else chDB at
    ``<data_dir>/analytics``."""
    bodies_url: str = ""
    """Body store: ``s3://bucket?endpoint=http://host:8333``; empty is ``<data_dir>/bodies``."""
    cache_url: str = ""
    """The gateway's shared state (rate-limit counters, the response cache): ``redis://host:6379/0``
    so that many proxy machines share it; empty keeps it in SQLite files under ``data_dir``
    (``ratelimits.db``, ``cache.db``), shared by the proxy processes of one machine."""

    # proxy (hot path)
    proxy_host: str = "127.0.0.1"
    """Address the proxy listens on."""
    proxy_port: int = 8787
    """Port the proxy listens on."""
    proxy_processes: int = 1
    """Proxy processes sharing the port (``SO_REUSEPORT``)."""
    openai_base_url: str = "https://api.openai.com"
    """Where OpenAI calls (``/v1/...``) are forwarded."""
    anthropic_base_url: str = "https://api.anthropic.com"
    """Where Anthropic calls (``/v1/messages``...) are forwarded."""
    routes: dict[str, str] = Field(default_factory=dict)
    """Named OpenAI-compatible upstreams: ``/router/<name>/v1/...`` is forwarded to ``routes[name]``."""
    allowed_target_hosts: list[str] = Field(default_factory=list)
    """Hosts (``host`` or ``host:port``) a ``Helicone-Target-URL`` may name besides known providers."""
    allow_private_targets: bool = False
    """Let target URLs resolve to loopback/private/link-local addresses (tests, local models)."""
    max_request_body_bytes: int = 32 * 1024 * 1024
    """Largest request body the proxy forwards: larger gets a 413."""
    max_capture_bytes: int = 16 * 1024 * 1024
    """Bytes of each request and response body kept for the log; the rest is forwarded, not kept."""
    max_request_head_bytes: int = 64 * 1024
    """Request line + headers of one request (and its chunked trailers): larger gets a 431."""
    max_request_headers: int = 256
    """Header fields in one request: more gets a 431."""
    header_read_timeout_s: float = 15.0
    """A request head must arrive whole within this, counted from connect (first request) or
    from its first byte (later ones): else a 408 and the connection is closed."""
    body_read_timeout_s: float = 60.0
    """A request body must arrive whole within this once its head is in: else a 408 and the
    connection is closed (checked by the once-a-second sweep, so up to a second later)."""
    max_pipelined_requests: Annotated[int, Field(ge=1)] = 32
    """Complete requests one connection may queue behind the one being answered (HTTP/1.1
    pipelining); the next one gets a 429 after the answers ahead of it, then the connection
    closes."""
    keepalive_timeout_s: float = 75.0
    """An idle keep-alive client connection (no byte of a next request) is closed after this."""
    connect_timeout_s: float = 10.0
    """Time to connect to a provider before the call is answered 502."""
    idle_timeout_s: float = 300.0
    """Silence from a provider (between chunks) before the call is cut off."""
    total_timeout_s: float = 900.0
    """Longest a whole call may take before it is cut off."""
    max_upstream_head_bytes: int = 64 * 1024
    """Largest response head (status line, headers, interim 1xx replies) taken from a provider;
    beyond it the call is answered 502 ``upstream_head_too_large`` and the connection dropped."""
    upstream_drain_timeout_s: float = 1.0
    """A client that leaves right after a stream's final event (``data: [DONE]``,
    ``message_stop``, ``response.completed``) has its whole answer: the proxy then reads the
    provider's last bytes for at most this long so the connection can be reused; past it the
    connection is dropped (the call is logged complete either way)."""
    upstream_drain_max_bytes: int = 64 * 1024
    """The most the proxy reads from a provider after such a client left: past it the
    connection is dropped."""
    inject_stream_usage: bool = True
    """Ask OpenAI streams for their usage (``stream_options.include_usage``) and hide the extra
    chunk from the client."""
    spool_max_bytes: int = 256 * 1024 * 1024
    """Disk spool for records while the queue is down; past it records are dropped and counted."""
    shipper_max_backlog: int = 100_000
    """Finished calls waiting in memory for the shipper; beyond it records are dropped and counted."""
    shipper_give_way_backlog: Annotated[int, Field(ge=0)] = 5_000
    """Past this many calls waiting for the shipper, the loop gives the shipper 1 ms of its time
    every 2 ms, so logging keeps up instead of the backlog growing to ``shipper_max_backlog``
    (0: never; docs/decisions/2026-12-02-shipper-gil-steps.md)."""
    queue_group_commit_ms: Annotated[int, Field(ge=0)] = 50
    """How often at most the proxy fsyncs the embedded queue (0: after every shipped batch).
    Records are committed with every batch either way and survive a crash of the proxy; the
    fsync, which covers every commit before it, is what keeps them through a power cut, so
    that is what a power cut can lose (docs/decisions/2026-12-01-queue-group-commit.md)."""
    ratelimit_store_timeout_s: Annotated[float, Field(gt=0)] = 0.25
    """How long a rate-limit check waits for its store (Redis, or the embedded file's lock);
    past it, or when the store is away, the call goes through unchecked and is counted
    (``llmtap_proxy_ratelimit_failopen_total``)."""
    auth_gate: bool = True
    """Refuse (401, before forwarding) a call whose ``Helicone-Auth``/``Llmtap-Auth`` llmtap key no
    organization has (never issued, or revoked). Fails open when the records store is away."""

    # proxy: retries and fallbacks a call asks for by header (docs/gateway.md)
    retry_max_num: Annotated[int, Field(ge=0)] = 10
    """Largest ``Helicone-Retry-Num`` a call may ask for: a larger one is refused (400)."""
    retry_max_timeout_ms: Annotated[int, Field(ge=0)] = 60_000
    """Largest ``Helicone-Retry-Min-Timeout``/``-Max-Timeout`` (ms) a call may ask for: a larger
    one is refused (400). A ``Retry-After`` is honoured up to the call's max timeout."""
    fallbacks_max_targets: Annotated[int, Field(ge=1)] = 10
    """Most targets one ``Helicone-Fallbacks`` list may name: a longer list is refused (400)."""

    # proxy: gateway cache (docs/gateway.md, "Cache"); where it lives: ``cache_url`` above
    cache_max_body_bytes: Annotated[int, Field(ge=0)] = 4 * 1024 * 1024
    """Largest response body the cache stores (a longer answer is relayed, not cached)."""
    cache_fill_wait_s: Annotated[float, Field(ge=0)] = 30.0
    """An identical call arriving while every bucket slot is being filled waits this long for
    one to be saved, then goes to the provider uncached."""
    cache_max_mb: Annotated[int, Field(ge=1)] = 1024
    """Largest the embedded cache file (``<data_dir>/cache.db``) grows, in MiB: once full, a new
    answer first takes the place of expired ones, then of those expiring soonest (counted in
    ``llmtap_proxy_cache_evicted_total``); one that still does not fit is not stored
    (``llmtap_proxy_cache_not_stored_total``). Its write-ahead log adds at most a few MiB more.
    Redis is bounded by its own ``maxmemory`` (docs/gateway.md)."""
    cache_memory_bytes: Annotated[int, Field(ge=0)] = 64 * 1024 * 1024
    """Cached answers each proxy process also keeps in memory (least recently used out first),
    so a hot answer costs no store round trip; 0 = none."""
    cache_memory_ttl_s: Annotated[float, Field(ge=0)] = 1.0
    """How long a process serves a remembered answer before asking the store again: an answer
    refreshed, or expired, in the store may be served this much longer; 0 = never from memory."""
    cache_timeout_s: Annotated[float, Field(gt=0)] = 1.0
    """Longest one cache lookup or save may take (Redis connect and command timeout); past it
    the call goes through uncached (fail-open) and the cache is skipped for a second."""

    # proxy: TLS and egress (docs/tls.md)
    upstream_ca_file: str = ""
    """A PEM file of extra certificate authorities trusted for provider connections (a private
    CA), on top of the default trust (certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set)."""
    upstream_ca_dir: str = ""
    """A directory of extra CA certificates (OpenSSL ``c_rehash`` layout) trusted like
    ``upstream_ca_file``."""
    upstream_trust_system_store: bool = False
    """Also trust the operating system's certificate store (OpenSSL's default paths) for
    provider connections."""
    upstream_proxy_url: str = ""
    """Egress proxy for provider connections, ``http://[user:password@]host:port`` (HTTP
    CONNECT); wins over ``HTTPS_PROXY``/``HTTP_PROXY``."""
    upstream_no_proxy: list[str] = Field(default_factory=list)
    """Hosts reached directly, never through the egress proxy (``NO_PROXY`` syntax: a name
    matches itself and its subdomains, ``*`` matches all, IPs and CIDR ranges match addresses);
    added to ``NO_PROXY``."""
    trust_env_proxy: bool = True
    """Use ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` (or lower-case) from the environment when
    ``upstream_proxy_url`` is not set."""
    proxy_tls_cert_file: str = ""
    """Serve the proxy over HTTPS with this PEM certificate chain (with ``proxy_tls_key_file``)."""
    proxy_tls_key_file: str = ""
    """The private key (PEM) of ``proxy_tls_cert_file``."""

    # queue
    topic: str = TOPIC_LOGS
    """Topic the logs are published to and consumed from."""
    dlq_topic: str = TOPIC_DLQ
    """Topic of dead letters (records the consumer could not store)."""
    partitions: int = 4
    """Partitions of each topic, when llmtap creates it."""

    # consumer
    consumer_group: str = "llmtap-consumer"
    """Consumer group whose committed offsets mark progress."""
    batch_max_records: int = 1000
    """Records per consumer batch."""
    batch_max_wait_s: float = 0.2
    """How long a poll waits for a batch to fill."""
    consumer_gc_threshold: int = 10000
    """Allocations between the cyclic garbage collector's young-generation passes in a consumer
    process (``llmtap consume``, the backend of ``serve``); Python's default is 700. A batch
    allocates some hundred thousand short-lived objects, none in cycles, and at the default the
    collector took a tenth of the consumer's CPU. 0 keeps Python's default. The objects made at
    start are frozen out of collection either way (docs/decisions/2026-12-02-consumer-speed.md)."""
    serve_consumer_nice: int = Field(default=10, ge=0, le=19)
    """How much lower than the proxy's the CPU priority of ``llmtap serve``'s consumer thread is
    (its nice value is raised by this much; Linux, per thread: the API beside it is not lowered).
    When the proxy and the consumer both want the CPU the calls win and the consumer catches up
    after; 0 keeps the same priority. ``llmtap consume`` on its own is never lowered
    (docs/decisions/2026-12-02-serve-consumer-priority.md)."""
    consumer_chain_chunk: int = Field(default=64, ge=1)
    """Records the consumer's handler chain takes a handler at a time (each handler over these
    records, then the next): the handlers' code stays hot across them. Their contexts, with the
    request and response bodies, are held at once, so this bounds the memory it costs; 1 runs
    the chain record by record (docs/decisions/2026-12-02-consumer-speed.md)."""
    consumer_overlap_sinks: bool = True
    """Write the analytics store's batch on a second thread while the records store commits
    the same batch (both release the GIL, so it can use a second core); off writes the sinks
    strictly one after the other. The rows and their ids are the same either way
    (docs/decisions/2026-12-02-consumer-speed.md)."""
    max_attempts: int = 3
    """Tries of a record that fails retriably before it is dead-lettered."""
    retry_backoff_s: float = 0.5
    """First backoff for record retries and store or queue outages (doubling)."""
    retry_backoff_max_s: float = 30.0
    """Cap of the retry backoff."""
    commit_timeout_s: float = 10.0
    """How long a Kafka consumer waits for its group coordinator to confirm a commit before it
    counts the commit as failed and goes back to polling (a commit left waiting on a rebalance
    that only polling serves would otherwise wait forever)."""
    dlq_max_redrives: int = 3
    """Re-drives of a dead letter (``llmtap replay --dlq``) before it stays dead for good."""
    dlq_redrive_backoff_s: float = 60.0
    """A following DLQ re-drive waits base * 2^re-drives after a letter's last failure."""
    dlq_redrive_backoff_max_s: float = 3600.0
    """Cap of the DLQ re-drive backoff."""
    scores_pending_ttl_days: Annotated[float, Field(gt=0)] = 7.0
    """A score whose call has not arrived this long after it was posted is deleted (by the
    consumer, hourly)."""
    scores_sync_interval_s: Annotated[float, Field(gt=0)] = 1.0
    """How often the consumer sends new scores to the analytics store (metrics see a score
    within about this long)."""

    # consumer: webhooks and PostHog through the outbox (docs/integrations.md)
    outbox_enabled: bool = True
    """Run the delivery worker (webhooks, PostHog export) in this consumer process; with several
    consumers every worker claims its own deliveries, none twice."""
    outbox_poll_s: Annotated[float, Field(gt=0)] = 1.0
    """How often the delivery worker looks for due deliveries when it has nothing in hand."""
    outbox_retry_base_s: Annotated[float, Field(gt=0)] = 10.0
    """First wait before a failed delivery (or a failing endpoint) is tried again (doubling)."""
    outbox_retry_max_s: Annotated[float, Field(gt=0)] = 3600.0
    """Cap of the delivery retry backoff."""
    outbox_max_age_s: Annotated[float, Field(gt=0)] = 24 * 3600.0
    """A delivery still failing this long after it was enqueued is given up (status
    ``failed``)."""
    outbox_lease_s: Annotated[float, Field(gt=0)] = 300.0
    """How long a claimed delivery belongs to the worker that claimed it; after that (a worker
    that died mid-send) another worker may send it again."""
    outbox_endpoint_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    """Deliveries one worker sends to one endpoint at once."""
    outbox_threads: Annotated[int, Field(ge=1, le=256)] = 8
    """Sending threads of one delivery worker (all endpoints together)."""
    outbox_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    """Time an endpoint has to connect and answer a delivery before it counts as failed: the
    whole send (egress proxy, CONNECT, TLS, answer), not each read."""
    outbox_pause_after_failures: Annotated[int, Field(ge=1)] = 50
    """An endpoint is paused (shown as such, nothing sent until resumed) after this many
    failures in a row ..."""
    outbox_pause_after_s: Annotated[float, Field(ge=0)] = 3600.0
    """... spread over at least this long (so a short outage never pauses it)."""
    outbox_allow_private_targets: bool = False
    """Let webhook and PostHog URLs reach loopback/private/link-local/metadata addresses (tests,
    receivers inside your network); checked on every send, after DNS resolution."""
    outbox_keep_days: Annotated[float, Field(gt=0)] = 7.0
    """Days a delivered or given-up delivery stays in the history before it is deleted."""
    webhook_body_max_bytes: Annotated[int, Field(ge=0)] = 10 * 1024
    """A request or response body larger than this is replaced in the webhook payload by a
    notice with a link to the call (Helicone's 10 KB rule)."""
    webhooks_max_per_org: Annotated[int, Field(ge=1)] = 20
    """Webhooks one organization may have: creating one more is refused with 400."""
    posthog_batch_size: Annotated[int, Field(ge=1, le=1000)] = 100
    """Events sent to PostHog's ``/batch/`` in one request."""
    alerts_enabled: bool = True
    """Run the alert evaluator in this consumer process; with several consumers each rule is
    evaluated by one of them per interval (a claim in the records store)."""
    alerts_eval_interval_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """How often each alert rule is evaluated over its window."""
    alerts_poll_s: Annotated[float, Field(gt=0, le=600)] = 5.0
    """How often the evaluator looks for rules whose evaluation is due."""
    alerts_min_window_s: Annotated[int, Field(ge=1)] = 60
    """The shortest window an alert rule may have (a shorter one is refused with 400)."""
    alerts_max_window_s: Annotated[int, Field(ge=1)] = 86_400
    """The longest window an alert rule may have (a longer one is refused with 400)."""
    alerts_max_per_org: Annotated[int, Field(ge=1)] = 50
    """Alert rules one organization may have: creating one more is refused with 400."""
    alerts_max_groups: Annotated[int, Field(ge=1, le=10_000)] = 100
    """Groups of a grouped rule that may be firing at once; a breaching group past it waits
    until another resolves (it is counted in the evaluator's log)."""
    public_url: str = ""
    """The API's base URL as users reach it, for the links to a call in webhooks and PostHog
    events; empty is ``http://<api_host>:<api_port>``."""

    # analytics
    analytics_retention_days: int = 0
    """Days of rows the analytics store keeps (0 = forever); the records store keeps everything."""
    analytics_chdb_release_above_mb: Annotated[int, Field(ge=0)] = 400
    """Embedded analytics (chDB): after a query, when this process's resident memory is above
    this many MB, chDB hands the memory its queries freed back to the system (its allocator
    otherwise keeps it: a week's Overview left ~250 MB behind). Costs ~10-30 ms when it happens;
    0 = never."""

    # api
    api_host: str = "127.0.0.1"
    """Address the query & metrics API listens on."""
    api_port: int = 8788
    """Port the query & metrics API listens on."""
    max_ingest_body_bytes: int = 32 * 1024 * 1024
    """Largest async-log or OTLP body the ingestion endpoints accept (after decompression): 413."""
    api_filter_max_values: Annotated[int, Field(ge=1)] = 1000
    """Values one search/metrics filter may hold in all its leaves together (an ``in`` list
    counts each value): more is 400. Bounds what the engines parse per query."""
    api_filter_max_leaves: Annotated[int, Field(ge=1)] = 100
    """Comparisons (leaves) one filter may hold: more is 400."""
    api_filter_max_depth: Annotated[int, Field(ge=1)] = 12
    """Nesting of ``and``/``or`` a filter may have: deeper is 400."""
    api_text_scan_max_bytes: Annotated[int, Field(ge=1)] = 64 * 1024 * 1024
    """Body bytes one text search request may read; past it the page ends early with
    ``scan_truncated: true`` and a cursor to continue from."""
    scores_max_per_call: Annotated[int, Field(ge=1)] = 100
    """Scores one ``POST /v1/request/{id}/score`` may carry: more is 400."""
    scores_max_pending: Annotated[int, Field(ge=1)] = 100_000
    """Scores an organization may hold for calls not logged yet (posted before their call
    arrived, or for ids that never will): a score past it for an unlogged call is 429."""
    api_query_concurrency: Annotated[int, Field(ge=1)] = 1
    """Search and metrics queries run at once in this process (the rest wait): keeps query work
    to about one core, so it cannot starve the consumer running beside it."""
    api_query_wait_s: Annotated[float, Field(ge=0)] = 5.0
    """How long a query waits for a free slot before the answer is 503 with ``Retry-After``."""
    api_query_max_waiting: Annotated[int, Field(ge=0)] = 8
    """Queries that may wait for a slot at once; one more is answered 503 at once (each waiter
    holds a server worker thread that other requests need)."""
    max_query_body_bytes: int = 1024 * 1024
    """Largest body any other API route accepts (queries, metrics): 413, refused by its
    ``Content-Length`` before reading, or as soon as a chunked body passes it."""
    api_header_read_timeout_s: float = 15.0
    """Time a connection has to send a complete request head (from connecting, or from the
    first byte of a following request): then ``408`` and the connection is closed."""
    api_body_read_timeout_s: float = 60.0
    """Time a request has to send its whole body once its head is in: then ``408``, closed."""
    api_max_concurrency: int = 100
    """Open connections (or running requests) the API serves at once; past it a new request
    gets ``503`` at once, so a flood cannot queue work in the process the consumer shares."""
    api_tls_cert_file: str = ""
    """Serve the API over HTTPS with this PEM certificate chain (with ``api_tls_key_file``)."""
    api_tls_key_file: str = ""
    """The private key (PEM) of ``api_tls_cert_file``."""

    dashboard_session_ttl_s: Annotated[float, Field(gt=0)] = 7 * 24 * 3600.0
    """How long a dashboard sign-in lasts; the session also ends when its key is revoked (within
    ``key_cache_ttl_s``) or on sign-out."""
    dashboard_login_max_failures: Annotated[int, Field(ge=1)] = 10
    """Failed dashboard sign-ins one client address may make per
    ``dashboard_login_window_s``: past it the sign-in page answers 429 until the window ends."""
    dashboard_login_window_s: Annotated[float, Field(gt=0)] = 300.0
    """The window over which failed sign-ins are counted per client address."""
    dashboard_refresh_s: Annotated[int, Field(ge=2)] = 10
    """Seconds between refreshes of the Overview when live refresh is switched on."""

    # demo (``llmtap serve --demo``)
    demo: bool = False
    """Also run the mock upstream and a steady trickle of synthetic calls through the proxy, so
    the dashboard has data without a provider key; for this run every provider base URL and
    route points at the mock, never at a real provider."""
    demo_calls_per_s: Annotated[float, Field(gt=0, le=50)] = 2.0
    """Synthetic calls the demo sends per second (steady, with a little jitter)."""
    demo_max_in_flight: Annotated[int, Field(ge=1, le=64)] = 8
    """Synthetic calls the demo keeps open at once; a tick that finds them all busy is skipped,
    so a slow gateway is never flooded."""

    # cost
    price_overrides: dict[str, dict[str, float]] = Field(default_factory=dict)
    """Your prices, ``{"model": {"input": 3.0, "output": 12.0}}`` in $ per million tokens."""

    @model_validator(mode="after")
    def _default_urls(self) -> Settings:
        data = self.data_dir.absolute()
        defaults = {
            "queue_url": f"sqlite:///{data / 'queue.db'}",
            "records_url": f"sqlite:///{data / 'records.db'}",
            "analytics_url": f"chdb:///{data / 'analytics'}",
            "bodies_url": f"file://{data / 'bodies'}",
        }
        for name, url in defaults.items():
            if not getattr(self, name):
                if name == "analytics_url" and self.records_url.lower().startswith("postgres"):
                    # a shared records store: every process reads the same calls from it, where
                    # a chDB of its own would hold only this process's part (decision note
                    # 2026-12-01-distributed-analytics)
                    url = "records://"
                object.__setattr__(self, name, url)
        return self

    @model_validator(mode="after")
    def _tls_pairs(self) -> Settings:
        for side in ("proxy", "api"):
            cert, key = (
                getattr(self, f"{side}_tls_cert_file"),
                getattr(self, f"{side}_tls_key_file"),
            )
            if bool(cert) != bool(key):
                raise ValueError(f"{side}_tls_cert_file and {side}_tls_key_file go together")
        return self

    @model_validator(mode="after")
    def _alert_windows(self) -> Settings:
        if self.alerts_min_window_s > self.alerts_max_window_s:
            raise ValueError("alerts_min_window_s must not be above alerts_max_window_s")
        return self

    @property
    def spool_dir(self) -> Path:
        return self.data_dir.absolute() / "spool"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: TOML file (if any) < environment < explicit overrides."""
    values: dict[str, Any] = {}
    if config_file is not None:
        with config_file.open("rb") as fh:
            values.update(tomllib.load(fh))
    values.update({k: v for k, v in overrides.items() if v is not None})
    env_only = Settings()
    merged = {**values}
    # environment wins over the file, explicit overrides win over both
    for name in Settings.model_fields:
        if name in env_only.model_fields_set and name not in overrides:
            merged[name] = getattr(env_only, name)
    return Settings(**merged)
