"""TOML configuration: parsed and validated into frozen dataclasses, with errors that name file and key."""

from __future__ import annotations

import difflib
import errno
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from discobridge.model import normalize_service_name


class ConfigError(Exception):
    """A config file is unreadable or invalid; the message names the file, the key and the reason."""

    def __init__(self, origin: str, key: str, reason: str) -> None:
        super().__init__(f"{origin}: {key}: {reason}" if key else f"{origin}: {reason}" if origin else reason)
        self.origin, self.key, self.reason = origin, key, reason


class BindError(Exception):
    """A configured listen address could not be bound; the message names the key and the reason."""

    def __init__(self, key: str, address: str, reason: str) -> None:
        super().__init__(f"{key} {address}: cannot listen: {reason}")
        self.key, self.address, self.reason = key, address, reason

    @classmethod
    def of(cls, key: str, address: object, exc: OSError) -> BindError:
        # os.strerror: libraries (aiohttp) wrap the system's words in their own.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno == errno.EACCES:
            reason += " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        elif exc.errno == errno.EADDRINUSE:
            reason += " (another process listens there)"
        return cls(key, str(address), reason)


class HostPort(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


Check = Callable[[Any], Any]


def _setting(check: Check, default: Any = MISSING) -> Any:
    """Declare a config key: `check` converts the raw TOML value or raises ValueError(reason)."""
    return field(default=default, metadata={"check": check})


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {_describe(value)}")
    return value.strip()


def _matching(pattern: str, expected: str) -> Check:
    """A check that the text matches `pattern` whole; the error says it expected `expected`."""
    compiled = re.compile(pattern)

    def check(value: Any) -> str:
        text = _text(value)
        if not compiled.fullmatch(text):
            raise ValueError(f"expected {expected}, got {text!r}")
        return text

    return check


def _optional_url(value: Any) -> str:
    url = _text(value)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
    return url


def _texts(*, allow_empty: bool) -> Check:
    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise ValueError(f"expected a list of strings, got {_describe(value)}")
        if not value and not allow_empty:
            raise ValueError("expected at least one entry, got an empty list")
        return tuple(_text(item) for item in value)

    return check


def _seconds(value: Any) -> float:
    # bool is an int subclass in Python; `true` is never a duration.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number of seconds, got {_describe(value)}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a number of seconds greater than 0, got {value!r}")
    return float(value)


def _positive_fraction(value: Any) -> float:
    fraction = _fraction(value)
    if fraction == 0:
        raise ValueError("expected a number above 0 and at most 1, got 0")
    return fraction


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"expected a number from 0 to 1, got {_describe(value)}")
    return float(value)


def _non_negative_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"expected a number of seconds >= 0, got {_describe(value)}")
    return float(value)


