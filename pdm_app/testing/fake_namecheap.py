"""A fake of Namecheap's XML API on loopback, strict where Namecheap is.

A real HTTP server (``ThreadingHTTPServer`` in a daemon thread), so the adapter's whole
stack -- requests, sockets, timeouts -- is exercised. Shapes follow registrars.md §2 and
§3 and Namecheap's API pages:

* One path, ``/xml.response``; GET (query) and POST (form body, merged with the query);
  any other method 405, any other path 404.
* The global parameters ``ApiUser ApiKey UserName ClientIp Command`` are required, with
  those exact names; a parameter given twice, or one the command does not take, is
  refused. Commands are matched case-insensitively (Namecheap echoes them lower-cased
  in ``RequestedCommand``).
* ``ClientIp`` must be an IPv4 address on the account's allow-list (the fake cannot see
  the real source address -- every request comes from loopback -- so it checks the
  parameter): else ``1011150 Invalid request IP: <ip>``, as Namecheap answers live.
* Every answer is the namespaced envelope ``<ApiResponse Status="OK|ERROR"
  xmlns="http://api.namecheap.com/xml.response">``, refusals included, at HTTP 200.
* ``namecheap.users.getBalances``; ``namecheap.domains.getList`` (``Page``, ``PageSize``
  10-100 (default 20), ``SearchTerm`` (case-insensitive substring), ``ListType``,
  ``SortBy``; ``Paging/TotalItems``); ``namecheap.domains.dns.setCustom`` (``SLD TLD
  Nameservers``); ``namecheap.domains.dns.getList`` (``SLD TLD``). A domain is found by
  its SLD (first label) and TLD (the rest): ``SLD=example.co&TLD=uk`` does not find
  ``example.co.uk``. A domain of another user is ``2016166``, an unknown one ``2019166``,
  one seeded ``editable=False`` ``2030166``.

Where Namecheap's behaviour is undocumented the fake picks an answer and says so:
``UserName`` missing is ``1010103`` (the pattern of its neighbours), an unknown command
``1011104``, a bad command parameter ``PARAMETER_ERROR`` (the fake's own number), the
throttle text ``THROTTLED`` with number ``0``, and no limit on the number of nameservers.

Faults (``inject``) act before the command runs, per command or for any: ``error`` (an
``ERROR`` envelope with ``number`` and Namecheap's text for it, e.g. 1011102, 1011150,
1017150, 2019166, 2016166, 2030166, 3031510), ``throttle`` (the throttle text at 200),
``http429`` (429 with ``Retry-After``), ``http500``, ``timeout`` (held ``hang_seconds``
or until ``stop()``, then dropped), ``drop`` (the connection reset, no answer),
``badxml`` (200 with a truncated document) and ``raw`` (a given status, body, headers).
"""
from __future__ import annotations

import html
import ipaddress
import re
from copy import deepcopy
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

from pdm_app.testing.fake_server import FakeServer, Fault, reset, send

NAMESPACE = "http://api.namecheap.com/xml.response"
PATH = "/xml.response"
FAULTS = ("error", "throttle", "http429", "http500", "timeout", "drop", "badxml", "raw")
GLOBAL_PARAMS = ("ApiUser", "ApiKey", "UserName", "ClientIp", "Command")
NAMECHEAP_DNS = ["dns1.registrar-servers.com", "dns2.registrar-servers.com"]

THROTTLED = "Too many requests"
THROTTLE_NUMBER = 0
PARAMETER_ERROR = 2011170
# Namecheap's texts for the numbers the fake answers (global parameters page, setCustom
# page; 1011102 and 1011150 as answered live). "{ip}" is the request's ClientIp.
ERROR_TEXTS = {
    1010101: "Parameter APIUser is missing",
    1010102: "Parameter APIKey is missing",
    1010103: "Parameter UserName is missing",
    1010104: "Parameter Command is missing",
    1010105: "Parameter ClientIP is missing",
    1011102: "API Key is invalid or API access has not been enabled",
    1011104: "Parameter Command is invalid",
    1011105: "Parameter ClientIP is invalid",
    1011150: "Invalid request IP: {ip}",
    1016103: "Parameter UserName is unauthorized",
    1017101: "Parameter ApiUser is disabled or locked",
    1017105: "Parameter ClientIP is disabled or locked",
    1017150: "Parameter RequestIP is disabled or locked",
    2019166: "Domain not found",
    2016166: "Domain is not associated with your account",
    2030166: "Edit permission for domain is not supported",
    3031510: "Error From Enom when Errorcount <> 0",
    3050900: "Unknown error from Enom",
    4022288: "Unable to get nameserver list",
}
SORTS = ("NAME", "NAME_DESC", "EXPIREDATE", "EXPIREDATE_DESC", "CREATEDATE", "CREATEDATE_DESC")
_HOST = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))+$", re.IGNORECASE)


