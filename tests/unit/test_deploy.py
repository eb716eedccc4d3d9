"""deploy/: the CloudFormation template lints clean and grants exactly the AWS calls the code makes;
the Dockerfile lints clean, runs as non-root, checks /healthz and ships no tests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

from discobridge.aws import OPERATIONS
from discobridge.config import parse_config
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is installed with the test extras"
    return found


TEMPLATES = ("cloudformation.yaml", "member-account.yaml")


def test_cloudformation_templates_have_no_lint_errors() -> None:
    result = subprocess.run(
        [tool("cfn-lint"), *(str(DEPLOY / t) for t in TEMPLATES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _template(name: str) -> dict[str, Any]:
    template, problems = decode(str(DEPLOY / name))
    assert not problems and template is not None
    return dict(template)


def _statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """The role's policy statements; one granted under a condition (Fn::If) counts as granted."""
    policies = template["Resources"][role]["Properties"]["Policies"]
    statements = [s for p in policies for s in p["PolicyDocument"]["Statement"]]
    return [s["Fn::If"][1] if "Fn::If" in s else s for s in statements]


# Grants that no call names but a call needs: S3 answers GetObject of a missing key with 403
# instead of 404 unless the caller may list that key.
IMPLIED = {"s3:ListBucket"}
# Batch calls authorised as their single form (the SQS API reference, "Permissions").
IAM_ACTION_OF = {"sqs:DeleteMessageBatch": "sqs:DeleteMessage"}
# Calls IAM never authorises: "No permissions are required to perform this operation" (STS).
UNAUTHORISED = {"sts:GetCallerIdentity"}


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_task_role_grants_exactly_the_operations_the_code_can_call() -> None:
    template = _template("cloudformation.yaml")
    granted = {action for s in _statements(template, "TaskRole") for action in _actions(s)}
    # IAM action prefixes are the botocore service names for these services.
    called = {f"{service}:{operation}" for service, operations in OPERATIONS.items() for operation in operations}
    called = {IAM_ACTION_OF.get(action, action) for action in called} - UNAUTHORISED
    assert granted == called | IMPLIED
    assert all(s["Effect"] == "Allow" for s in _statements(template, "TaskRole"))
    s3 = [s for s in _statements(template, "TaskRole") if any(a.startswith("s3:") for a in _actions(s))]
    assert all(s["Resource"] != "*" for s in s3)  # the snapshot object and its listing only
    for statement in _statements(template, "TaskRole"):
        actions = _actions(statement)
        if any(a.startswith("sqs:") for a in actions) and actions != ["sqs:ListQueues"]:
            assert statement["Resource"] == {
                "Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:discobridge-*"
            }
        if any(a.startswith("sns:") for a in actions):
            assert statement["Resource"] == {"Ref": "EventsTopic"}  # that topic only
        if any(a.startswith("sts:") for a in actions):
            assert statement["Resource"] == {"Ref": "MemberRoleArns"}  # the member roles only


# What another account is read with: the ECS, EC2 and Cloud Map calls, never the shared ones.
MEMBER_SERVICES = ("ecs", "ec2", "servicediscovery")


def test_member_account_role_grants_exactly_the_read_calls_to_the_central_task_role_only() -> None:
    template = _template("member-account.yaml")
    granted = {action for s in _statements(template, "ReadRole") for action in _actions(s)}
    assert granted == {f"{service}:{op}" for service in MEMBER_SERVICES for op in OPERATIONS[service]}
    (trust,) = template["Resources"]["ReadRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": {"Ref": "CentralTaskRoleArn"}}
    assert trust["Action"] == "sts:AssumeRole"
    condition, with_id, without = trust["Condition"]["Fn::If"]
    assert condition == "HasExternalId" and without == {"Ref": "AWS::NoValue"}
    assert with_id == {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}


