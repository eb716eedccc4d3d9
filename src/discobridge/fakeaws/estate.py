"""Builds ECS, EC2 and Cloud Map estates in the fake AWS through the public APIs, as AWS would."""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from itertools import cycle
from typing import Any

import boto3

from discobridge.fakeaws.agent import SimulatedAgent, set_task_health
from discobridge.fakeaws.ecs_events import BUS, EcsEventBus

_AMI = "ami-0a1b2c3d4e5f60718"  # any id: moto checks none when its AMI catalogue is not loaded


@dataclass(frozen=True)
class Container:
    """One container definition: name, container ports and docker labels."""

    name: str
    ports: tuple[int, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    host_port: int = 0  # bridge mode: 0 asks Docker for an ephemeral port, as in real ECS
    health_check: bool = False  # only a container with one ever reports a health status
    port_names: dict[int, str] = field(default_factory=dict)  # portMappings[].name, by container port

    def definition(self) -> dict[str, Any]:
        check = {"healthCheck": {"command": ["CMD-SHELL", "curl -fs http://localhost:8080/ || exit 1"]}}
        return {
            **(check if self.health_check else {}),
            "name": self.name,
            "image": f"example/{self.name}:1.0",
            "memory": 128,
            "essential": True,
            "dockerLabels": self.labels,
            "portMappings": [
                {
                    "containerPort": port,
                    "hostPort": self.host_port,
                    "protocol": "tcp",
                    **({"name": self.port_names[port]} if port in self.port_names else {}),
                }
                for port in self.ports
            ],
        }


DEFAULT_ACCOUNT = "123456789012"  # moto's, for credentials it issued no role for


class Estate:
    """A handle on one fake AWS account and region, with the agent that runs its tasks. Another
    account than moto's default is reached as discobridge reaches it: through a role there."""

    def __init__(self, endpoint_url: str, region: str = "us-east-1", account_id: str = DEFAULT_ACCOUNT) -> None:
        options: dict[str, Any] = {
            "region_name": region,
            "endpoint_url": endpoint_url,
            "aws_access_key_id": "estate",
            "aws_secret_access_key": "estate",
        }
        if account_id != DEFAULT_ACCOUNT:
            # moto maps the credentials AssumeRole issues to the role's account.
            credentials = boto3.client("sts", **options).assume_role(
                RoleArn=f"arn:aws:iam::{account_id}:role/estate", RoleSessionName="estate"
            )["Credentials"]
            options.update(
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
            )
        self.region, self.account_id = region, account_id
        self.ecs = boto3.client("ecs", **options)
        self.ec2 = boto3.client("ec2", **options)
        self.cloudmap = boto3.client("servicediscovery", **options)
        self.s3 = boto3.client("s3", **options)
        self.sns = boto3.client("sns", **options)
        self.sqs = boto3.client("sqs", **options)
        self.agent = SimulatedAgent(self.ecs)
        self._subnets: dict[str, str] = {}
        self._vpc = ""

    # ---- ECS and EC2 ------------------------------------------------------------------------
    def cluster(self, name: str) -> str:
        arn: str = self.ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
        return arn

    def hosts(self, cluster: str, count: int, az: str = "a") -> list[str]:
        """Start `count` EC2 instances in zone `az` and register them as container instances."""
        reservation = self.ec2.run_instances(
            ImageId=_AMI, MinCount=count, MaxCount=count, InstanceType="m5.large", SubnetId=self.subnet(az)
        )
        arns: list[str] = []
        for instance in reservation["Instances"]:
            document = json.dumps({"instanceId": instance["InstanceId"], "region": self.region})
            registered = self.ecs.register_container_instance(cluster=cluster, instanceIdentityDocument=document)
            arns.append(registered["containerInstance"]["containerInstanceArn"])
        return arns

    def subnet(self, az: str) -> str:
        """The subnet of zone `az` ("a", "b", ...) in one shared VPC, 10.0.<n>.0/24."""
        if not self._vpc:
            self._vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            # As in any VPC that runs ECS tasks; awsvpc ENIs get a private DNS name from it.
            self.ec2.modify_vpc_attribute(VpcId=self._vpc, EnableDnsHostnames={"Value": True})
        if az not in self._subnets:
            index = string.ascii_lowercase.index(az) + 1
            self._subnets[az] = self.ec2.create_subnet(
                VpcId=self._vpc, CidrBlock=f"10.0.{index}.0/24", AvailabilityZone=f"{self.region}{az}"
            )["Subnet"]["SubnetId"]
        return self._subnets[az]

    def task_definition(self, family: str, *containers: Container, network_mode: str = "bridge") -> str:
        extra = (
            {"requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512"} if network_mode == "awsvpc" else {}
        )
        arn: str = self.ecs.register_task_definition(
            family=family,
            networkMode=network_mode,
            containerDefinitions=[c.definition() for c in containers],
            **extra,
        )["taskDefinition"]["taskDefinitionArn"]
        return arn

    def web_service(self, cluster: str, name: str, hosts: int = 1) -> list[str]:
        """The usual test estate: a cluster, `hosts` new hosts, one bridge-mode web task on each."""
        self.cluster(cluster)
        definition = self.task_definition(name, Container("web", ports=(8080,)))
        return self.service(cluster, name, definition, self.hosts(cluster, hosts))

    def service(self, cluster: str, name: str, task_definition: str, hosts: list[str]) -> list[str]:
        """Create a service and place one task per listed host, as the ECS scheduler would."""
        self.ecs.create_service(
            cluster=cluster, serviceName=name, taskDefinition=task_definition, desiredCount=len(hosts)
        )
        return self.place(cluster, task_definition, hosts, group=f"service:{name}")

    def place(self, cluster: str, task_definition: str, hosts: list[str], group: str | None = None) -> list[str]:
        """StartTask one task per listed host (standalone when `group` is None); the agent runs them."""
        arns: list[str] = []
        extra = {"group": group} if group else {}
        # StartTask takes at most 10 container instances per call.
        for start in range(0, len(hosts), 10):
            tasks = self.ecs.start_task(
                cluster=cluster, taskDefinition=task_definition, containerInstances=hosts[start : start + 10], **extra
            )["tasks"]
            self.agent.start(cluster, tasks)
            arns.extend(t["taskArn"] for t in tasks)
        return arns

    def fargate_service(self, cluster: str, name: str, task_definition: str, count: int, azs: str = "ab") -> list[str]:
        """An awsvpc service on Fargate: each task gets its own ENI in a subnet of `azs`."""
        self.ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=task_definition, desiredCount=count)
        arns: list[str] = []
        for _, az in zip(range(count), cycle(azs)):
            tasks = self.ecs.run_task(
                cluster=cluster,
                taskDefinition=task_definition,
                launchType="FARGATE",
                group=f"service:{name}",
                networkConfiguration={"awsvpcConfiguration": {"subnets": [self.subnet(az)], "securityGroups": []}},
            )["tasks"]
            self.agent.start(cluster, tasks)
            arns.extend(t["taskArn"] for t in tasks)
        return arns

    def pending(self, cluster: str, task_definition: str, host: str, group: str | None = None) -> str:
        """Place a task that the agent has not started yet (PENDING, no bindings)."""
        extra = {"group": group} if group else {}
        task = self.ecs.start_task(cluster=cluster, taskDefinition=task_definition, containerInstances=[host], **extra)
        arn: str = task["tasks"][0]["taskArn"]
        return arn

    def set_health(self, cluster: str, task_arn: str, status: str) -> None:
        set_task_health(self.region, cluster, task_arn, status, self.account_id)

    def drain(self, cluster: str, host: str) -> None:
        self.ecs.update_container_instances_state(cluster=cluster, containerInstances=[host], status="DRAINING")

    def stop(self, cluster: str, task_arn: str) -> None:
        self.ecs.stop_task(cluster=cluster, task=task_arn, reason="stopped by the estate")

    # ---- ECS events ---------------------------------------------------------------------------
    def events_topic(self, name: str = "ecs-events") -> str:
        """An SNS topic that receives this account's ECS events, as an EventBridge rule would
        deliver them; `BUS` drops, duplicates or holds them back on demand."""
        arn: str = self.sns.create_topic(Name=name)["TopicArn"]
        BUS.route(arn.split(":")[4], self.region, arn)
        return arn

    def forward_events(self, topic_arn: str) -> None:
        """This account and region's ECS events reach `topic_arn` (another account's, say): a
        rule here forwarding to that account's bus, whose rule publishes to the topic."""
        BUS.route(self.account_id, self.region, topic_arn)

    @property
    def events(self) -> EcsEventBus:
        return BUS

    # ---- S3 ---------------------------------------------------------------------------------
    def bucket(self, name: str) -> str:
        self.s3.create_bucket(Bucket=name)
        return name

    # ---- Cloud Map --------------------------------------------------------------------------
    def namespace(self, name: str) -> str:
        operation = self.cloudmap.create_http_namespace(Name=name)["OperationId"]
        namespace_id: str = self.cloudmap.get_operation(OperationId=operation)["Operation"]["Targets"]["NAMESPACE"]
        return namespace_id

    def cloudmap_service(self, namespace_id: str, service: str, custom_health: bool = False) -> str:
        """A Cloud Map service; with custom_health its instances' health is set by API calls."""
        extra = {"HealthCheckCustomConfig": {"FailureThreshold": 1}} if custom_health else {}
        service_id: str = self.cloudmap.create_service(Name=service, NamespaceId=namespace_id, **extra)["Service"]["Id"]
        return service_id

    def cloudmap_instance(self, namespace_id: str, service: str, instance: str, attributes: dict[str, str]) -> str:
        """Register an instance, creating its service on first use; returns the service id."""
        services = self.cloudmap.list_services(Filters=[{"Name": "NAMESPACE_ID", "Values": [namespace_id]}])
        service_id = next((s["Id"] for s in services["Services"] if s["Name"] == service), None)
        if service_id is None:
            service_id = self.cloudmap_service(namespace_id, service)
        self.cloudmap.register_instance(ServiceId=service_id, InstanceId=instance, Attributes=attributes)
        return service_id

    def cloudmap_health(self, service_id: str, instance: str, status: str) -> None:
        self.cloudmap.update_instance_custom_health_status(ServiceId=service_id, InstanceId=instance, Status=status)
