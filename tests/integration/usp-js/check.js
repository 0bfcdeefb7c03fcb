// A third-party USP Controller, usp-js, against a uspsim agent over MQTT 5.
// Run by tests/integration/test-usp-js.sh after `npm ci` of this folder:
//   node check.js PORT AGENT_EID CONTROLLER_EID CONTROLLER_TOPIC
// The fleet is started with --controller-id CONTROLLER_EID and
// --controller-topic CONTROLLER_TOPIC, so usp-js is the agents' controller:
// the agent answers at the MQTT 5 Response Topic usp-js gives and sends its
// notifications to the controller's topic.
// Prints "ok ..." or "FAIL ..." per check; exits 1 on any failure.
"use strict";

const usp = require("usp-js");
const mqttConfig = require("usp-js/node/configurations/mqtt");
const { decodeId } = require("usp-js/node/commands");

const [port, agentEid, ctlEid, ctlTopic] = process.argv.slice(2);
if (!port || !agentEid || !ctlEid || !ctlTopic) {
  console.error("usage: node check.js PORT AGENT_EID CONTROLLER_EID CONTROLLER_TOPIC");
  process.exit(2);
}
const agentTopic = `usp/agent/${agentEid}`;
let failures = 0;

function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
}

// usp-js publishes with client.publish(topic, record) and no options. An
// agent can only answer an MQTT 5 PUBLISH that names a Response Topic
// [R-MQTT.22/23], so usp-js is built here (usp-js's own buildConnect) with
// a client that adds the Response Topic and Content Type [R-MQTT.27].
async function connectClient(opts) {
  const client = await mqttConfig.connectClient(opts);
  return {
    on: (key, fn) => client.on(key, fn),
    subscribe: (topic) => client.subscribe(topic, { qos: 1 }),
    unsubscribe: (topic) => client.unsubscribe(topic),
    publish: (topic, msg) =>
      client.publish(topic, msg, {
        qos: 1,
        properties: { responseTopic: ctlTopic, contentType: "usp.msg" },
      }),
    end: () => client.end(),
  };
}

const connect = usp.build({
  connectClient,
  decodeID: decodeId,
  loadProtobuf: mqttConfig.loadProtobuf,
});

// Runs one call; returns [value, error].
async function attempt(promise) {
  try {
    return [await promise, null];
  } catch (e) {
    return [null, e];
  }
}

const show = (v) => JSON.stringify(v);

