"""Config: defaults, the example file, and one-line errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from discobridge.cli import main
from discobridge.config import ConfigError, HostPort, load_config
from tests.conftest import ROOT

MINIMAL = '[aws]\nregion = "eu-west-1"\n[dns]\nzone = "Disco.Internal."\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "discobridge.toml"
    path.write_text(text)
    return path


def test_example_config_loads_with_documented_values() -> None:
    config = load_config(ROOT / "config.example.toml")
    assert config.aws.region == "us-east-1"
    assert config.aws.endpoint_url is None
    assert config.ecs.clusters == ("*",)
    assert config.dns.listen == (HostPort("0.0.0.0", 53),)
    assert config.http.listen == HostPort("0.0.0.0", 8080)
    assert config.eureka.health_check_path == "/actuator/health"
    assert config.log.format == "json"


def test_minimal_config_gets_defaults_and_normalised_zone(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.dns.zone == "disco.internal"
    assert config.dns.ttl_s == 5
    assert config.ecs.poll_interval_s == 10.0
    assert config.cloudmap.namespaces == ()
    assert config.health.max_staleness_s == 60.0


def test_listen_accepts_ipv6_in_brackets(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL + '[http]\nlisten = "[::1]:8081"\n'))
    assert config.http.listen == HostPort("::1", 8081)
    assert str(config.http.listen) == "[::1]:8081"


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('[dns]\nzone = "z.internal"\n', "[aws] region", "required key is missing"),
        ('[aws]\nregion = "r"\n', "[dns] zone", "required key is missing"),
        (MINIMAL + "[dns]\n", "", "not valid TOML"),
        (MINIMAL.replace("[dns]", "[dns]\nttll_s = 3"), "[dns] ttll_s", 'unknown key (did you mean "ttl_s"?)'),
        (MINIMAL + "[ecss]\nclusters = []\n", "[ecss]", "unknown table (did you mean [ecs]?)"),
        (MINIMAL.replace("[dns]", '[dns]\nttl_s = "five"'), "[dns] ttl_s", "expected a whole number"),
        (MINIMAL + "[ecs]\npoll_interval_s = 0\n", "[ecs] poll_interval_s", "greater than 0"),
        (MINIMAL + "[ecs]\npoll_interval_s = true\n", "[ecs] poll_interval_s", "expected a number"),
        (MINIMAL + "[ecs]\nclusters = []\n", "[ecs] clusters", "at least one entry"),
        (MINIMAL + '[ecs]\nclusters = "prod"\n', "[ecs] clusters", "expected a list of strings"),
        (MINIMAL + '[http]\nlisten = "8080"\n', "[http] listen", 'expected "host:port"'),
        (MINIMAL + '[http]\nlisten = "::1:80"\n', "[http] listen", "[addr]:port"),
        (MINIMAL + '[http]\nlisten = "127.0.0.1:70000"\n', "[http] listen", "0-65535"),
        (MINIMAL + '[http]\nlisten = "300.1.1.1:80"\n', "[http] listen", "expected an IP address"),
        (MINIMAL + '[http]\nlisten = "localhost:80"\n', "[http] listen", "expected an IP address"),
        (
            MINIMAL.replace("[dns]", '[dns]\nlisten = ["127.0.0.1:53", "0.0.0.0:53"]'),
            "[dns] listen",
            "are the same address",
        ),
        (
            MINIMAL.replace("[dns]", '[dns]\nlisten = ["0.0.0.0:8080"]') + '[http]\nlisten = "127.0.0.1:8080"\n',
            "[http] listen",
            "takes the TCP port of [dns] listen 0.0.0.0:8080",
        ),
        (MINIMAL + '[snapshot]\npath = "s3://bucket"\n', "[snapshot] path", "expected s3://bucket/key"),
        (MINIMAL + '[snapshot]\npath = "/usr"\n', "[snapshot] path", "/usr is a directory"),
        (MINIMAL + '[snapshot]\npath = "/dev/null"\n', "[snapshot] path", "/dev/null is not a regular file"),
        (MINIMAL + "[health]\nstartup_wait_s = -1\n", "[health] startup_wait_s", ">= 0"),
        (MINIMAL.replace("[dns]", "[dns]\nttl_s = 2147483648"), "[dns] ttl_s", "at most 2147483647"),
        (MINIMAL.replace("Disco.Internal.", ("a" * 60 + ".") * 5), "[dns] zone", "at most 253 characters"),
        (MINIMAL + '[aws]\nendpoint_url = "x"\n', "", "Cannot declare"),
        (
            MINIMAL.replace('region = "eu-west-1"', 'region = "r"\nendpoint_url = "localhost"'),
            "[aws] endpoint_url",
            "http:// or https://",
        ),
        (MINIMAL.replace("Disco.Internal.", "bad_zone!"), "[dns] zone", "expected a DNS name"),
        (MINIMAL + '[log]\nformat = "xml"\n', "[log] format", "expected one of json, console"),
        (MINIMAL + '[eureka]\nhealth_check_path = "health"\n', "[eureka] health_check_path", "starting with '/'"),
        (MINIMAL + "[health]\nmax_staleness_s = -1\n", "[health] max_staleness_s", "greater than 0"),
        (
            MINIMAL.replace('region = "eu-west-1"', 'region = "eu-west-1"\naccount_name = "Prod_1"'),
            "[aws] account_name",
            "a-z, 0-9 and '-'",
        ),
        (
            MINIMAL + '[events]\ntopic_arn = "arn:aws:sns:us-east-1:111111111111:ecs"\n',
            "[events] topic_arn",
            "the topic is in us-east-1, not [aws] region eu-west-1",
        ),
        (MINIMAL + '[events]\ntopic_arn = "ecs-events"\n', "[events] topic_arn", "expected an SNS topic ARN"),
        (MINIMAL + '[events]\nqueue_prefix = "disco bridge"\n', "[events] queue_prefix", "an SQS queue name prefix"),
        (MINIMAL.replace("[dns]", '[dns]\nns_addresses = ["ns1"]'), "[dns] ns_addresses", "expected IP addresses"),
        (MINIMAL.replace("[dns]", '[dns]\nns_addresses = ["fe80::1%eth0"]'), "[dns] ns_addresses", "scoped"),
        (MINIMAL.replace("[dns]", '[dns]\nns_name = "disco.internal"'), "[dns] ns_name", "not the zone itself"),
        (MINIMAL.replace("[dns]", '[dns]\nns_name = "ns.example.com"'), "[dns] ns_name", "inside [dns] zone"),
    ],
    ids=[
        "missing-region",
        "missing-zone",
        "toml-syntax",
        "unknown-key",
        "unknown-table",
        "ttl-type",
        "interval-zero",
        "interval-bool",
        "clusters-empty",
        "clusters-not-list",
        "listen-no-host",
        "listen-bare-ipv6",
        "listen-port-range",
        "listen-invalid-ip",
        "listen-hostname",
        "listen-duplicate",
        "dns-http-same-port",
        "snapshot-s3-no-key",
        "snapshot-directory",
        "snapshot-device",
        "startup-wait-negative",
        "ttl-over-31-bits",
        "zone-over-255-octets",
        "duplicate-table",
        "endpoint-scheme",
        "zone-chars",
        "log-format",
        "eureka-path",
        "staleness-negative",
        "account-name",
        "topic-region",
        "topic-arn",
        "queue-prefix",
        "ns-addresses",
        "ns-scoped",
        "ns-is-zone",
        "ns-outside",
    ],
)
def test_bad_config_names_file_key_and_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    assert key in message
    assert reason in message
    assert "\n" not in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "absent.toml")


def test_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, MINIMAL)
    assert main(["check", "-c", str(good)]) == 0
    assert capsys.readouterr().out.strip() == f"{good}: ok"

    bad = write(tmp_path, MINIMAL + "[dns]\nzone = 3\n")  # duplicate table: invalid TOML
    assert main(["check", "-c", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"discobridge: config error: {bad}: ")

    wrong_type = tmp_path / "typed.toml"
    wrong_type.write_text(MINIMAL.replace("[dns]", "[dns]\nttl_s = 1.5"))
    assert main(["check", "-c", str(wrong_type)]) == 1
    assert "[dns] ttl_s: expected a whole number of seconds" in capsys.readouterr().err


ROLE = 'role_arn = "arn:aws:iam::111111111111:role/discobridge-read"'
PROD_ENTRY = f'[[accounts]]\nname = "prod"\n{ROLE}\n'


def test_accounts_read_each_region_with_defaults_after_the_local_account(tmp_path: Path) -> None:
    text = (
        MINIMAL.replace('[dns]', '[ecs]\nclusters = ["shop"]\n[dns]')
        + PROD_ENTRY + 'regions = ["eu-west-1", "us-east-1"]\nexternal_id = "ext-1"\n'
        + '[[accounts]]\nname = "staging"\nrole_arn = "arn:aws:iam::222222222222:role/r"\nnamespaces = ["corp.local"]\n'
    )  # fmt: skip
    config = load_config(write(tmp_path, text))
    assert [(r.account, r.region, r.clusters, r.namespaces, r.account_id) for r in config.account_regions()] == [
        ("local", "eu-west-1", ("shop",), (), None),
        ("prod", "eu-west-1", ("*",), (), "111111111111"),
        ("prod", "us-east-1", ("*",), (), "111111111111"),
        ("staging", "eu-west-1", ("*",), ("corp.local",), "222222222222"),  # [aws] region by default
    ]
    assert config.account_regions()[1].external_id == "ext-1"
    assert load_config(write(tmp_path, MINIMAL)).accounts == ()  # one account, as before


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (MINIMAL + '[accounts]\nname = "prod"\n', "[[accounts]]", "expected an array of tables"),
        (MINIMAL + PROD_ENTRY + 'regoins = ["eu-west-1"]\n', "[[accounts]] #1 regoins", '(did you mean "regions"?)'),
        (MINIMAL + '[[accounts]]\nname = "prod"\n', "[[accounts]] #1 role_arn", "required key is missing"),
        (MINIMAL + f'[[accounts]]\n{ROLE}\n', "[[accounts]] #1 name", "required key is missing"),
        (MINIMAL + PROD_ENTRY.replace('"prod"', '"Prod"'), "[[accounts]] #1 name", "a-z, 0-9 and '-'"),
        (MINIMAL + PROD_ENTRY.replace("iam::111111111111:role", "iam::1111:role"), "role_arn", "an IAM role ARN"),
        (MINIMAL + PROD_ENTRY + 'regions = ["eu-west-1", "eu-west-1"]\n', "regions", "eu-west-1 is listed twice"),
        (MINIMAL + PROD_ENTRY + 'regions = ["Ireland"]\n', "[[accounts]] #1 regions", "an AWS region"),
        (MINIMAL + PROD_ENTRY + 'external_id = "x"\n', "[[accounts]] #1 external_id", "2-1224"),
        (MINIMAL + PROD_ENTRY + PROD_ENTRY.replace(ROLE, ROLE.replace("1111", "2222")), "[[accounts]] #2 name",
         "'prod' is already the name of [[accounts]] #1"),
        (MINIMAL + PROD_ENTRY + PROD_ENTRY.replace('"prod"', '"prod-eu"'), "[[accounts]] #2 role_arn",
         "account 111111111111 is already [[accounts]] #1 (prod)"),
        (MINIMAL + PROD_ENTRY.replace('"prod"', '"local"'), "[[accounts]] #1 name",
         "'local' is already the name of [aws] account_name"),
        (MINIMAL + PROD_ENTRY + '[ecs]\nclusters = ["prod"]\n', "[[accounts]] #1 name",
         "'prod' is also a configured cluster ('prod')"),
        (MINIMAL + PROD_ENTRY + 'clusters = ["arn:aws:ecs:eu-west-1:111111111111:cluster/local"]\n',
         "[aws] account_name", "'local' is also a configured cluster"),
        (MINIMAL + PROD_ENTRY.replace('"prod"', '"eu-west-1"'), "[[accounts]] #1 name",
         "'eu-west-1' is also a configured region"),
        (MINIMAL + PROD_ENTRY.replace('"prod"', '"prod-1"') + 'clusters = ["Prod_1"]\n', "[[accounts]] #1 name",
         "'prod-1' is also a configured cluster ('Prod_1')"),
    ],
    ids=["accounts-not-array", "accounts-unknown-key", "accounts-no-role", "accounts-no-name", "accounts-name-chars",
         "accounts-role-arn", "accounts-region-twice", "accounts-region-shape", "accounts-external-id",
         "accounts-name-twice", "accounts-id-twice", "accounts-name-local", "accounts-name-is-cluster",
         "local-name-is-cluster", "accounts-name-is-region", "accounts-name-is-cluster-as-dns-label"],
)  # fmt: skip
def test_bad_accounts_name_the_entry_the_key_and_the_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and key in message and reason in message, message
    assert main(["check", "-c", str(path)]) == 1  # check fails on it as run would
