// Runs eureka-js-client against a discobridge and prints what it resolves (UP host:port by app
// and by VIP) as one JSON line whenever that changes. It polls its own cache because a delta
// merge emits no event in this client. Usage:
//   node watch_js.js <port> <apps comma-separated> <vips comma-separated> <delta: 0|1> [servicePath]
'use strict';
const Eureka = require('eureka-js-client').Eureka;

const [port, apps, vips, delta, servicePath] = process.argv.slice(2);
const client = new Eureka({
  logger: { debug() {}, info() {}, warn(...a) { console.error(...a); }, error(...a) { console.error(...a); } },
  shouldUseDelta: delta === '1',
  eureka: {
    host: '127.0.0.1',
    port: Number(port),
    servicePath: servicePath || '/eureka/apps/',
    registerWithEureka: false,
    fetchRegistry: true,
    registryFetchInterval: 300,
    maxRetries: 1,
  },
  instance: {},
});

function addresses(instances) {
  // Delta merges bypass the client's own UP filter, so filter as an application would.
  return instances.filter((i) => i.status === 'UP').map((i) => `${i.hostName}:${i.port.$}`).sort();
}

let last = null;
function report() {
  const byApp = {};
  const byVip = {};
  for (const app of apps.split(',').filter(Boolean)) byApp[app] = addresses(client.getInstancesByAppId(app));
  for (const vip of vips.split(',').filter(Boolean)) byVip[vip] = addresses(client.getInstancesByVipAddress(vip));
  const line = JSON.stringify({ apps: byApp, vips: byVip });
  if (line !== last) {
    process.stdout.write(line + '\n');
    last = line;
  }
}
client.once('registryUpdated', () => setInterval(report, 50));
client.start();
process.on('SIGTERM', () => { client.stop(); process.exit(0); });
