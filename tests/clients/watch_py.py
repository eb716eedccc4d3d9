"""Runs py-eureka-client against a discobridge and prints what it resolves after each refresh.

One JSON line per change: UP host:port by app (from its cached registry) and by VIP (through its
own vips/ API call). Usage: python watch_py.py <base-url> <apps> <vips> (comma-separated lists).
"""

import asyncio
import json
import sys

from py_eureka_client import eureka_basic
from py_eureka_client.eureka_client import EurekaClient


def addresses(instances: list) -> list[str]:
    return sorted(f"{i.ipAddr}:{i.port.port}" for i in instances if i.status == "UP")


async def main(base_url: str, apps: list[str], vips: list[str]) -> None:
    # renewal_interval_in_secs is also its registry refresh interval (a delta fetch each time).
    client = EurekaClient(eureka_server=base_url, should_register=False, renewal_interval_in_secs=1)
    await client.start()
    last = None
    while True:
        registry = client.applications
        view = {
            "apps": {app: addresses(registry.get_application(app).instances) for app in apps},
            "vips": {vip: addresses(await _vip(base_url, vip)) for vip in vips},
            "hash": registry.appsHashcode,
        }
        if view != last:
            print(json.dumps(view), flush=True)
            last = view
        await asyncio.sleep(0.2)


async def _vip(base_url: str, vip: str) -> list:
    try:
        found = await eureka_basic.get_vip(base_url, vip)
    except Exception:  # noqa: BLE001 - a 404 for an unknown VIP is an empty answer here
        return []
    return [i for app in found.applications for i in app.instances]


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")))
