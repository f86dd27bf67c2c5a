"""A FHIR client: one session, one private send method, retries within a time budget, paging,
never a request off the EHR's origin. The service keeps one for its EHR per process; a hook
naming an allow-listed foreign fhirServer gets its own for that call."""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson
import requests
from requests.cookies import RequestsCookieJar
from requests.hooks import default_hooks
from requests.structures import CaseInsensitiveDict

from plugin.deadline import OutOfTime, check, remaining, spent
from plugin.gateway.auth import Auth, NoAuth
from plugin.gateway.errors import FatalFhirError, FhirError, TemporaryFhirError, error_for

log = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
MAX_ORIGINS = 64  # origins whose URLs requests leaves unchanged, remembered per session
# A URL's path and query as requests' prepare_url leaves them (urllib3's parse_url keeps
# RFC 3986 path and query characters, requests' requote_uri decodes only percent-encoded
# unreserved characters — ALPHA, DIGIT, "-", ".", "_", "~" — and upper-cases the others).
_KEPT = r"%(?![46][1-9A-F]|[57][0-9A]|3[0-9]|2D|2E|5F|7E)[0-9A-F]{2}"
_PLAIN_REST = re.compile(
    rf"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|{_KEPT})*"
    rf"(?:\?(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|{_KEPT})+)?"  # an empty query is dropped
)


class ForeignUrlError(FatalFhirError):
    """A link or redirect that leaves the server's origin: never followed, since our
    credentials would go with it (RFC 6750 §5.3: bearer tokens go only to their server)."""