async function main() {
  const errors = [];
  const conn = await connect(
    {
      host: "127.0.0.1",
      port: Number(port),
      protocol: "mqtt",
      protocolVersion: 5,
      clientId: `usp-js-check-${process.pid}`, // unique on the broker
      username: "",
      password: "",
      toId: agentEid, // no discovery topic: the agent is named
      fromId: ctlEid,
      publishEndpoint: agentTopic,
      subscribeEndpoint: ctlTopic,
      closeOnDisconnect: true,
      connectTimeout: 10000,
    },
    { onError: (e) => errors.push(String(e)) }
  );
  const c = conn.options({ timeout: 15000 });
  check(true, `usp-js connected over MQTT 5 as ${ctlEid}, talking to ${agentEid}`);

  // Get: one parameter, then an object.
  // The gateway profile's serial number is GW and the agent's index.
  const serial = "GW" + String(Number(agentEid.match(/(\d+)$/)[1])).padStart(8, "0");
  let [v, e] = await attempt(c.get("Device.DeviceInfo.SerialNumber"));
  check(!e && v === serial, `Get Device.DeviceInfo.SerialNumber = ${show(v)} (expected ${serial})${e ? " error " + show(e) : ""}`);
  [v, e] = await attempt(c.get("Device.LocalAgent."));
  check(
    !e && v && v.EndpointID === agentEid,
    `Get Device.LocalAgent. gives EndpointID ${show(v && v.EndpointID)}${e ? " error " + show(e) : ""}`
  );
  [v, e] = await attempt(c.get(["Device.DeviceInfo.Manufacturer", "Device.DeviceInfo.ProductClass"]));
  check(
    !e && show(v) === show(["uspsim", "HomeGateway"]),
    `Get of two paths = ${show(v)}${e ? " error " + show(e) : ""}`
  );

  // An error: a path the data model does not have.
  [v, e] = await attempt(c.get("Device.NoSuchObject."));
  check(
    e && Number(e.errCode) === 7026,
    `Get Device.NoSuchObject. fails with 7026 (got ${show(e || v)})`
  );

  // Set, then read it back.
  const name = `usp-js was here ${process.pid}`;
  [v, e] = await attempt(c.set("Device.DeviceInfo.FriendlyName", name));
  check(
    !e && Array.isArray(v) && v.length === 1 && v[0].affectedPath === "Device.DeviceInfo." &&
      v[0].updatedParams && v[0].updatedParams.FriendlyName === name,
    `Set Device.DeviceInfo.FriendlyName: ${show(v)}${e ? " error " + show(e) : ""}`
  );
  [v, e] = await attempt(c.get("Device.DeviceInfo.FriendlyName"));
  check(!e && v === name, `Get after Set = ${show(v)}`);

  // Add a row, read it, delete it, and it is gone.
  const table = "Device.DHCPv4.Server.Pool.1.StaticAddress.";
  [v, e] = await attempt(
    c.add(table, { Chaddr: "02:75:73:70:6a:73", Yiaddr: "192.168.1.190", Enable: "true" })
  );
  const row = v;
  check(
    !e && typeof row === "string" && /^Device\.DHCPv4\.Server\.Pool\.1\.StaticAddress\.\d+\.$/.test(row),
    `Add ${table} created ${show(row)}${e ? " error " + show(e) : ""}`
  );
  if (typeof row === "string") {
    [v, e] = await attempt(c.get(row));
    check(
      !e && v && v.Chaddr === "02:75:73:70:6a:73" && v.Yiaddr === "192.168.1.190" && /^cpe-/.test(v.Alias || ""),
      `Get ${row} = ${show(v)}`
    );
    [v, e] = await attempt(c.del(row));
    check(!e && show(v) === show([row]), `Delete ${row}: ${show(v)}${e ? " error " + show(e) : ""}`);
    [v, e] = await attempt(c.get(row));
    // R-GET.0: a path that is not a search path and matches nothing in the
    // instantiated data model gives 7026.
    check(e && Number(e.errCode) === 7026, `Get ${row} after Delete fails with 7026 (got ${show(e || v)})`);
  }

  // Operate: a synchronous command, then an asynchronous one whose
  // OperationComplete arrives through the subscription usp-js makes.
  let [op, cleanup] = await c.operate("Device.WiFi.AccessPoint.1.Security.Reset()", { isAsync: false });
  [v, e] = await attempt(op());
  check(!e && v && typeof v === "object", `Operate Device.WiFi.AccessPoint.1.Security.Reset() (sync): ${show(v)}${e ? " error " + show(e) : ""}`);
  [op, cleanup] = await c.operate("Device.ScheduleTimer()", { commandKey: "usp-js" });
  const t0 = Date.now();
  [v, e] = await attempt(op({ DelaySeconds: "1" }));
  const ms = Date.now() - t0;
  check(
    !e && v && ms >= 900,
    `Operate Device.ScheduleTimer() DelaySeconds=1 (async): OperationComplete after ${ms} ms: ${show(v)}${e ? " error " + show(e) : ""}`
  );
  [v, e] = await attempt(cleanup());
  check(!e, `the OperationComplete subscription usp-js made is deleted again: ${show(v)}${e ? " error " + show(e) : ""}`);
  [v, e] = await attempt(c.get("Device.LocalAgent.Request."));
  check(!e && (Array.isArray(v) ? v.length === 0 : !v || Object.keys(v).length === 0),
    `no Request row is left behind: ${show(v)}`);

  // GetSupportedProtocol.
  [v, e] = await attempt(c.supportedProto("1.4"));
  const versions = Array.isArray(v) ? v : typeof v === "string" ? v.split(",") : [];
  check(!e && versions.includes("1.4") && versions.includes("1.0"), `GetSupportedProtocol: ${show(v)}`);

  await conn.disconnect();
  const real = errors.filter((x) => !/Could not locate id/.test(x));
  check(real.length === 0, `no client errors (${show(real.slice(0, 3))})`);
}

const watchdog = setTimeout(() => {
  check(false, "the checks finished within 90 s");
  process.exit(1);
}, 90000);

main()
  .catch((e) => check(false, `usp-js run: ${e && e.stack ? e.stack : show(e)}`))
  .finally(() => {
    clearTimeout(watchdog);
    console.log(`usp-js: ${failures ? "FAILED" : "all checks passed"}`);
    process.exit(failures ? 1 : 0);
  });