def _whole_seconds(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a whole number of seconds >= 0, got {_describe(value)}")
    return value


def _ttl(value: Any) -> int:
    seconds = _whole_seconds(value)
    if seconds > 2**31 - 1:  # RFC 2181 8: a TTL is 31 bits
        raise ValueError(f"expected at most 2147483647 seconds (RFC 2181), got {seconds}")
    return seconds


def parse_host_port(text: str) -> HostPort:
    """Parse "ip:port" or "[v6]:port" (an IP address, not a name); port 0 asks the OS for one."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f'expected "host:port", got {text!r}')
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f'write an IPv6 address as "[addr]:port", got {text!r}')
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"expected an IP address such as 0.0.0.0 or [::1], got {host!r} in {text!r}") from None
    if address.version == 6 and not bracketed:
        raise ValueError(f'write an IPv6 address as "[addr]:port", got {text!r}')
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port must be 0-65535, got {port}")
    return HostPort(str(address), port)


def _listen(value: Any) -> HostPort:
    return parse_host_port(_text(value))


def _listens(value: Any) -> tuple[HostPort, ...]:
    listens = tuple(_listen(item) for item in _texts(allow_empty=False)(value))
    for i, first in enumerate(listens):
        for second in listens[i + 1 :]:
            if _overlap(first, second):
                raise ValueError(f"{first} and {second} are the same address (each is served on UDP and TCP once)")
    return listens


def _overlap(first: HostPort, second: HostPort) -> bool:
    """Whether two listeners would bind the same TCP port (a wildcard takes every address)."""
    if first.port == 0 or second.port == 0 or first.port != second.port:
        return False
    wildcards = ("0.0.0.0", "::")
    return first.host == second.host or first.host in wildcards or second.host in wildcards


def _zone(value: Any) -> str:
    zone = _text(value).lower().rstrip(".")
    if len(zone) > 253:  # 255 octets in wire form, its length bytes and root included
        raise ValueError(f"expected a DNS name of at most 253 characters, got {len(zone)}")
    labels = zone.split(".")
    for label in labels:
        ok = 0 < len(label) <= 63 and label[0] != "-" and label[-1] != "-"
        if not ok or not all(c.isascii() and (c.isalnum() or c == "-") for c in label):
            raise ValueError(f"expected a DNS name such as 'discobridge.internal', got {zone!r}")
    return zone


def _ip_addresses(value: Any) -> tuple[str, ...]:
    addresses = []
    for text in _texts(allow_empty=True)(value):
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(f"expected IP addresses such as 10.0.1.53, got {text!r}") from None
        if getattr(address, "scope_id", None):
            raise ValueError(f"a scoped address ({text!r}) cannot be an A/AAAA record")
        addresses.append(str(address))
    return tuple(addresses)


def _url_path(value: Any) -> str:
    path = _text(value)
    if not path.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {path!r}")
    return path


def _choice(*options: str) -> Check:
    def check(value: Any) -> str:
        text = _text(value).lower()
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return text

    return check


_account_name = _matching(
    r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", "a name of a-z, 0-9 and '-' (it goes into DNS names and labels)"
)


@dataclass(frozen=True, slots=True)
class AwsConfig:
    region: str = _setting(_text)
    # What this account is called in answers, partition names, labels and metadata.
    account_name: str = _setting(_account_name, "local")
    endpoint_url: str | None = _setting(_optional_url, None)
    # The share of each AWS throttle bucket discobridge may use: the rest is other tools'.
    api_rate_fraction: float = _setting(_positive_fraction, 0.25)


_role_arn = _matching(
    r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}",
    "an IAM role ARN such as arn:aws:iam::111111111111:role/discobridge-read",
)
# STS: 2-1224 characters of [\w+=,.@:/-].
_external_id = _matching(r"[A-Za-z0-9+=,.@:/_-]{2,1224}", "2-1224 letters, digits or +=,.@:/-_ (an STS external id)")
_region = _matching(r"[a-z]{2}(-[a-z]+)+-[0-9]", "an AWS region such as eu-west-1")


def _regions(value: Any) -> tuple[str, ...]:
    regions = tuple(_region(item) for item in _texts(allow_empty=False)(value))
    repeated = sorted({r for r in regions if regions.count(r) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} is listed twice")
    return regions


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """One more AWS account ([[accounts]]), read through a role discobridge assumes there."""

    name: str = _setting(_account_name)
    role_arn: str = _setting(_role_arn)
    external_id: str | None = _setting(_external_id, None)
    regions: tuple[str, ...] = _setting(_regions, ())  # empty: [aws] region
    clusters: tuple[str, ...] = _setting(_texts(allow_empty=False), ("*",))
    namespaces: tuple[str, ...] = _setting(_texts(allow_empty=True), ())

    @property
    def account_id(self) -> str:
        return self.role_arn.split(":")[4]


@dataclass(frozen=True, slots=True)
class AccountRegion:
    """Where discobridge reads: one account in one region, its own clients, budget and partitions.
    `role_arn` is None for the local account (the daemon's own credentials)."""

    account: str
    region: str
    clusters: tuple[str, ...]
    namespaces: tuple[str, ...]
    role_arn: str | None = None
    external_id: str | None = None

    @property
    def account_id(self) -> str | None:
        """The 12-digit id, when the config says it (a role's ARN does); None for the local account."""
        return self.role_arn.split(":")[4] if self.role_arn else None


@dataclass(frozen=True, slots=True)
class EcsConfig:
    clusters: tuple[str, ...] = _setting(_texts(allow_empty=False), ("*",))
    poll_interval_s: float = _setting(_seconds, 10.0)
    # Known tasks are described again this often, for their health; new ones at once.
    health_refresh_s: float = _setting(_seconds, 60.0)
    max_drop_fraction: float = _setting(_fraction, 0.5)


@dataclass(frozen=True, slots=True)
class CloudMapConfig:
    namespaces: tuple[str, ...] = _setting(_texts(allow_empty=True), ())
    poll_interval_s: float = _setting(_seconds, 10.0)


@dataclass(frozen=True, slots=True)
class DnsConfig:
    zone: str = _setting(_zone)
    listen: tuple[HostPort, ...] = _setting(_listens, (HostPort("0.0.0.0", 53),))
    ttl_s: int = _setting(_ttl, 5)
    # The zone's NS target; its A/AAAA answer with ns_addresses (default: the listen addresses
    # that are not wildcards; behind a load balancer, give its fixed IPs).
    ns_name: str | None = _setting(_zone, None)
    ns_addresses: tuple[str, ...] = _setting(_ip_addresses, ())


@dataclass(frozen=True, slots=True)
class HttpConfig:
    listen: HostPort = _setting(_listen, HostPort("0.0.0.0", 8080))
    # After SIGTERM: /healthz is 503 at once, and answers go on this long so load balancers
    # deregister this replica before its listeners close.
    drain_s: float = _setting(_non_negative_seconds, 5.0)


def _snapshot_path(value: Any) -> str:
    """A local file path or s3://bucket/key; a local path that exists must be a regular file."""
    text = _text(value)
    if text.startswith("s3://"):
        bucket, _, key = text.removeprefix("s3://").partition("/")
        if not bucket or not key or key.endswith("/"):
            raise ValueError(f"expected s3://bucket/key (an object, not a prefix), got {text!r}")
        return text
    if "://" in text:
        raise ValueError(f"expected a file path or s3://bucket/key, got {text!r}")
    path = Path(text)
    if path.exists() and not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise ValueError(f"{text} is {kind}: give the path of a file discobridge may replace")
    return text


@dataclass(frozen=True, slots=True)
class SnapshotConfig:
    # Where the last good data is kept: a file, or s3://bucket/key shared by every replica.
    path: str | None = _setting(_snapshot_path, None)


_topic_arn = _matching(
    r"arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}",
    "an SNS topic ARN such as arn:aws:sns:eu-west-1:111111111111:ecs-events",
)
# SQS names are 1-80 of [A-Za-z0-9_-]; the rest of the 80 is this replica's own suffix.
_queue_prefix = _matching(r"[A-Za-z0-9_-]{1,40}", "1-40 letters, digits, '-' or '_' (an SQS queue name prefix)")


@dataclass(frozen=True, slots=True)
class EventsConfig:
    # An SNS topic fed by an EventBridge rule for ECS task and container-instance state changes.
    # Unset: ECS is polled every [ecs] poll_interval_s.
    topic_arn: str | None = _setting(_topic_arn, None)
    queue_prefix: str = _setting(_queue_prefix, "discobridge-")
    # While events arrive, the full poll runs this often instead, to heal anything events missed.
    reconcile_s: float = _setting(_seconds, 300.0)


@dataclass(frozen=True, slots=True)
class EurekaConfig:
    home_page_path: str = _setting(_url_path, "/actuator")
    status_page_path: str = _setting(_url_path, "/actuator/info")
    health_check_path: str = _setting(_url_path, "/actuator/health")


@dataclass(frozen=True, slots=True)
class HealthConfig:
    max_staleness_s: float = _setting(_seconds, 60.0)
    # How long a partition whose attempts keep failing may hold back the first snapshot (one
    # still making progress holds it back as long as it takes).
    startup_wait_s: float = _setting(_non_negative_seconds, 60.0)


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: str = _setting(_choice("json", "console"), "json")
    level: str = _setting(_choice("debug", "info", "warning", "error"), "info")


@dataclass(frozen=True, slots=True)
class Config:
    aws: AwsConfig
    ecs: EcsConfig
    cloudmap: CloudMapConfig
    dns: DnsConfig
    http: HttpConfig
    eureka: EurekaConfig
    health: HealthConfig
    log: LogConfig
    snapshot: SnapshotConfig
    events: EventsConfig
    accounts: tuple[AccountConfig, ...] = ()
    origin: str = "<config>"

    def account_regions(self) -> tuple[AccountRegion, ...]:
        """The local account in [aws] region first, then each [[accounts]] entry in each region."""
        local = AccountRegion(self.aws.account_name, self.aws.region, self.ecs.clusters, self.cloudmap.namespaces)
        members = [
            AccountRegion(a.name, region, a.clusters, a.namespaces, a.role_arn, a.external_id)
            for a in self.accounts
            for region in a.regions or (self.aws.region,)
        ]
        return (local, *members)


_TABLES: Mapping[str, type[Any]] = {
    "aws": AwsConfig,
    "ecs": EcsConfig,
    "cloudmap": CloudMapConfig,
    "dns": DnsConfig,
    "http": HttpConfig,
    "eureka": EurekaConfig,
    "health": HealthConfig,
    "log": LogConfig,
    "snapshot": SnapshotConfig,
    "events": EventsConfig,
}


def _did_you_mean(name: str, known: list[str], fmt: str = "{}") -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {fmt.format(close[0])}?)" if close else ""


def _build_table(origin: str, where: str, raw: Any, cls: type[Any]) -> Any:
    """One table's values, checked; `where` names it in errors ("[aws]", "[[accounts]] #2")."""
    if not isinstance(raw, dict):
        raise ConfigError(origin, where, f"expected a table, got {_describe(raw)}")
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            hint = _did_you_mean(key, list(known), '"{}"')
            raise ConfigError(origin, f"{where} {key}", f"unknown key{hint}")
    values: dict[str, Any] = {}
    for name, spec in known.items():
        if name not in raw:
            if spec.default is MISSING:
                raise ConfigError(origin, f"{where} {name}", "required key is missing")
            continue
        try:
            values[name] = spec.metadata["check"](raw[name])
        except ValueError as exc:
            raise ConfigError(origin, f"{where} {name}", str(exc)) from None
    return cls(**values)


def parse_config(text: str, origin: str) -> Config:
    """Parse TOML text into a Config; `origin` (a path or a variable name) goes into every error."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(origin, "", f"not valid TOML: {exc}") from None
    for table in raw:
        if table not in _TABLES and table != "accounts":
            hint = _did_you_mean(table, [*_TABLES, "accounts"], "[{}]")
            raise ConfigError(origin, f"[{table}]", f"unknown table{hint}")
    tables = {name: _build_table(origin, f"[{name}]", raw.get(name, {}), cls) for name, cls in _TABLES.items()}
    config = Config(**tables, accounts=_build_accounts(origin, raw.get("accounts", [])), origin=origin)
    _check_across_tables(config)
    return config


def _build_accounts(origin: str, raw: Any) -> tuple[AccountConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError(
            origin, "[[accounts]]", f"expected an array of tables ([[accounts]] entries), got {_describe(raw)}"
        )
    return tuple(_build_table(origin, f"[[accounts]] #{i}", entry, AccountConfig) for i, entry in enumerate(raw, 1))


def _check_accounts(config: Config) -> None:
    """Account names and ids are unique, and no DNS label means two configured things: an account
    named like a cluster or a region would make S.<label>.Z ambiguous."""
    seen: dict[str, str] = {config.aws.account_name: "[aws] account_name"}
    ids: dict[str, str] = {}
    # As DNS labels: a cluster Prod_1 would answer as S.prod-1.Z, so an account prod-1 clashes.
    clusters = {
        normalize_service_name(c.rsplit("/", 1)[-1]): c
        for r in config.account_regions()
        for c in r.clusters
        if c != "*"
    }
    regions = {r.region for r in config.account_regions()}
    for i, account in enumerate(config.accounts, 1):
        key = f"[[accounts]] #{i} name"
        if account.name in seen:
            raise ConfigError(config.origin, key, f"{account.name!r} is already the name of {seen[account.name]}")
        seen[account.name] = f"[[accounts]] #{i}"
        if account.account_id in ids:
            raise ConfigError(
                config.origin,
                f"[[accounts]] #{i} role_arn",
                f"account {account.account_id} is already {ids[account.account_id]}: "
                "list each account once, with all its regions",
            )
        ids[account.account_id] = f"[[accounts]] #{i} ({account.name})"
    for name, where in seen.items():
        key = "[aws] account_name" if where.startswith("[aws]") else f"{where} name"
        if name in clusters:
            raise ConfigError(
                config.origin,
                key,
                f"{name!r} is also a configured cluster ({clusters[name]!r}): S.{name}.<zone> would mean both",
            )
        if name in regions:
            raise ConfigError(
                config.origin, key, f"{name!r} is also a configured region: S.{name}.<zone> would mean both"
            )


def _check_across_tables(config: Config) -> None:
    """Rules that involve more than one table: what `run` would otherwise fail on later."""
    _check_accounts(config)
    ns_name = config.dns.ns_name
    if ns_name is not None and (ns_name == config.dns.zone or not ns_name.endswith("." + config.dns.zone)):
        raise ConfigError(
            config.origin,
            "[dns] ns_name",
            f"{ns_name} must be a name inside [dns] zone {config.dns.zone} (and not the zone itself)",
        )
    topic = config.events.topic_arn
    if topic and topic.split(":")[3] != config.aws.region:
        raise ConfigError(
            config.origin,
            "[events] topic_arn",
            f"the topic is in {topic.split(':')[3]}, not [aws] region {config.aws.region}: "
            "ECS events reach only rules (and their topics) in the region of the cluster",
        )
    for dns in config.dns.listen:
        if _overlap(dns, config.http.listen):
            raise ConfigError(
                config.origin,
                "[http] listen",
                f"{config.http.listen} takes the TCP port of [dns] listen {dns}: give DNS and HTTP different ports",
            )


def load_config(path: str | Path) -> Config:
    """Read and validate a config file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "", "file is not UTF-8 text") from None
    return parse_config(text, str(path))