def test_member_accounts_events_reach_the_topic_once_whatever_clusters_this_account_filters_to() -> None:
    resources = _template("cloudformation.yaml")["Resources"]
    local, members = resources["EcsEventsRule"], resources["MemberEcsEventsRule"]
    assert local["Properties"]["EventPattern"]["account"] == [{"Ref": "AWS::AccountId"}]
    assert members["Properties"]["EventPattern"]["account"] == {"Ref": "MemberAccountIds"}
    assert "detail" not in members["Properties"]["EventPattern"]  # not cut by ClusterArns
    assert members["Properties"]["Targets"][0]["Arn"] == {"Ref": "EventsTopic"}
    (publish,) = resources["EventsTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    _, both, _ = publish["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::If"]
    assert both == [{"Fn::GetAtt": ["EcsEventsRule", "Arn"]}, {"Fn::GetAtt": ["MemberEcsEventsRule", "Arn"]}]
    bus = resources["MemberEventsPolicy"]["Properties"]
    assert bus["Statement"]["Principal"] == {"AWS": {"Ref": "MemberAccountIds"}}


def test_the_config_the_template_writes_is_valid_with_member_accounts() -> None:
    template = _template("cloudformation.yaml")
    text = template["Resources"]["Config"]["Properties"]["Value"]["Fn::Sub"]
    values = {
        "AWS::Region": "eu-west-1",
        "Clusters": '"*"',
        "PollIntervalS": "10",
        "Namespaces": "",
        "Zone": "discobridge.internal",
        "DnsTtlS": "5",
        "DnsIpA": "10.0.1.53",
        "DnsIpB": "10.0.2.53",
        "MaxStalenessS": "60",
        "LogLevel": "info",
        "SnapshotBucket": "snapshots",
        "EventsTopic": "arn:aws:sns:eu-west-1:123456789012:discobridge-ecs-events",
        "MemberAccounts": 'accounts = [{ name = "prod", role_arn = "arn:aws:iam::111111111111:role/discobridge-read",'
        ' regions = ["eu-west-1", "us-east-1"] }]',
    }
    config = parse_config(re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], text), "template")
    assert [f"{r.account}/{r.region}" for r in config.account_regions()] == [
        "local/eu-west-1",
        "prod/eu-west-1",
        "prod/us-east-1",
    ]
    values["MemberAccounts"] = ""
    assert parse_config(re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], text), "template").accounts == ()


def test_dockerfile_lints_clean_runs_as_non_root_checks_health_and_ships_no_tests() -> None:
    dockerfile = DEPLOY / "Dockerfile"
    result = subprocess.run([tool("hadolint"), str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    text = dockerfile.read_text()
    final_stage = text.rsplit("\nFROM ", 1)[1]
    users = re.findall(r"^USER\s+(\S+)", final_stage, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*", text, flags=re.MULTILINE) and "/healthz" in text
    copied = " ".join(re.findall(r"^COPY\s+(.*)$", text, flags=re.MULTILINE))
    assert "tests" not in copied and "bench" not in copied and "cap_net_bind_service" in text
    assert (
        re.findall(r"^CMD (.*)$", text, flags=re.MULTILINE)[-1]
        == '["discobridge", "run", "-c", "/etc/discobridge/config.toml"]'
    )
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "*" in ignored and "!src/" in ignored and "!tests/" not in ignored


def test_clients_never_reach_the_task_http_port_and_health_checks_do_not_depend_on_client_cidr() -> None:
    template, problems = decode(str(DEPLOY / "cloudformation.yaml"))
    assert not problems and template is not None
    resources = template["Resources"]
    task_rules = resources["TaskSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    http_rules = [r for r in task_rules if r["FromPort"] <= 8080 <= r["ToPort"]]
    assert all(r.get("CidrIp") != {"Ref": "ClientCidr"} for r in http_rules)  # only through the ALB
    sources = [r.get("SourceSecurityGroupId") or r.get("CidrIp") for r in http_rules]
    assert {"Ref": "AlbSecurityGroup"} in sources  # the ALB's traffic and its health checks
    assert {"Fn::Sub": "${DnsIpA}/32"} in sources and {"Fn::Sub": "${DnsIpB}/32"} in sources  # the NLB's checks
    for name, resource in resources.items():
        if resource["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup":
            assert resource["Properties"].get("HealthCheckPath") == "/healthz", name
            assert str(resource["Properties"].get("HealthCheckPort", "8080")) == "8080", name
    # The Resolver endpoint forwards to the NLB's addresses, whatever the clients' range.
    egress = resources["ResolverSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert all(r["CidrIp"] in ({"Fn::Sub": "${DnsIpA}/32"}, {"Fn::Sub": "${DnsIpB}/32"}) for r in egress)