@dataclass(frozen=True)
class ClientOptions:
    """Timeouts, retries and paging (THERACHARGE_FHIR_* settings)."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    retry_total_seconds: float = 30.0  # the whole time spent retrying one request: the budget
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    page_cap: int = 50  # search pages followed before we stop and say so


@dataclass
class Page:
    """A search answer gathered over its pages."""

    entries: list[dict[str, Any]]
    capped: bool  # more pages remained after page_cap


class EhrSession(requests.Session):
    """A requests session that reads what the environment says about reaching a server — its
    proxy (HTTPS_PROXY, NO_PROXY …) and a CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) — once
    per server rather than on every request, as requests otherwise does (a third of a batch
    run's own time). The settings are requests' own, merged the same way."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[str, dict[str, Any]] = {}
        self._plain_origins: dict[str, bool] = {}

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        """What requests' own does for the requests we make (a method, a URL, headers, a body),
        without what we never use: query parameters, per-request auth or cookies, files, and
        the `.netrc` lookup (a file read per request; the EHR's credentials are the ones
        configured, THERACHARGE_FHIR_TOKEN or SMART, never a `.netrc` entry). The URL is
        normalised by requests as before; the session's cookies (a load balancer's) are sent.
        A request with anything else is prepared by requests in full."""
        if (
            request.params
            or request.files
            or request.json is not None
            or request.auth
            or request.cookies
            or self.auth
            or self.params
        ):
            return super().prepare_request(request)
        prepared = requests.PreparedRequest()
        prepared.method = str(request.method).upper()
        url = request.url
        if isinstance(url, str) and self._unchanged(url):
            prepared.url = url
        else:
            prepared.prepare_url(url, None)
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
        for name, value in (*self.headers.items(), *(request.headers or {}).items()):
            headers[name] = str(value)
        prepared.headers = headers
        prepared.prepare_body(request.data, None, None)
        jar = RequestsCookieJar()  # the request's own jar, as requests makes it
        if len(self.cookies):
            jar.update(self.cookies)
            prepared.prepare_cookies(jar)
        else:  # what prepare_cookies keeps, without building an empty Cookie header
            setattr(prepared, "_cookies", jar)  # noqa: B010 -- requests' own attribute
        prepared.hooks = default_hooks()
        return prepared

    def _unchanged(self, url: str) -> bool:
        """Whether requests' `prepare_url` would give `url` back as it is — true of the URLs
        we build (our base, then paths and queries encoded by urlencode), for which it costs
        about 50 µs: the origin is checked by requests itself, once; the rest must hold only
        characters it leaves alone (no dot segments, no fragment, percent-encodings in upper
        case of characters that are not unreserved)."""
        start = url.find("://")
        slash = url.find("/", start + 3) if start > 0 else -1
        if slash < 0 or url.find("/.", slash) >= 0:
            return False
        origin = url[:slash]
        plain = self._plain_origins.get(origin)
        if plain is None:
            probe = requests.PreparedRequest()
            try:
                probe.prepare_url(origin + "/", None)
                plain = probe.url == origin + "/"
            except requests.RequestException:
                plain = False
            if len(self._plain_origins) < MAX_ORIGINS:
                self._plain_origins[origin] = plain
        return plain and _PLAIN_REST.fullmatch(url, slash) is not None

    def merge_environment_settings(  # type: ignore[override]
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        if not self.trust_env:
            return dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
        origin = _origin(str(url))
        found = self._environment.get(origin)
        if found is None:
            found = dict(super().merge_environment_settings(url, {}, None, None, None))
            self._environment[origin] = found
        merged = dict(proxies or {})
        for scheme, proxy in found["proxies"].items():
            merged.setdefault(scheme, proxy)
        return {
            "proxies": merged,
            "stream": self.stream if stream is None else stream,
            "verify": found["verify"] if verify in (None, True) else verify,
            "cert": self.cert if cert is None else cert,
        }


class FhirClient:
    """A FHIR R4 server's REST API, reached through one `requests.Session` (connection reuse)."""

    def __init__(
        self,
        base_url: str,
        auth: Auth | None = None,
        options: ClientOptions | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.origin = _origin(self.base_url)
        self.auth = auth or NoAuth()
        self.options = options or ClientOptions()
        self.session = session or EhrSession()
        self.sleep = sleep
        self.clock = clock
        self.requests_sent = 0  # counted for tests and metrics: round trips to the EHR

    # --- public calls -------------------------------------------------------------------------

    def read(self, path: str) -> Any:
        return self._send("GET", self.url(path))

    def capabilities(self) -> Any:
        return self.read("metadata")

    def search(self, path: str) -> Page:
        """A search, following `next` links up to the page cap. Unknown parameters are an
        error (`Prefer: handling=strict`), never silently ignored."""
        url: str | None = self.url(path)
        entries: list[dict[str, Any]] = []
        pages = 0
        while url is not None:
            if pages >= self.options.page_cap:
                log.warning("search paging stopped at the cap of %d pages", self.options.page_cap)
                return Page(entries, capped=True)
            bundle = self._send("GET", url, extra={"Prefer": "handling=strict"})
            pages += 1
            entries.extend(e for e in (bundle or {}).get("entry") or () if isinstance(e, dict))
            link = next_link(bundle)
            url = self._same_origin(urljoin(url, link), "next link") if link else None
        return Page(entries, capped=False)

    def create(self, resource_type: str, resource: dict[str, Any]) -> Any:
        """POST one resource (used for set-up, e.g. a Subscription; not retried blindly: a
        repeat would create a second one, so only connection failures before sending are)."""
        return self._send("POST", self.url(resource_type), body=resource, repeatable=False)

    def transaction(self, bundle: dict[str, Any]) -> Any:
        """POST a transaction Bundle. Ours are idempotent by design (conditional creates and
        version-checked updates), so they are retried like reads."""
        return self._send("POST", self.base_url, body=bundle)

    def operation(self, path: str, body: dict[str, Any]) -> tuple[Any, str | None]:
        """POST a FHIR operation that changes something (Oracle Health's ChargeItem $create,
        $modify, $credit): its answer and its Location header. Sent once, never repeated
        blindly: what a lost answer means is the caller's to find out."""
        answer, location = self._send(
            "POST", self.url(path), body=body, repeatable=False, location=True
        )
        return answer, location

    def batch(self, bundle: dict[str, Any]) -> Any:
        """POST a batch Bundle of searches (each answered on its own in the batch-response).
        Unknown parameters are an error in each (`Prefer: handling=strict`), as in `search`."""
        return self._send("POST", self.base_url, body=bundle, extra={"Prefer": "handling=strict"})

    def url(self, path: str) -> str:
        """An absolute URL on this server; one on any other origin is refused."""
        if path.startswith(("http://", "https://")):
            return self._same_origin(path, "link")
        return f"{self.base_url}/{path.lstrip('/')}"

    def _same_origin(self, url: str, what: str) -> str:
        if _origin(url) != self.origin:
            raise ForeignUrlError(
                f"refused to follow a {what} to {_origin(url) or 'an unreadable URL'}: it "
                f"leaves the EHR's origin {self.origin}, and our credentials would go with it",
                None,
                _path(url),
            )
        return url

    # --- the one private send method ------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        body: Any = None,
        extra: dict[str, str] | None = None,
        repeatable: bool = True,
        location: bool = False,
    ) -> Any:
        """Every request goes through here. Reads, and our transactions (idempotent by
        conditional creates and version-checked updates), are safe to repeat: temporary failures
        are retried within a bounded total time. Anything else is sent once."""
        started = self.clock()
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            try:
                return self._once(method, url, body, extra, location)
            except TemporaryFhirError as exc:
                wait = self._retry_wait(exc, attempt, started) if repeatable else None
                if wait is None:
                    raise
                log.info("retrying %s %s in %.1fs after %s", method, _path(url), wait, exc.status)
                self.sleep(wait)
            except FhirError as exc:
                if exc.status == 401 and not refreshed and self.auth.invalidate():
                    refreshed = True  # a stale token: get a new one, once
                    continue
                raise

    def _once(
        self,
        method: str,
        url: str,
        body: Any,
        extra: dict[str, str] | None,
        location: bool = False,
    ) -> Any:
        headers = {"Accept": FHIR_JSON, **self.auth.headers(), **(extra or {})}
        data = None
        if body is not None:
            headers["Content-Type"] = FHIR_JSON
            data = orjson.dumps(body)
        for _ in range(MAX_REDIRECTS + 1):
            timeout = self._timeouts(f"{method} {_path(url)}")
            response = self._request(method, url, data, headers, timeout)
            if response.status_code not in REDIRECT_STATUSES:
                break
            # Redirects are followed here, never by requests: only within the origin, so a
            # token is never sent to a host a server (or an attacker in its answer) names.
            url = self._same_origin(urljoin(url, response.headers.get("Location", "")), "redirect")
            if response.status_code == 303:
                method, data = "GET", None
        else:
            raise FatalFhirError(f"{method} {_path(url)}: more than {MAX_REDIRECTS} redirects")
        parsed = _json(response)
        if response.status_code >= 400:
            hint = _retry_after(response.headers.get("Retry-After"))
            raise error_for(response.status_code, url, parsed, method, hint)
        if parsed is None and response.content.strip():
            # A success that is not JSON (a proxy's error page, a cut answer) is not an empty
            # result: reading it as one would decide a visit on missing data.
            what = f"{method} {_path(url)} → HTTP {response.status_code}: the answer is not JSON"
            raise TemporaryFhirError(what, response.status_code, url)
        if location:  # where an operation put what it made (201 Created)
            return parsed, response.headers.get("Location")
        return parsed

    def _timeouts(self, what: str) -> tuple[float, float]:
        """(connect, read) timeouts: the configured ones, cut to what is left of the request's
        time budget (plugin.deadline); OutOfTime when nothing is left."""
        left = check(what)
        connect, read = self.options.connect_timeout, self.options.read_timeout
        if left is None:
            return connect, read
        return min(connect, left), min(read, left)

    def _request(
        self, method: str, url: str, data: bytes | None, headers: dict[str, str], timeout: Any
    ) -> requests.Response:
        self.requests_sent += 1
        try:
            return self.session.request(
                method, url, data=data, headers=headers, timeout=timeout, allow_redirects=False
            )
        except requests.Timeout as exc:
            if spent():
                raise OutOfTime(
                    f"{method} {_path(url)}: the EHR did not answer within the request's time "
                    "budget"
                ) from exc
            what = f"{method} {_path(url)}: cannot reach the EHR ({type(exc).__name__})"
            raise TemporaryFhirError(what, None, url) from exc
        except requests.RequestException as exc:
            what = f"{method} {_path(url)}: cannot reach the EHR ({type(exc).__name__})"
            raise TemporaryFhirError(what, None, url) from exc

    def _retry_wait(self, error: TemporaryFhirError, attempt: int, started: float) -> float | None:
        """Exponential backoff with jitter (a random wait between half the cap and the cap, so
        retries never come back to back), or the server's Retry-After when it asks for a wait;
        None when waiting would overrun the time budget. Only the budget stops
        retries: a server that asks for patience gets it for as long as the budget lasts."""
        hinted = error.retry_after
        backoff = min(self.options.backoff_cap, self.options.backoff_base * 2 ** (attempt - 1))
        wait = hinted if hinted else random.uniform(backoff / 2, backoff)
        if self.clock() - started + wait > self.options.retry_total_seconds:
            return None
        left = remaining()
        if left is not None and wait >= left:
            # the request's budget ends before the retry could be answered: say so, rather
            # than the EHR's error (the caller answers with what it knows, or 504)
            raise OutOfTime(f"the EHR failed ({error}) and the request's time budget is spent")
        return wait


def _json(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def next_link(bundle: Any) -> str | None:
    """The `next` link of a searchset page, if the search goes on."""
    if not isinstance(bundle, dict):
        return None
    for link in bundle.get("link") or ():
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _origin(url: str) -> str:
    """scheme://host[:port], with the default port made explicit (RFC 6454 §4)."""
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a port that is not a number
        return ""
    if not parts.hostname:
        return ""
    return f"{parts.scheme}://{parts.hostname.lower()}:{port}"


def _path(url: str) -> str:
    """A URL without its query: search parameters can carry identifiers, never logged."""
    return url.split("?", 1)[0]


def iter_resources(entries: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for entry in entries:
        resource = entry.get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") != "OperationOutcome":
            yield resource
