"""The names discobridge answers in its zone, and how a clash between two of them is settled.

The scheme (README "DNS names"), for service S, zone Z:

    S.Z          the service: S is [a-z0-9-] (normalised), so never starts with "_" nor holds a dot
    _S._tcp.Z    its SRV in RFC 2782 form: the leading underscore keeps these apart from all else
    S.C.Z        its endpoints in ECS cluster C; C comes only from endpoints ECS reported with a
                 task (what a Cloud Map instance claims as its cluster is shown, never a name)
    S.A.Z        its endpoints in account A ([aws] account_name, [[accounts]] name)
    S.R.Z        its endpoints in region R
    T.S.Z        one endpoint, the target of its SRV record: T is the ECS task id, or ip-port for
                 an endpoint without a task (Cloud Map), so Cloud Map never claims a task's name
                 (ip-port-account-region where two accounts or regions share that address)

Only a qualified name (S.C.Z) and a target (T.S.Z) share a shape; where one name is both, the
target keeps it (every SRV answer must resolve its targets) and a warning names both. Two clusters
whose names normalise to one label (Prod and prod, prod_x and prod-x) cannot both have it: the
first in sort order keeps it, and a warning names the others; a cluster named like an account or
a region keeps its label from them (`check` rejects that where the config names both). Nothing is
overwritten silently.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from discobridge.model import Endpoint, Service, normalize_service_name

# Lower wins a clash. Service and RFC 2782 names cannot clash with anything by construction.
TARGET, QUALIFIED = 0, 1
_LONGEST_LABEL = "x" * 63  # the longest SRV target label: a service must leave room for it


@dataclass(frozen=True, slots=True)
class Claim:
    """Who a name is for, to settle and report a clash."""

    rank: int
    # For people ("service x in cluster orders"), or the endpoint whose SRV target the name is:
    # its words are made only when a clash needs them (one string per endpoint is megabytes).
    subject: str | Endpoint

    @property
    def what(self) -> str:
        """ "task 0a1b... of service orders", "service x in cluster 'orders'"."""
        if isinstance(self.subject, str):
            return self.subject
        e = self.subject
        who = f"task {e.task_id}" if e.task_arn else f"endpoint {e.address}"
        return f"{who} of service {e.service}"


def carries(zone: str, service: str) -> bool:
    """Whether DNS can carry every name of `service` (labels of 63 bytes, names of 255 at most)."""
    return valid(f"_{service}._tcp.{zone}") and valid(f"{_LONGEST_LABEL}.{service}.{zone}")


def valid(name: str) -> bool:
    labels = name.split(".")
    return all(0 < len(label) <= 63 for label in labels) and len(name) + 2 <= 255


def target_labels(service: Service) -> dict[Endpoint, str]:
    """Each endpoint's SRV target label: the task id, or ip-port when an endpoint has no task;
    ip-port-account-region for endpoints at one address in two accounts or regions (overlapping
    VPC CIDRs), so every SRV record names its own target."""
    plain = {e: _label(e.task_id or f"{e.host_ip}-{e.host_port}") for e in service.endpoints}
    seen = Counter(plain.values())
    return {e: label if seen[label] == 1 else _unique_label(e) for e, label in plain.items()}


def _unique_label(e: Endpoint) -> str:
    """ip-port-account-region, cut to a label with a hash of the whole so that it stays unique."""
    text = normalize_service_name(f"{e.host_ip}-{e.host_port}-{e.account}-{e.region}").strip("-")
    if len(text) <= 63:
        return text
    return f"{text[:54]}-{hashlib.blake2b(text.encode(), digest_size=4).hexdigest()}"


def _label(text: str) -> str:
    return normalize_service_name(text).strip("-")[:63] or "endpoint"


def target_claim(endpoint: Endpoint) -> Claim:
    return Claim(TARGET, endpoint)


@dataclass(frozen=True, slots=True)
class Qualifier:
    """What a qualifying label narrows a service to: its endpoints in one cluster, account or region."""

    kind: str  # "cluster", "account" or "region": the Endpoint field it matches
    value: str

    def selects(self, endpoint: Endpoint) -> bool:
        return bool(getattr(endpoint, self.kind) == self.value)

    def __str__(self) -> str:
        return f"{self.kind} {self.value!r}"


# A label that two kinds would share goes to the first: S.C.Z meant a cluster before accounts
# and regions qualified names, and a client relying on it keeps its answer.
QUALIFIER_KINDS = ("cluster", "account", "region")


def qualifier_labels(service: Service) -> tuple[dict[str, Qualifier], list[str]]:
    """The qualifying labels of the service's names (S.<label>.Z): its clusters (those ECS
    reported with a task), accounts and regions, and warnings for those that lost their label
    to another."""
    claimed: dict[str, list[Qualifier]] = {}
    for kind in QUALIFIER_KINDS:
        values = {getattr(e, kind) for e in service.endpoints if kind != "cluster" or e.task_arn}
        for value in sorted(values - {""}):
            claimed.setdefault(normalize_service_name(value), []).append(Qualifier(kind, value))
    labels: dict[str, Qualifier] = {}
    warnings: list[str] = []
    for label, qualifiers in sorted(claimed.items()):
        labels[label] = qualifiers[0]
        if len(qualifiers) > 1:
            others = ", ".join(str(q) for q in qualifiers[1:])
            warnings.append(
                f"{qualifiers[0]} and {others} share the DNS label {label!r}: "
                f"{service.name}.{label} answers for {qualifiers[0]} only"
            )
    return labels, warnings


def clash_warning(name: str, kept: Claim, lost: Claim) -> str:
    return f"DNS name {name} is both {kept.what} and {lost.what}: it answers for {kept.what}"


def wins(new: Claim | None, old: Claim | None) -> bool:
    """Whether `new` takes a name `old` already has (the lower rank, then the first by name)."""
    if old is None or new is None:
        return False
    return (new.rank, new.what) < (old.rank, old.what)


def dotted(wire: bytes) -> str:
    """A wire-format name as text, for messages."""
    labels, offset = [], 0
    while offset < len(wire) and wire[offset]:
        length = wire[offset]
        labels.append(wire[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += length + 1
    return ".".join(labels)
