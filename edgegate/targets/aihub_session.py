"""The qai_hub client as EdgeGate drives it: credentials, retries, the job ledger, waiting.

* Credentials: ``EDGEGATE_AIHUB_TOKEN`` (with ``EDGEGATE_AIHUB_API_URL`` for another
  endpoint), else the client's own config: ``QAIHUB_CLIENT_INI`` or ``~/.qai_hub/client.ini``
  as ``qai-hub configure`` writes it. The token never leaves this module: every message
  EdgeGate builds from the service's answers goes through ``redact``.
* Transient failures (5xx, 429, dropped connections, timeouts) are retried with bounded
  exponential backoff, on top of the client's own retries.
* The ledger: every job id is written to the ``aihub_jobs`` table the moment the job is
  submitted, under a resume key (model digest, device, options, client version). Before
  submitting, a job with the same key that has not FAILED is reused: a rerun after a crash
  or Ctrl-C waits on the same job instead of paying for a new one.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edgegate.artifacts import digest_json
from edgegate.errors import EdgeGateError, InputError, TargetError

log = logging.getLogger(__name__)

TOKEN_ENV = "EDGEGATE_AIHUB_TOKEN"
API_URL_ENV = "EDGEGATE_AIHUB_API_URL"
CLIENT_INI_ENV = "QAIHUB_CLIENT_INI"  # the client's own variable

NO_TOKEN = (
    "AI Hub: no API token. Set EDGEGATE_AIHUB_TOKEN, or run `qai-hub configure --api_token TOKEN` "
    "(it writes ~/.qai_hub/client.ini), or point QAIHUB_CLIENT_INI at a client.ini; the token is "
    "on your AI Hub account page"
)

T = TypeVar("T")


def client_version() -> str:
    import qai_hub

    return str(qai_hub.__version__)


def load_client_config() -> tuple[Any, str]:
    """The client config to use and where it came from (never the token itself)."""
    from qai_hub.api_utils import get_config_path, load_api_config_from_file
    from qai_hub.public_rest_api import DEFAULT_HUB_API_URL, DEFAULT_HUB_WEB_URL, ClientConfig

    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        api_url = os.environ.get(API_URL_ENV, "").strip() or DEFAULT_HUB_API_URL
        web_url = api_url if os.environ.get(API_URL_ENV) else DEFAULT_HUB_WEB_URL
        return ClientConfig(api_token=token, api_url=api_url, web_url=web_url, verbose=False), TOKEN_ENV
    path = get_config_path()
    if not os.path.exists(path):
        raise InputError(f"{NO_TOKEN} (looked for {path})")
    try:
        config = load_api_config_from_file(path)
    except Exception as exc:  # noqa: BLE001 - the client raises APIException for missing keys
        raise InputError(f"{path}: not a usable AI Hub client config ({type(exc).__name__}); rerun `qai-hub configure`") from None
    if not config.api_token:
        raise InputError(f"{path}: api_token is empty; {NO_TOKEN}")
    config.verbose = False  # no progress bars or prints from the client on EdgeGate's stdout
    return config, path


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


class _RedactFilter(logging.Filter):
    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg, self.secrets)
        if clean != msg:
            record.msg, record.args = clean, ()
        return True


# Loggers of the client and its HTTP stack: they log URLs, never headers; filtered anyway.
_CLIENT_LOGGERS = ("api_utils", "public_rest_api", "LogRetry", "s3_transfer", "urllib3.connectionpool", __name__)


def is_transient(exc: BaseException) -> bool:
    """5xx, 429, dropped connections and timeouts: worth another try."""
    import requests
    from qai_hub.client import InternalError, RateLimitedError
    from qai_hub.public_rest_api import APIException

    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                        requests.exceptions.ChunkedEncodingError, requests.exceptions.RetryError)):
        return True
    if isinstance(exc, (InternalError, RateLimitedError)):
        return True
    if isinstance(exc, APIException):
        return exc.status_code is not None and (exc.status_code >= 500 or exc.status_code == 429)
    return False


def one_line(exc: BaseException) -> str:
    """The client wraps messages in a text box over several lines: keep the words."""
    text = " ".join(str(exc).replace("│", " ").replace("|", " ").split())
    for ch in "┌┐└┘─":
        text = text.replace(ch, "")
    return " ".join(text.split()) or type(exc).__name__


@dataclass
class Ledger:
    """Where job ids go the moment they exist: the run's database, or memory when detached."""

    db: Any = None  # ExperimentDB
    run_id: int | None = None
    _memory: list[dict[str, Any]] = field(default_factory=list)

    def find(self, key: str, exclude: tuple[str, ...]) -> dict[str, Any] | None:
        if self.db is not None:
            return self.db.find_aihub_job(key, exclude_status=exclude)
        for row in reversed(self._memory):
            if row["resume_key"] == key and row["status"] not in exclude:
                return row
        return None

    def add(self, **row: Any) -> None:
        if self.db is not None:
            self.db.add_aihub_job(run_id=self.run_id, **row)
        else:
            self._memory.append({**row, "run_id": self.run_id, "result": row.get("result") or {}})

    def update(self, job_id: str, status: str, **kw: Any) -> None:
        if self.db is not None:
            self.db.update_aihub_job(job_id, status, **kw)
            return
        for row in self._memory:
            if row["job_id"] == job_id:
                row["status"] = status
                if kw.get("result"):
                    row["result"] = {**row.get("result", {}), **kw["result"]}
                if kw.get("failure_reason"):
                    row["failure_reason"] = kw["failure_reason"]


