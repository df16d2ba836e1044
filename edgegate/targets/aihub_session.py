"""The qai_hub client as EdgeGate drives it: credentials, retries, rate limits, waiting.

* Credentials: ``EDGEGATE_AIHUB_TOKEN`` (with ``EDGEGATE_AIHUB_API_URL`` for another
  endpoint), else the client's own config: ``QAIHUB_CLIENT_INI`` or ``~/.qai_hub/client.ini``
  as ``qai-hub configure`` writes it. The token never leaves this module: every message
  EdgeGate builds from the service's answers goes through ``redact``.
* Rate limits: a 429 or 503 waits the server's ``Retry-After`` (EdgeGate's own job-creating
  POST reads the header; the client's RateLimitedError carries Django REST framework's
  "Expected available in N seconds"), else 20, 40, 60, 60 ... s as the client's own rate-limit
  loop does, until ``rate_limit_budget_s`` (default 600 s, the client's 10 minutes) is spent.
* Other transient failures (5xx, dropped connections, timeouts) are retried ``max_retries``
  times with bounded exponential backoff, on top of the client's own retries.
* Time is injectable (``clock``, ``sleep``): tests simulate a 2-minute 429 storm without
  sleeping.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

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
# The client's _api_call_with_retry waits 20 s, then doubles up to 60 s, for 10 minutes.
RATE_LIMIT_WAITS_S = (20.0, 40.0, 60.0)
RATE_LIMIT_STATUSES = (429, 503)

T = TypeVar("T")


def client_version() -> str:
    import qai_hub

    return str(qai_hub.__version__)


def load_client_config() -> tuple[Any, str]:
    """The client config to use and where it came from (never the token itself)."""
    from qai_hub.api_utils import get_config_path, load_api_config_from_file
    from qai_hub.public_rest_api import (
        DEFAULT_HUB_API_URL,
        DEFAULT_HUB_WEB_URL,
        ClientConfig,
    )

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


def credentials_source() -> str | None:
    """Where AI Hub credentials would come from (TOKEN_ENV or a client.ini path), or None when
    there are none: for callers that use AI Hub only when a token is set (``edgegate devices``)."""
    try:
        return load_client_config()[1]
    except InputError:
        return None


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
_CLIENT_LOGGERS = ("api_utils", "public_rest_api", "LogRetry", "s3_transfer", "urllib3.connectionpool", "backoff",
                   __name__, "edgegate.targets.aihub", "edgegate.targets.aihub_jobs")


# ----------------------------------------------------------------------------- failures


class RateLimited(Exception):
    """A 429/503 answer to EdgeGate's own job-creating POST, with the server's Retry-After."""

    def __init__(self, status: int, retry_after_s: float | None) -> None:
        super().__init__(f"HTTP {status}" + (f" (Retry-After: {retry_after_s:g} s)" if retry_after_s is not None else ""))
        self.status, self.retry_after_s = status, retry_after_s


class AmbiguousSubmit(Exception):
    """A job-creating POST whose answer never arrived (dropped, timed out, 500/502/504): the
    job may exist. Look it up by name before submitting again."""


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (RFC 9110: delay-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_DRF_THROTTLE = re.compile(r"available in (\d+) seconds?")


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a client exception (the client raises InternalError *from* the
    APIException or requests' RetryError)."""
    import requests
    from qai_hub.public_rest_api import APIException

    for e in (exc, exc.__cause__):
        if isinstance(e, RateLimited):
            return e.status
        if isinstance(e, APIException) and e.status_code is not None:
            return int(e.status_code)
        if isinstance(e, requests.exceptions.RetryError):
            m = re.search(r"too many (\d{3}) error responses", str(e))
            if m:
                return int(m.group(1))
    return None


def is_rate_limited(exc: BaseException) -> bool:
    from qai_hub.client import RateLimitedError

    return isinstance(exc, RateLimitedError) or _http_status(exc) in RATE_LIMIT_STATUSES


def retry_after_of(exc: BaseException) -> float | None:
    """How long the server asked us to wait, where the client lets us see it."""
    if isinstance(exc, RateLimited):
        return exc.retry_after_s
    m = _DRF_THROTTLE.search(str(exc))
    return float(m.group(1)) if m else None


def is_transient(exc: BaseException) -> bool:
    """5xx, 429, dropped connections and timeouts: worth another try."""
    import requests
    from qai_hub.client import InternalError, RateLimitedError
    from qai_hub.public_rest_api import APIException

    if isinstance(exc, (RateLimited, AmbiguousSubmit)):
        return True
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


# ----------------------------------------------------------------------------- session