@dataclass(frozen=True)
class Call:
    """One request as it arrived: ``query`` is the raw query string, ``body`` the raw body,
    ``params`` both merged (what Namecheap reads)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    params: dict[str, str]

    @property
    def command(self) -> str:
        return self.params.get("Command", "")


@dataclass
class _Account:
    api_user: str
    api_key: str
    user_names: set[str]
    allowed_ips: set[str]
    api_enabled: bool = True


@dataclass
class _Domain:
    name: str  # as seeded (case kept: Namecheap's list shows it as registered)
    user: str
    nameservers: list[str] | None  # None: Namecheap's own DNS
    editable: bool = True
    order: int = 0


@dataclass
class _Fault(Fault):
    number: int | None = None
    text: str | None = None
    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class _ApiError(Exception):
    def __init__(self, number: int, text: str | None = None):
        super().__init__(number)
        self.number = number
        self.text = text if text is not None else ERROR_TEXTS.get(number, "Unknown error")


class FakeNamecheap(FakeServer):
    """``FakeNamecheap(api_user, api_key, allowed_ips).start()``; ``.url``, ``.seed()``,
    ``.seed_many()``, ``.add_account()``, ``.nameservers()``, ``.calls``, ``.inject()``,
    ``.hang_seconds``; ``stop()`` refuses connections until the next ``start()``."""

    server_name = "FakeNamecheap"
    api_path = PATH

    def __init__(self, api_user: str = "apiuser", api_key: str = "test-key",
                 allowed_ips: tuple[str, ...] = ("203.0.113.10",), host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.api_user = api_user
        self.hang_seconds = 30.0
        self._accounts: dict[str, _Account] = {}
        self._domains: dict[tuple[str, str], _Domain] = {}
        self.add_account(api_user, api_key, allowed_ips=allowed_ips)

    # -- state ------------------------------------------------------------------------

    def add_account(self, api_user: str, api_key: str, *, allowed_ips: tuple[str, ...] = (),
                    user_names: tuple[str, ...] = (), api_enabled: bool = True) -> None:
        """An API user with its key and allow-list; it acts for itself and ``user_names``."""
        with self._lock:
            names = {api_user.lower(), *(name.lower() for name in user_names)}
            self._accounts[api_user.lower()] = _Account(api_user, api_key, names, set(allowed_ips), api_enabled)

    def seed(self, domain: str, nameservers: list[str] | None = None, *, user: str | None = None,
             editable: bool = True) -> None:
        """``domain`` registered to ``user`` (default: the first API user), on
        ``nameservers`` (None: Namecheap's own DNS)."""
        sld, _, tld = domain.strip().partition(".")
        with self._lock:
            self._domains[(sld.lower(), tld.lower())] = _Domain(
                domain.strip(), (user or self.api_user).lower(), None if nameservers is None else list(nameservers),
                editable, len(self._domains))

    def seed_many(self, count: int, pattern: str = "filler{:04d}.com", *, user: str | None = None) -> None:
        for index in range(count):
            self.seed(pattern.format(index), user=user)

    def nameservers(self, domain: str) -> list[str] | None:
        sld, _, tld = domain.strip().lower().partition(".")
        with self._lock:
            found = self._domains[(sld, tld)].nameservers
            return None if found is None else list(found)

    def inject(self, fault: str, times: int = 1, command: str | None = None, *, number: int | None = None,
               text: str | None = None, status: int = 200, body: str = "",
               headers: dict[str, str] | None = None) -> None:
        """The next ``times`` requests (of ``command``, or any) fail with ``fault``:
        ``error`` needs ``number`` (``text`` defaults to Namecheap's); ``raw`` answers
        ``status``, ``body`` and ``headers`` verbatim; ``http429`` sends ``headers``
        (default ``Retry-After: 30``)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        if fault == "error" and number is None:
            raise ValueError("an error fault needs its number")
        if fault == "http429" and headers is None:
            headers = {"Retry-After": "30"}
        with self._lock:
            self._faults.append(_Fault(fault, times, None if command is None else command.lower(), number, text,
                                       status, body, dict(headers or {})))

    # -- HTTP -------------------------------------------------------------------------

    def _record(self, h: BaseHTTPRequestHandler, body: bytes, params: dict[str, str]) -> None:
        split = urlsplit(h.path)
        with self._lock:
            self._calls.append(Call(h.command, split.path, split.query, dict(h.headers.items()), body, params))

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length > 0 else b""
        if method not in ("GET", "POST"):
            self._record(h, body, {})
            return send(h, 405, b"<html><body>405 Method Not Allowed</body></html>", "text/html",
                        {"Allow": "GET, POST"})
        split = urlsplit(h.path)
        pairs = parse_qsl(split.query, keep_blank_values=True)
        form = method == "POST" and (h.headers.get("Content-Type") or "").split(";")[0].strip().lower() \
            == "application/x-www-form-urlencoded"
        if form:
            pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        params = dict(pairs)
        self._record(h, body, params)
        if split.path != PATH:
            return send(h, 404, b"<html><body>404 Not Found</body></html>", "text/html")

        command = params.get("Command", "")
        fault = self._take_fault(command.lower())
        if fault is not None:
            return self._fault(h, fault, command, params)
        try:
            if len(pairs) != len(params):
                raise _ApiError(PARAMETER_ERROR, "a parameter was given more than once")
            inner = self._run(command, params)
        except _ApiError as err:
            return self._send_xml(h, _envelope(command, errors=[(err.number, err.text)]))
        self._send_xml(h, _envelope(command, inner))

    def _fault(self, h: BaseHTTPRequestHandler, fault: _Fault, command: str, params: dict[str, str]) -> None:
        if fault.kind == "error":
            number = fault.number or 0  # inject() makes sure there is one
            text = fault.text if fault.text is not None else ERROR_TEXTS.get(number, "Unknown error")
            return self._send_xml(h, _envelope(command, errors=[(number, text.replace(
                "{ip}", params.get("ClientIp", "")))]))
        if fault.kind == "throttle":
            return self._send_xml(h, _envelope(command, errors=[(THROTTLE_NUMBER, fault.text or THROTTLED)]))
        if fault.kind == "http429":
            return send(h, 429, b"<html><body>429 Too Many Requests</body></html>", "text/html",
                              fault.headers)
        if fault.kind == "http500":
            return send(h, 500, b"<html><body>500 Internal Server Error</body></html>", "text/html")
        if fault.kind == "timeout":
            self._stopping.wait(self.hang_seconds)
            return reset(h)
        if fault.kind == "drop":
            return reset(h)
        if fault.kind == "badxml":
            body = f'<?xml version="1.0" encoding="utf-8"?>\r\n<ApiResponse Status="OK" xmlns="{NAMESPACE}">' \
                   "<Errors /><CommandRes"
            return send(h, 200, body.encode(), "text/xml; charset=utf-8")
        send(h, fault.status, fault.body.encode(), "text/xml; charset=utf-8", fault.headers)

    # -- commands ---------------------------------------------------------------------

    def _run(self, command: str, params: dict[str, str]) -> str:
        for name, number in (("ApiUser", 1010101), ("ApiKey", 1010102), ("Command", 1010104),
                             ("ClientIp", 1010105), ("UserName", 1010103)):
            if not params.get(name, "").strip():
                raise _ApiError(number)
        ip = params["ClientIp"].strip()
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise _ApiError(1011105) from None
        with self._lock:
            account = deepcopy(self._accounts.get(params["ApiUser"].strip().lower()))
        if account is None or account.api_key != params["ApiKey"] or not account.api_enabled:
            raise _ApiError(1011102)
        if ip not in account.allowed_ips:
            raise _ApiError(1011150, ERROR_TEXTS[1011150].replace("{ip}", ip))
        user = params["UserName"].strip().lower()
        if user not in account.user_names:
            raise _ApiError(1016103)
        handler, allowed = self._commands().get(command.lower(), (None, ()))
        if handler is None:
            raise _ApiError(1011104)
        unknown = set(params) - set(GLOBAL_PARAMS) - set(allowed)
        if unknown:
            raise _ApiError(PARAMETER_ERROR, f"Parameter {sorted(unknown)[0]} is not supported by this command")
        return handler(user, params)

    def _commands(self) -> dict[str, tuple[Callable[[str, dict[str, str]], str], tuple[str, ...]]]:
        return {
            "namecheap.users.getbalances": (self._get_balances, ()),
            "namecheap.domains.getlist": (self._get_list, ("ListType", "SearchTerm", "Page", "PageSize", "SortBy")),
            "namecheap.domains.dns.setcustom": (self._set_custom, ("SLD", "TLD", "Nameservers")),
            "namecheap.domains.dns.getlist": (self._dns_get_list, ("SLD", "TLD")),
        }

    def _get_balances(self, user: str, params: dict[str, str]) -> str:
        return ('<UserGetBalancesResult Currency="USD" AvailableBalance="12.34" AccountBalance="12.34" '
                'EarnedAmount="0.00" WithdrawableAmount="0.00" FundsRequiredForAutoRenew="0.00" />')

    def _get_list(self, user: str, params: dict[str, str]) -> str:
        page = _number(params, "Page", 1, 1, 10 ** 6)
        size = _number(params, "PageSize", 20, 10, 100)
        list_type = params.get("ListType", "ALL").strip().upper()
        if list_type not in ("ALL", "EXPIRING", "EXPIRED"):
            raise _ApiError(PARAMETER_ERROR, "ListType must be ALL, EXPIRING or EXPIRED")
        sort = params.get("SortBy", "NAME").strip().upper()
        if sort not in SORTS:
            raise _ApiError(PARAMETER_ERROR, f"SortBy must be one of {', '.join(SORTS)}")
        term = params.get("SearchTerm", "").strip().lower()
        with self._lock:
            mine = [d for d in self._domains.values() if d.user == user and term in d.name.lower()]
        if list_type != "ALL":
            mine = []  # nothing in the fake expires
        if sort.startswith("NAME"):
            mine.sort(key=lambda d: d.name.lower(), reverse=sort.endswith("_DESC"))
        else:
            mine.sort(key=lambda d: d.order, reverse=sort.endswith("_DESC"))
        shown = mine[(page - 1) * size:page * size]
        rows = "".join(
            f'<Domain ID="{d.order + 1000}" Name={_attr(d.name)} User={_attr(d.user)} Created="01/15/2020" '
            f'Expires="01/15/2030" IsExpired="false" IsLocked="false" AutoRenew="true" WhoisGuard="ENABLED" '
            f'IsPremium="false" IsOurDNS="{str(d.nameservers is None).lower()}" />'
            for d in shown)
        return (f"<DomainGetListResult>{rows}</DomainGetListResult><Paging><TotalItems>{len(mine)}</TotalItems>"
                f"<CurrentPage>{page}</CurrentPage><PageSize>{size}</PageSize></Paging>")

    def _domain(self, user: str, params: dict[str, str], *, editing: bool = False) -> _Domain:
        sld = params.get("SLD", "").strip().lower()
        tld = params.get("TLD", "").strip().lower()
        if not sld or not tld:
            raise _ApiError(PARAMETER_ERROR, "Parameters SLD and TLD are required")
        with self._lock:
            found = self._domains.get((sld, tld))
        if found is None:
            raise _ApiError(2019166)
        if found.user != user:
            raise _ApiError(2016166)
        if editing and not found.editable:
            raise _ApiError(2030166)
        return found

    def _set_custom(self, user: str, params: dict[str, str]) -> str:
        raw = params.get("Nameservers", "")
        names = [n.strip() for n in raw.split(",")]
        if not raw.strip() or not all(names):
            raise _ApiError(PARAMETER_ERROR, "Parameter Nameservers is required: a comma-separated list")
        bad = [n for n in names if not _HOST.match(n)]
        if bad:
            raise _ApiError(PARAMETER_ERROR, f"Nameserver {bad[0]} is invalid")
        found = self._domain(user, params, editing=True)
        with self._lock:
            found.nameservers = names
        return f'<DomainDNSSetCustomResult Domain={_attr(found.name)} Updated="true" />'

    def _dns_get_list(self, user: str, params: dict[str, str]) -> str:
        found = self._domain(user, params)
        with self._lock:
            ours = found.nameservers is None
            names = NAMECHEAP_DNS if ours else list(found.nameservers or [])
        rows = "".join(f"<Nameserver>{html.escape(n)}</Nameserver>" for n in names)
        return (f'<DomainDNSGetListResult Domain={_attr(found.name)} IsUsingOurDNS="{str(ours).lower()}" '
                f'IsPremiumDNS="false" IsUsingFreeDNS="false">{rows}</DomainDNSGetListResult>')

    # -- answers ----------------------------------------------------------------------

    def _send_xml(self, h: BaseHTTPRequestHandler, document: str) -> None:
        send(h, 200, document.encode("utf-8"), "text/xml; charset=utf-8")


def _envelope(command: str, inner: str | None = None, *, errors: list[tuple[int, str]] | None = None) -> str:
    """Namecheap's envelope: ``Status`` OK with a ``CommandResponse``, or ERROR with the
    errors and no ``CommandResponse``."""
    status = "ERROR" if errors else "OK"
    error_xml = "".join(f'<Error Number="{n}">{html.escape(t, quote=False)}</Error>' for n, t in errors or [])
    body = "" if errors else f"<CommandResponse Type={_attr(command)}>{inner or ''}</CommandResponse>"
    return (f'<?xml version="1.0" encoding="utf-8"?>\r\n<ApiResponse Status="{status}" xmlns="{NAMESPACE}">'
            f"<Errors>{error_xml}</Errors><Warnings /><RequestedCommand>{html.escape(command.lower())}"
            f"</RequestedCommand>{body}<Server>FAKE-NAMECHEAP</Server><GMTTimeDifference>--5:00</GMTTimeDifference>"
            "<ExecutionTime>0.01</ExecutionTime></ApiResponse>")


def _attr(value: str) -> str:
    return f'"{html.escape(value, quote=True)}"'


def _number(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise _ApiError(PARAMETER_ERROR, f"Parameter {name} must be a number from {low} to {high}")
    return int(raw)