@dataclass(frozen=True)
class LedgerJob:
    job_id: str
    reused: bool
    status: str
    result: dict[str, Any]


class HubSession:
    """One qai_hub Client plus EdgeGate's retries, waiting and ledger, shared by a target's threads."""

    backoff_s = 1.0  # first retry delay; doubles per attempt up to backoff_max_s
    backoff_max_s = 30.0

    def __init__(self, name: str, *, poll_interval_s: float, job_timeout_s: float, max_retries: int) -> None:
        import qai_hub

        self.name = name
        self.poll_interval_s = poll_interval_s
        self.job_timeout_s = job_timeout_s
        self.max_retries = max_retries
        config, self.config_source = load_client_config()
        self.secrets = (config.api_token,)
        for name_ in _CLIENT_LOGGERS:
            logger = logging.getLogger(name_)
            if not any(isinstance(f, _RedactFilter) and f.secrets == self.secrets for f in logger.filters):
                logger.addFilter(_RedactFilter(self.secrets))
        self.client = qai_hub.Client(config=config)
        self.client_version = client_version()
        self.ledger = Ledger()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Set when the run is being torn down (Ctrl-C, SIGTERM, another graph's failure): waits
        # in worker threads stop at their next poll; the jobs stay in the ledger for a rerun.
        self.stopping = threading.Event()

    @property
    def config(self) -> Any:
        return self.client.config

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    # -- retries ---------------------------------------------------------------

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()`` with transient failures retried (bounded exponential backoff)."""
        attempt = 0
        while True:
            try:
                return fn()
            except EdgeGateError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below
                if not is_transient(exc):
                    raise TargetError(f"{self.name}: AI Hub: {what}: {self.redact(one_line(exc))}") from None
                if attempt >= self.max_retries:
                    raise TargetError(
                        f"{self.name}: AI Hub: {what}: still failing after {attempt + 1} attempts: "
                        f"{self.redact(one_line(exc))}"
                    ) from None
                delay = min(self.backoff_s * 2**attempt, self.backoff_max_s) * (0.5 + random.random() / 2)
                log.info("AI Hub: %s: transient failure (%s); retry %d in %.2f s", what,
                         self.redact(one_line(exc)), attempt + 1, delay)
                time.sleep(delay)
                attempt += 1

    # -- ledger ----------------------------------------------------------------

    def resume_key(self, kind: str, parts: Mapping[str, Any]) -> str:
        return "sha256:" + digest_json({"kind": kind, **parts, "client": self.client_version})

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def get_or_submit(
        self,
        *,
        kind: str,
        graph: str | None,
        device: str,
        model_digest: str,
        options: str,
        key_parts: Mapping[str, Any],
        submit: Callable[[], tuple[str, str | None]],
        usable: Callable[[dict[str, Any]], bool] | None = None,
        done_status: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> LedgerJob:
        """Reuse the ledger's job for this key unless it FAILED; else submit and record at once.

        ``usable`` can reject a found row (an expired dataset); ``done_status`` is the status of
        what ``submit`` returns when it is finished already (uploads).
        """
        key = self.resume_key(kind, {"model": model_digest, "device": device, "options": options, **key_parts})
        options_digest = "sha256:" + digest_json(options)
        with self._lock(key):
            found = self.ledger.find(key, exclude=("FAILED", "EXPIRED"))
            if found is not None and (usable is None or usable(found)):
                self.ledger.add(
                    graph=graph, kind=kind, job_id=found["job_id"], status=found["status"], device=device,
                    options_digest=options_digest, resume_key=key, model_digest=model_digest,
                    client_version=self.client_version, url=found.get("url"), reused=True,
                    result=found.get("result") or None,
                )
                log.info("AI Hub: %s %s: reusing %s (%s)", kind, graph or "", found["job_id"], found["status"])
                return LedgerJob(found["job_id"], True, found["status"], dict(found.get("result") or {}))
            if found is not None:
                self.ledger.update(found["job_id"], "EXPIRED")
            job_id, url = self.call(f"submit {kind} ({graph or 'data'})", submit)
            status = done_status or "SUBMITTED"
            self.ledger.add(
                graph=graph, kind=kind, job_id=job_id, status=status, device=device, options_digest=options_digest,
                resume_key=key, model_digest=model_digest, client_version=self.client_version, url=url,
                result=result,
            )
            return LedgerJob(job_id, False, status, dict(result or {}))

    # -- waiting ---------------------------------------------------------------

    def wait(self, job: Any, *, kind: str, graph: str | None) -> Any:
        """Poll until the job finishes; FAILED and timeouts raise with the job id and URL."""
        from edgegate.errors import CompileError

        deadline = time.monotonic() + self.job_timeout_s
        last = None
        while True:
            status = self.call(f"status of {kind} job {job.job_id}", job.get_status)
            if status.code != last:
                last = status.code
                if status.finished:
                    reason = status.message if status.failure else None
                    self.ledger.update(job.job_id, "SUCCESS" if status.success else "FAILED",
                                       failure_reason=self.redact(reason) if reason else None, finished=True)
                else:
                    self.ledger.update(job.job_id, status.code)
            if status.success:
                return status
            if status.failure:
                err = CompileError if kind == "compile" else TargetError
                raise err(
                    f"{self.name}: AI Hub {kind} job {job.job_id}"
                    + (f" (graph '{graph}')" if graph else "")
                    + f" FAILED: {self.redact(status.message or 'no reason given')} ({job.url})"
                )
            if time.monotonic() >= deadline:
                raise TargetError(
                    f"{self.name}: AI Hub {kind} job {job.job_id} still {status.code} after "
                    f"{self.job_timeout_s:g} s (job_timeout_s in the device file); rerun to keep waiting "
                    f"on the same job ({job.url})"
                )
            if self.stopping.wait(self.poll_interval_s):
                raise TargetError(
                    f"{self.name}: stopped waiting on AI Hub {kind} job {job.job_id} ({status.code}); "
                    f"a rerun waits on the same job ({job.url})"
                )

    # -- files -------------------------------------------------------------------

    def download_model(self, model_id: str, out_dir: Path) -> Path:
        """The model file (a compiled target model), into out_dir, without the client's prints."""
        from qai_hub import public_rest_api

        path = self.call(
            f"download model {model_id}",
            lambda: public_rest_api.download_model(self.config, model_id, str(out_dir), verbose=False),
        )
        return Path(path)