class HubSession:
    """One qai_hub Client plus EdgeGate's retries and waiting, shared by a target's threads."""

    backoff_s = 1.0  # first retry delay; doubles per attempt up to backoff_max_s
    backoff_max_s = 30.0

    def __init__(
        self,
        name: str,
        *,
        poll_interval_s: float,
        job_timeout_s: float,
        max_retries: int,
        rate_limit_budget_s: float = 600.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        import qai_hub

        self.name = name
        self.poll_interval_s = poll_interval_s
        self.job_timeout_s = job_timeout_s
        self.max_retries = max_retries
        self.rate_limit_budget_s = rate_limit_budget_s
        self.clock = clock or time.monotonic
        self._sleep = sleep
        config, self.config_source = load_client_config()
        self.secrets = (config.api_token,)
        for name_ in _CLIENT_LOGGERS:
            logger = logging.getLogger(name_)
            if not any(isinstance(f, _RedactFilter) and f.secrets == self.secrets for f in logger.filters):
                logger.addFilter(_RedactFilter(self.secrets))
        self.client = qai_hub.Client(config=config)
        self.client_version = client_version()
        # Set when the run is being torn down (Ctrl-C, SIGTERM, another graph's failure): waits
        # in worker threads stop at their next poll; the jobs stay in the ledger for a rerun.
        self.stopping = threading.Event()

    @property
    def config(self) -> Any:
        return self.client.config

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    # -- retries ---------------------------------------------------------------

    def pause(self, seconds: float, what: str) -> None:
        """Wait before a retry: the injected sleep (tests), else a wait that a cancel ends."""
        if self._sleep is not None:
            self._sleep(seconds)
        elif self.stopping.wait(seconds):
            raise TargetError(f"{self.name}: AI Hub: {what}: stopped while waiting to retry")

    def call(self, what: str, fn: Callable[[], T], *, recover: Callable[[], T | None] | None = None) -> T:
        """``fn()`` with rate limits waited out (Retry-After, within rate_limit_budget_s) and
        other transient failures retried (bounded exponential backoff). ``recover`` runs after
        an ambiguous failure, before ``fn`` is tried again: a submit looks its job up by name,
        and a job it finds is the answer."""
        attempt, waits, waited = 0, 0, 0.0
        while True:
            try:
                return fn()
            except EdgeGateError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below
                reason = self.redact(one_line(exc))
                if is_rate_limited(exc):
                    left = self.rate_limit_budget_s - waited
                    if left <= 0:
                        raise TargetError(
                            f"{self.name}: AI Hub: {what}: still rate-limited ({reason}) after waiting "
                            f"{waited:g} s (rate_limit_budget_s: {self.rate_limit_budget_s:g} in the device file)"
                        ) from None
                    asked = retry_after_of(exc)
                    delay = min(asked if asked is not None else RATE_LIMIT_WAITS_S[min(waits, 2)], left)
                    log.info("AI Hub: %s: rate-limited (%s); waiting %.0f s (%.0f of %.0f s spent)",
                             what, reason, delay, waited, self.rate_limit_budget_s)
                    self.pause(delay, what)
                    waits, waited = waits + 1, waited + delay
                elif not is_transient(exc):
                    raise TargetError(f"{self.name}: AI Hub: {what}: {reason}") from None
                elif attempt >= self.max_retries:
                    raise TargetError(
                        f"{self.name}: AI Hub: {what}: still failing after {attempt + 1} attempts: {reason}"
                    ) from None
                else:
                    delay = min(self.backoff_s * 2**attempt, self.backoff_max_s) * (0.5 + random.random() / 2)
                    log.info("AI Hub: %s: transient failure (%s); retry %d in %.2f s", what, reason, attempt + 1, delay)
                    self.pause(delay, what)
                    attempt += 1
                if recover is not None and isinstance(exc, AmbiguousSubmit):
                    found = recover()
                    if found is not None:
                        return found

    # -- waiting ---------------------------------------------------------------

    def wait(self, job: Any, *, kind: str, on_status: Callable[[Any], None]) -> Any:
        """Poll until the job finishes and return its final JobStatus (SUCCESS or FAILED);
        ``on_status`` sees every change. Timeouts and a stop raise with the job id and URL."""
        deadline = self.clock() + self.job_timeout_s
        last = None
        while True:
            status = self.call(f"status of {kind} job {job.job_id}", job.get_status)
            if status.code != last:
                last = status.code
                on_status(status)
            if status.finished:
                return status
            if self.clock() >= deadline:
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

    def download_model(self, model_id: str, out_dir: Any) -> Any:
        """The model file (a compiled target model), into out_dir, without the client's prints."""
        from pathlib import Path

        from qai_hub import public_rest_api

        path = self.call(
            f"download model {model_id}",
            lambda: public_rest_api.download_model(self.config, model_id, str(out_dir), verbose=False),
        )
        return Path(path)
