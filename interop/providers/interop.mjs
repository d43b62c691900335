// Provider SDK interop for relayd (issue 3, "Done when").
//
//   node interop.mjs http://127.0.0.1:8080
//
// Every webhook below is signed the way its provider signs it: with the provider's own SDK
// (Stripe's generateTestHeaderString, Octokit's sign, the standardwebhooks and svix libraries'
// Webhook#sign, also for GitLab's signing tokens, Twilio's getExpectedTwilioSignature,
// HubSpot's Signature.getSignature) or, where the provider publishes no signing SDK, by hand
// per its documentation with node:crypto (Shopify, Linear, Slack). Each signature is first
// checked with the provider's own verifier where its SDK has one (the same SDK's, or
// @shopify/shopify-api's webhooks.validate, @linear/sdk's LinearWebhookClient#verify), so a
// misuse of an SDK or a misreading of the docs shows up as such and not as a relay bug. Then:
//
//   - valid deliveries are POSTed to /v1/webhooks/{source}: 200 with the provider's event id;
//   - stale and future (where the scheme signs a timestamp), tampered, unsigned and
//     wrong-secret variants: 401, with a body that repeats neither signature nor secret;
//   - Slack's url_verification comes back with its challenge and is not stored;
//   - through the HTTP API: every accepted event is stored with its id, type, subject, time,
//     content type, verification (provider, key) and body byte for byte
//     (GET /v1/sources/{source}/events/{id}); no rejected one is (404); and each source holds
//     exactly the accepted events (GET /v1/sources/{source}/events).
//
// The secrets come from the environment (run.sh writes the same values into relayd's
// configuration). Prints one line per check; exits 1 when any failed.

import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

import { sign as octokitSign, verify as octokitVerify } from "@octokit/webhooks-methods";

const require = createRequire(import.meta.url);
const Stripe = require("stripe");
const { Webhook: StandardWebhook } = require("standardwebhooks");
const { Webhook: SvixWebhook } = require("svix");
const twilioWebhooks = require("twilio/lib/webhooks/webhooks");
const { Signature: HubSpotSignature } = require("@hubspot/api-client");
const { LinearWebhookClient } = await import("@linear/sdk/webhooks");
await import("@shopify/shopify-api/adapters/node");
const { shopifyApi, ApiVersion: ShopifyApiVersion } = await import("@shopify/shopify-api");

// ---------------------------------------------------------------------------------------
// Setup

const base = (process.argv[2] || process.env.RELAY_BASE_URL || "").replace(/\/+$/, "");
if (!/^https?:\/\/[^/]+$/.test(base)) {
  console.error("usage: node interop.mjs <relayd base URL, e.g. http://127.0.0.1:8080>");
  process.exit(2);
}

function env(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`interop: ${name} is not set (run.sh sets it)`);
    process.exit(2);
  }
  return v;
}

const S = {
  stripe: env("INTEROP_STRIPE_SECRET"),
  stripeOld: env("INTEROP_STRIPE_SECRET_OLD"),
  github: env("INTEROP_GITHUB_SECRET"),
  standard: env("INTEROP_STANDARDWEBHOOKS_SECRET"),
  svix: env("INTEROP_SVIX_SECRET"),
  svixOld: env("INTEROP_SVIX_SECRET_OLD"),
  twilio: env("INTEROP_TWILIO_TOKEN"),
  twilioSecondary: env("INTEROP_TWILIO_TOKEN_SECONDARY"),
  shopify: env("INTEROP_SHOPIFY_SECRET"),
  slack: env("INTEROP_SLACK_SECRET"),
  linear: env("INTEROP_LINEAR_SECRET"),
  hubspot: env("INTEROP_HUBSPOT_SECRET"),
  gitlab: env("INTEROP_GITLAB_SECRET"),
};
// The public URLs the twilio sources are configured with (their url: key).
const twilioURL = process.env.INTEROP_TWILIO_URL || `${base}/v1/webhooks/twilio`;
// Twilio's JSON webhooks (Event Streams) go to a source with body_format: json.
const twilioJSONURL = `${twilioURL}-json`;
const twilioProxiedURL = env("INTEROP_TWILIO_PROXIED_URL");
const hubspotURL = env("INTEROP_HUBSPOT_URL"); // the hubspot source's url: key

// Secrets relayd does not know, in each provider's format.
const WRONG = {
  stripe: "whsec_" + crypto.randomBytes(24).toString("base64url"),
  hmac: crypto.randomBytes(20).toString("hex"),
  standard: "whsec_" + crypto.randomBytes(24).toString("base64"),
  twilio: crypto.randomBytes(16).toString("hex"),
};

const stripe = new Stripe("sk_test_interop_never_used_for_api_calls");
const run = crypto.randomBytes(4).toString("hex"); // keeps ids unique across runs
const nowS = () => Math.floor(Date.now() / 1000);
const STALE = 10 * 60; // seconds: beyond every tolerance used here (Stripe 300 s, others 5 min)

// ---------------------------------------------------------------------------------------
// Reporting

let passed = 0;
let failed = 0;
function check(ok, what, detail) {
  if (ok) {
    passed++;
    console.log(`ok      ${what}`);
  } else {
    failed++;
    console.log(`FAIL    ${what}${detail === undefined ? "" : `: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`}`);
  }
  return ok;
}
function note(what) {
  console.log(`n/a     ${what}`);
}

// ---------------------------------------------------------------------------------------
// HTTP

async function http(method, path, { body, headers = {} } = {}) {
  const res = await fetch(base + path, { method, body, headers, redirect: "manual" });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, contentType: res.headers.get("content-type") || "", text, json };
}

// What the relay must end up holding, per source.
const stored = new Map(); // source -> Map(id -> expectation)
const notStored = new Map(); // source -> Set(id)
function expectStored(source, id, exp) {
  if (!stored.has(source)) stored.set(source, new Map());
  stored.get(source).set(id, exp);
}
function expectNotStored(source, id) {
  if (!id) return;
  if (!notStored.has(source)) notStored.set(source, new Set());
  notStored.get(source).add(id);
}

// deliver POSTs a webhook. req: {source, body (string), contentType, headers, query}.
function deliver(req) {
  const headers = { "Content-Type": req.contentType, ...req.headers };
  return http("POST", `/v1/webhooks/${req.source}${req.query ? `?${req.query}` : ""}`, { body: req.body, headers });
}

// accept delivers req and expects 200 {"event_id": exp.id, "duplicate": false}, then records
// what GetEvent must return.
async function accept(what, req, exp) {
  const res = await deliver(req);
  const ok = check(
    res.status === 200 && res.json?.event_id === exp.id && res.json?.duplicate === false,
    `${req.source}: ${what} → 200 event_id ${exp.id}`,
    `${res.status} ${res.text}`,
  );
  if (ok) expectStored(req.source, exp.id, { ...exp, body: req.body, contentType: req.contentType, secretHeaders: req.secretHeaders || [] });
  return res;
}

// duplicate re-delivers req and expects 200 with duplicate: true.
async function duplicate(what, req, id) {
  const res = await deliver(req);
  check(res.status === 200 && res.json?.event_id === id && res.json?.duplicate === true,
    `${req.source}: ${what} → 200 duplicate ${id}`, `${res.status} ${res.text}`);
}

// reject delivers req and expects 401 with a generic body; id (the event id the variant
// carries, when it has one) must not be stored.
async function reject(what, req, id, status = 401) {
  const res = await deliver(req);
  let leak = "";
  for (const v of [...Object.values(req.headers || {}), ...Object.values(S)]) {
    if (typeof v === "string" && v.length >= 16 && res.text.includes(v)) leak = v;
  }
  check(res.status === status && !leak, `${req.source}: ${what} → ${status}`,
    leak ? `the answer repeats a secret or signature: ${res.text}` : `${res.status} ${res.text}`);
  expectNotStored(req.source, id);
}

// sdkCheck records that an SDK's own verifier accepts what the same SDK signed.
function sdkCheck(what, fn) {
  let ok = false;
  let err;
  try {
    ok = fn() !== false;
  } catch (e) {
    err = e.message;
  }
  check(ok, `${what} (the SDK's own verifier accepts its signature)`, err);
}

// sdkAccepts records that a provider's own verifier (which may be async) accepts what was
// signed by hand per its docs.
async function sdkAccepts(what, fn) {
  let ok = false;
  let err;
  try {
    ok = (await fn()) !== false;
  } catch (e) {
    err = e.message;
  }
  check(ok, `${what} (the provider's own verifier accepts it)`, err);
}

function rid(prefix, n = 12) {
  return prefix + crypto.randomBytes(n).toString("hex").slice(0, n * 2);
}

// ---------------------------------------------------------------------------------------
// Stripe: stripe.webhooks.generateTestHeaderString

function stripeEvent(id, type, created, object) {
  // Stripe sends its events pretty-printed: the bytes must be verified and stored as sent.
  return JSON.stringify({
    id,
    object: "event",
    api_version: "2025-09-30.clover",
    created,
    data: { object },
    livemode: false,
    pending_webhooks: 1,
    request: { id: rid("req_"), idempotency_key: crypto.randomUUID() },
    type,
  }, null, 2);
}

function paymentIntent(amount) {
  return {
    id: rid("pi_3"),
    object: "payment_intent",
    amount,
    currency: "eur",
    customer: "cus_" + run,
    description: "Grüße aus Köln — 2 × Kaffee",
    status: "succeeded",
  };
}

function stripeHeader(payload, secret, timestamp) {
  return stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp });
}

function stripeReq(body, header) {
  return {
    source: "stripe",
    body,
    contentType: "application/json; charset=utf-8",
    headers: header ? { "Stripe-Signature": header, "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)" } : {},
    secretHeaders: ["stripe-signature"],
  };
}

async function testStripe() {
  const t = nowS();
  const pi = paymentIntent(1999);
  const id = `evt_${run}ok`;
  const body = stripeEvent(id, "payment_intent.succeeded", t - 2, pi);
  const header = stripeHeader(body, S.stripe, t);
  sdkCheck("stripe: constructEvent", () => stripe.webhooks.constructEvent(body, header, S.stripe));
  await accept("payment_intent.succeeded signed by generateTestHeaderString", stripeReq(body, header),
    { id, type: "payment_intent.succeeded", subject: pi.id, time: (t - 2) * 1000, provider: "stripe", keyIndex: 0, keyId: "current", signedTime: t * 1000 });
  await duplicate("the same event redelivered (new signature)", stripeReq(body, stripeHeader(body, S.stripe, nowS())), id);

  const idOld = `evt_${run}rotated`;
  const bodyOld = stripeEvent(idOld, "invoice.paid", t, { id: rid("in_"), object: "invoice", amount_paid: 500 });
  await accept("invoice.paid signed with the previous secret (rotation)", stripeReq(bodyOld, stripeHeader(bodyOld, S.stripeOld, t)),
    { id: idOld, type: "invoice.paid", provider: "stripe", keyIndex: 1, keyId: "previous" });

  // During a secret roll Stripe sends one v1 per secret: t=..,v1=..,v1=..
  const idRoll = `evt_${run}roll`;
  const bodyRoll = stripeEvent(idRoll, "customer.created", t, { id: "cus_" + run, object: "customer" });
  const other = stripeHeader(bodyRoll, WRONG.stripe, t);
  const mine = stripeHeader(bodyRoll, S.stripe, t);
  await accept("two v1 signatures, the second matching", stripeReq(bodyRoll, `${other},${mine.split(",")[1]}`),
    { id: idRoll, type: "customer.created", provider: "stripe", keyIndex: 0 });

  const stale = stripeEvent(`evt_${run}stale`, "payment_intent.succeeded", t - STALE, paymentIntent(1));
  await reject("stale (t 10 min old)", stripeReq(stale, stripeHeader(stale, S.stripe, t - STALE)), `evt_${run}stale`);
  const future = stripeEvent(`evt_${run}future`, "payment_intent.succeeded", t, paymentIntent(1));
  await reject("future (t 10 min ahead)", stripeReq(future, stripeHeader(future, S.stripe, t + STALE)), `evt_${run}future`);
  const orig = stripeEvent(`evt_${run}tampered`, "payment_intent.succeeded", t, paymentIntent(100));
  await reject("tampered (amount changed after signing)",
    stripeReq(orig.replace('"amount": 100', '"amount": 999999'), stripeHeader(orig, S.stripe, t)), `evt_${run}tampered`);
  const unsigned = stripeEvent(`evt_${run}unsigned`, "payment_intent.succeeded", t, paymentIntent(1));
  await reject("unsigned (no Stripe-Signature)", stripeReq(unsigned, null), `evt_${run}unsigned`);
  const wrong = stripeEvent(`evt_${run}wrong`, "payment_intent.succeeded", t, paymentIntent(1));
  await reject("signed with another whsec_ secret", stripeReq(wrong, stripeHeader(wrong, WRONG.stripe, t)), `evt_${run}wrong`);
  const text = stripeEvent(`evt_${run}text`, "payment_intent.succeeded", t, paymentIntent(1));
  await reject("valid signature but Content-Type text/plain", { ...stripeReq(text, stripeHeader(text, S.stripe, t)), contentType: "text/plain" },
    `evt_${run}text`, 415);
}

// ---------------------------------------------------------------------------------------
// GitHub: @octokit/webhooks-methods sign

function githubPush() {
  const after = crypto.randomBytes(20).toString("hex");
  return JSON.stringify({
    ref: "refs/heads/main",
    before: crypto.randomBytes(20).toString("hex"),
    after,
    repository: { id: 1296269, node_id: "MDEwOlJlcG9zaXRvcnkxMjk2MjY5", name: "Hello-World", full_name: "octocat/Hello-World", private: false },
    pusher: { name: "octocat", email: "octocat@github.com" },
    sender: { login: "octocat", id: 1, type: "User" },
    created: false,
    deleted: false,
    forced: false,
    compare: `https://github.com/octocat/Hello-World/compare/abc...${after.slice(0, 12)}`,
    commits: [{ id: after, message: "Fix the “smart quotes” — and ümlauts", timestamp: new Date().toISOString(), author: { name: "Mona Lisa", email: "mona@github.com" } }],
    head_commit: { id: after, message: "Fix the “smart quotes” — and ümlauts" },
  });
}

async function githubReq(event, body, secret, { form = false, delivery = crypto.randomUUID() } = {}) {
  const payload = form ? "payload=" + encodeURIComponent(body) : body;
  const headers = {
    "User-Agent": "GitHub-Hookshot/7e1d3c5",
    "X-GitHub-Event": event,
    "X-GitHub-Delivery": delivery,
    "X-GitHub-Hook-ID": "292430182",
    "X-GitHub-Hook-Installation-Target-ID": "79929171",
    "X-GitHub-Hook-Installation-Target-Type": "repository",
  };
  if (secret) {
    headers["X-Hub-Signature-256"] = await octokitSign(secret, payload);
    // GitHub also sends the legacy SHA-1 signature; the relay reads only the SHA-256 one.
    headers["X-Hub-Signature"] = "sha1=" + crypto.createHmac("sha1", secret).update(payload).digest("hex");
  }
  return {
    source: form ? "github-form" : "github", // a source reads one body format (body_format)
    body: payload,
    contentType: form ? "application/x-www-form-urlencoded" : "application/json",
    headers,
    delivery,
    secretHeaders: ["x-hub-signature-256", "x-hub-signature"],
  };
}

async function testGitHub() {
  const push = await githubReq("push", githubPush(), S.github);
  const sdkOK = await octokitVerify(S.github, push.body, push.headers["X-Hub-Signature-256"]);
  check(sdkOK, "github: @octokit/webhooks-methods verify (the SDK's own verifier accepts its signature)");
  await accept("push signed by @octokit/webhooks-methods sign", push,
    { id: push.delivery, type: "push", provider: "github", keyIndex: 0, keep: { "x-github-event": "push", "x-github-delivery": push.delivery } });
  await duplicate("the same delivery redelivered", push, push.delivery);

  const issue = JSON.stringify({
    action: "opened",
    issue: { number: 1347, title: "Found a bug", state: "open", user: { login: "octocat" } },
    repository: { full_name: "octocat/Hello-World" },
    sender: { login: "octocat" },
  });
  const issues = await githubReq("issues", issue, S.github);
  await accept("issues (action opened)", issues, { id: issues.delivery, type: "issues.opened", provider: "github" });

  const ping = await githubReq("ping", JSON.stringify({ zen: "Keep it logically awesome.", hook_id: 292430182 }), S.github, { form: true });
  await accept("ping in form mode (payload=...)", ping, { id: ping.delivery, type: "ping", provider: "github" });

  note("github: stale/future: GitHub signs no timestamp (a replayed delivery is deduplicated on X-GitHub-Delivery)");
  const tampered = await githubReq("push", githubPush(), S.github);
  tampered.body = tampered.body.replace('"refs/heads/main"', '"refs/heads/evil"');
  await reject("tampered (ref changed after signing)", tampered, tampered.delivery);
  const unsigned = await githubReq("push", githubPush(), null);
  await reject("unsigned (no X-Hub-Signature-256)", unsigned, unsigned.delivery);
  const wrong = await githubReq("push", githubPush(), WRONG.hmac);
  await reject("signed with another secret", wrong, wrong.delivery);
}

// ---------------------------------------------------------------------------------------
// Standard Webhooks and Svix: Webhook#sign(msgId, Date, payload)

function swReq(source, names, wh, { id, body, ts, sigs }) {
  const headers = { [names.id]: id, [names.ts]: String(Math.floor(ts.getTime() / 1000)) };
  const list = sigs ?? (wh ? [wh.sign(id, ts, body)] : []);
  if (list.length) headers[names.sig] = list.join(" ");
  return { source, body, contentType: "application/json", headers, secretHeaders: ["webhook-signature", "svix-signature"] };
}

async function testStandardFamily(source, Webhook, names, secret, oldSecret, type, data) {
  const wh = new Webhook(secret);
  const other = new Webhook(WRONG.standard);
  const when = new Date();
  const mk = (suffix) => ({ id: `msg_${run}${suffix}`, body: JSON.stringify({ type, timestamp: when.toISOString(), data }) });

  const ok = mk("ok");
  const req = swReq(source, names, wh, { ...ok, ts: when });
  sdkCheck(`${source}: Webhook#verify`, () => new Webhook(secret).verify(req.body, req.headers));
  await accept(`${type} signed by Webhook#sign`, req,
    { id: ok.id, type, time: Math.floor(when.getTime()), provider: source, keyIndex: 0, signedTime: Math.floor(when.getTime() / 1000) * 1000 });
  await duplicate("the same message redelivered", swReq(source, names, wh, { ...ok, ts: new Date() }), ok.id);

  if (oldSecret) {
    const rot = mk("rotated");
    await accept("signed with the previous secret (rotation)", swReq(source, names, new Webhook(oldSecret), { ...rot, ts: when }),
      { id: rot.id, type, provider: source, keyIndex: 1, keyId: "previous" });
  }
  const list = mk("list");
  await accept("a signature list, the second entry matching", swReq(source, names, null,
    { ...list, ts: when, sigs: [other.sign(list.id, when, list.body), wh.sign(list.id, when, list.body)] }),
  { id: list.id, type, provider: source, keyIndex: 0 });

  const stale = mk("stale");
  const staleTS = new Date(when.getTime() - STALE * 1000);
  await reject("stale (timestamp 10 min old)", swReq(source, names, wh, { ...stale, ts: staleTS }), stale.id);
  const future = mk("future");
  await reject("future (timestamp 10 min ahead)", swReq(source, names, wh, { ...future, ts: new Date(when.getTime() + STALE * 1000) }), future.id);
  const tampered = mk("tampered");
  const treq = swReq(source, names, wh, { ...tampered, ts: when });
  treq.body = treq.body.replace(`"type":"${type}"`, `"type":"${type}.forged"`);
  await reject("tampered (type changed after signing)", treq, tampered.id);
  const unsigned = mk("unsigned");
  await reject(`unsigned (no ${names.sig})`, swReq(source, names, null, { ...unsigned, ts: when, sigs: [] }), unsigned.id);
  const wrong = mk("wrong");
  await reject("signed with another whsec_ secret", swReq(source, names, other, { ...wrong, ts: when }), wrong.id);
}

async function testStandardWebhooks() {
  await testStandardFamily("standardwebhooks", StandardWebhook, { id: "webhook-id", ts: "webhook-timestamp", sig: "webhook-signature" },
    S.standard, null, "invoice.paid", { invoice_id: "inv_" + run, amount: 4200, currency: "USD" });
}

async function testSvix() {
  await testStandardFamily("svix", SvixWebhook, { id: "svix-id", ts: "svix-timestamp", sig: "svix-signature" },
    S.svix, S.svixOld, "user.created", { id: "user_" + run, email: "ada@example.com", name: "Ada Lovelace" });
}

// ---------------------------------------------------------------------------------------
// Twilio: getExpectedTwilioSignature (form: URL + sorted params; JSON: URL with bodySHA256)

function twilioForm(source, url, params, token, { query = "", idem = rid("idem-") } = {}) {
  const headers = { "I-Twilio-Idempotency-Token": idem, "User-Agent": "TwilioProxy/1.1" };
  if (token) headers["X-Twilio-Signature"] = twilioWebhooks.getExpectedTwilioSignature(token, url, params);
  return {
    source,
    body: new URLSearchParams(params).toString(),
    contentType: "application/x-www-form-urlencoded; charset=utf-8",
    headers,
    query,
    params,
    url,
    idem,
    secretHeaders: ["x-twilio-signature"],
  };
}

function smsParams() {
  const sid = rid("SM", 16);
  return {
    ToCountry: "US", ToState: "CA", SmsMessageSid: sid, NumMedia: "0", ToCity: "SAN FRANCISCO", FromZip: "94105",
    SmsSid: sid, FromState: "CA", SmsStatus: "received", FromCity: "SAN FRANCISCO",
    Body: "Hello from Twilio! 50% off & “quotes” + ümlauts ✓", FromCountry: "US", To: "+14155550100", ToZip: "94105",
    NumSegments: "1", MessageSid: sid, AccountSid: "AC" + "0".repeat(32), From: "+14155550199", ApiVersion: "2010-04-01",
  };
}

function conversationParams() {
  return {
    EventType: "onMessageAdded", AccountSid: "AC" + "0".repeat(32), ChatServiceSid: rid("IS", 16), ConversationSid: rid("CH", 16),
    MessageSid: rid("IM", 16), ParticipantSid: rid("MB", 16), Author: "ada@example.com", Body: "Hi there", Index: "7",
    Source: "SDK", DateCreated: new Date().toISOString(), RetryCount: "0",
  };
}

function twilioJSON(source, url, body, token, { query: existing = "" } = {}) {
  // Twilio appends bodySHA256 to the query of the URL it calls.
  const hash = twilioWebhooks.getExpectedBodyHash(body);
  const query = `${existing ? `${existing}&` : ""}bodySHA256=${hash}`;
  const headers = { "User-Agent": "TwilioProxy/1.1" };
  if (token) headers["X-Twilio-Signature"] = twilioWebhooks.getExpectedTwilioSignature(token, `${url}?${query}`, {});
  return { source, body, contentType: "application/json", headers, query, url: `${url}?${query}`, secretHeaders: ["x-twilio-signature"] };
}

function twilioEventStream(id) {
  return JSON.stringify({
    specversion: "1.0",
    type: "com.twilio.messaging.message.delivered",
    source: `/2010-04-01/Accounts/AC${"0".repeat(32)}/Messages/SM${run}.json`,
    id,
    dataschema: "https://events-schemas.twilio.com/Messaging.MessageStatus/5",
    datacontenttype: "application/json",
    time: new Date().toISOString(),
    data: { messageSid: `SM${run}`, messageStatus: "DELIVERED", to: "+14155550100", from: "+14155550199" },
  });
}

async function testTwilio() {
  const sms = twilioForm("twilio", twilioURL, smsParams(), S.twilio);
  sdkCheck("twilio: validateRequest", () => twilioWebhooks.validateRequest(S.twilio, sms.headers["X-Twilio-Signature"], sms.url, sms.params));
  await accept("incoming SMS (form) signed by getExpectedTwilioSignature", sms,
    { id: sms.idem, type: "", subject: sms.params.MessageSid, provider: "twilio", keyIndex: 0 });
  await duplicate("the same SMS redelivered (same idempotency token)", sms, sms.idem);

  const conv = twilioForm("twilio", twilioURL, conversationParams(), S.twilio);
  await accept("Conversations onMessageAdded (form)", conv,
    { id: conv.idem, type: "onMessageAdded", subject: conv.params.MessageSid, provider: "twilio" });

  const secondary = twilioForm("twilio", twilioURL, smsParams(), S.twilioSecondary);
  await accept("signed with the secondary auth token (rotation)", secondary,
    { id: secondary.idem, provider: "twilio", keyIndex: 1, keyId: "secondary" });

  const evID = rid("EZ", 16);
  const json = twilioJSON("twilio-json", twilioJSONURL, twilioEventStream(evID), S.twilio);
  sdkCheck("twilio: validateRequestWithBody", () =>
    twilioWebhooks.validateRequestWithBody(S.twilio, json.headers["X-Twilio-Signature"], json.url, json.body));
  await accept("JSON body, URL with bodySHA256", json, { id: evID, type: "com.twilio.messaging.message.delivered", provider: "twilio" });
  const evID2 = rid("EZ", 16);
  const json2 = twilioJSON("twilio-json", twilioJSONURL, twilioEventStream(evID2), S.twilio, { query: "tenant=acme&region=us1" });
  await accept("JSON body, URL with its own query and bodySHA256", json2, { id: evID2, type: "com.twilio.messaging.message.delivered", provider: "twilio" });

  // Behind a proxy: the source's url is the public https URL; Twilio signs it with its query,
  // with or without the default port, depending on how the URL was entered in the console.
  for (const [what, signed] of [["public https URL with :443 and a query", twilioProxiedURL.replace(/^(https:\/\/[^/]+)/, "$1:443")],
    ["public https URL without port and a query", twilioProxiedURL]]) {
    const p = smsParams();
    const r = twilioForm("twilio-proxied", `${signed}?tenant=acme`, p, S.twilio, { query: "tenant=acme" });
    await accept(what, r, { id: r.idem, subject: p.MessageSid, provider: "twilio" });
  }

  note("twilio: stale/future: Twilio signs no timestamp (redeliveries are deduplicated on I-Twilio-Idempotency-Token)");
  const tampered = twilioForm("twilio", twilioURL, smsParams(), S.twilio);
  tampered.body = new URLSearchParams({ ...tampered.params, Body: "Send me your password" }).toString();
  await reject("tampered form (Body changed after signing)", tampered, tampered.idem);
  const tj = twilioJSON("twilio-json", twilioJSONURL, twilioEventStream(`EZ${run}tampered`), S.twilio);
  tj.body = tj.body.replace("DELIVERED", "FAILED");
  await reject("tampered JSON (body no longer matches bodySHA256)", tj, `EZ${run}tampered`);
  const wrongURL = twilioForm("twilio", twilioURL.replace("/twilio", "/other"), smsParams(), S.twilio);
  await reject("signed for another URL", wrongURL, wrongURL.idem);
  const unsigned = twilioForm("twilio", twilioURL, smsParams(), null);
  await reject("unsigned (no X-Twilio-Signature)", unsigned, unsigned.idem);
  const wrong = twilioForm("twilio", twilioURL, smsParams(), WRONG.twilio);
  await reject("signed with another auth token", wrong, wrong.idem);
}

// ---------------------------------------------------------------------------------------
// Shopify, by hand per https://shopify.dev/docs/apps/build/webhooks/subscribe/https:
// base64 HMAC-SHA256 of the raw body with the app's client secret, in X-Shopify-Hmac-Sha256.

function shopifyReq(secret, { topic = "orders/create", amount = "199.00" } = {}) {
  const orderID = 820982911946154500 + Math.floor(Math.random() * 1000);
  const body = JSON.stringify({
    id: orderID,
    admin_graphql_api_id: `gid://shopify/Order/${orderID}`,
    email: "jon@example.com",
    created_at: new Date().toISOString(),
    currency: "EUR",
    total_price: amount,
    line_items: [{ id: 866550311766439000, title: "Crème brûlée", quantity: 2, price: "99.50" }],
  });
  const webhookID = crypto.randomUUID();
  const triggeredAt = new Date(Date.now() - 1500).toISOString();
  const headers = {
    "X-Shopify-Topic": topic,
    "X-Shopify-Shop-Domain": "interop-test.myshopify.com",
    "X-Shopify-API-Version": "2025-10",
    "X-Shopify-Webhook-Id": webhookID,
    "X-Shopify-Event-Id": crypto.randomUUID(),
    "X-Shopify-Triggered-At": triggeredAt,
    "User-Agent": "Shopify-Captain-Hook",
  };
  if (secret) headers["X-Shopify-Hmac-Sha256"] = crypto.createHmac("sha256", secret).update(body, "utf8").digest("base64");
  return { source: "shopify", body, contentType: "application/json", headers, webhookID, orderID, triggeredAt, secretHeaders: ["x-shopify-hmac-sha256"] };
}

async function testShopify() {
  const order = shopifyReq(S.shopify);
  const shopify = shopifyApi({
    apiKey: "interop", apiSecretKey: S.shopify, scopes: [], hostName: "localhost", isEmbeddedApp: false,
    apiVersion: Object.values(ShopifyApiVersion).filter((v) => /^\d/.test(v)).sort().at(-1), logger: { level: 0 },
  });
  const headersLower = Object.fromEntries(Object.entries(order.headers).map(([k, v]) => [k.toLowerCase(), v]));
  await sdkAccepts("shopify: @shopify/shopify-api webhooks.validate", async () => {
    const r = await shopify.webhooks.validate({ rawBody: order.body, rawRequest: { method: "POST", url: "/", headers: headersLower }, rawResponse: {} });
    if (!r.valid) throw new Error(r.reason);
  });
  await accept("orders/create signed per Shopify's docs", order, {
    id: order.webhookID, type: "orders/create", subject: `gid://shopify/Order/${order.orderID}`, time: Date.parse(order.triggeredAt),
    provider: "shopify", keyIndex: 0, keep: { "x-shopify-topic": "orders/create", "x-shopify-shop-domain": "interop-test.myshopify.com" },
  });
  await duplicate("the same webhook redelivered", order, order.webhookID);
  note("shopify: stale/future: Shopify signs no timestamp (redeliveries are deduplicated on X-Shopify-Webhook-Id)");
  const tampered = shopifyReq(S.shopify);
  tampered.body = tampered.body.replace('"total_price":"199.00"', '"total_price":"0.01"');
  await reject("tampered (total_price changed after signing)", tampered, tampered.webhookID);
  const unsigned = shopifyReq(null);
  await reject("unsigned (no X-Shopify-Hmac-Sha256)", unsigned, unsigned.webhookID);
  const wrong = shopifyReq(WRONG.hmac);
  await reject("signed with another secret", wrong, wrong.webhookID);
}

// ---------------------------------------------------------------------------------------
// Slack, by hand per https://api.slack.com/authentication/verifying-requests-from-slack:
// X-Slack-Signature = "v0=" + hex HMAC-SHA256 of "v0:{X-Slack-Request-Timestamp}:{raw body}".

function slackReq(body, secret, { ts = nowS(), form = false } = {}) {
  const headers = { "X-Slack-Request-Timestamp": String(ts), "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)" };
  if (secret) headers["X-Slack-Signature"] = "v0=" + crypto.createHmac("sha256", secret).update(`v0:${ts}:${body}`).digest("hex");
  // Events API (json) and slash commands / interactivity (form) go to sources of their format.
  return { source: form ? "slack-form" : "slack", body, contentType: form ? "application/x-www-form-urlencoded" : "application/json", headers, secretHeaders: ["x-slack-signature"] };
}

function slackEvent(eventID, text = "<@U0LAN0Z89> is it everything a river should be?") {
  const t = nowS();
  return JSON.stringify({
    token: "Jhj5dZrVaK7ZwHHjRyZWjbDl",
    team_id: "T061EG9R6",
    api_app_id: "A0PNCHHK2",
    event: { type: "app_mention", user: "U061F7AUR", text, ts: `${t}.000200`, channel: "C0LAN2Q65", event_ts: `${t}.000200` },
    type: "event_callback",
    event_id: eventID,
    event_time: t,
    authorizations: [{ team_id: "T061EG9R6", user_id: "U0LAN0Z89", is_bot: true }],
  });
}

async function testSlack() {
  // The Events API handshake: answered with the challenge, never stored.
  const challenge = crypto.randomBytes(30).toString("base64url");
  const verification = JSON.stringify({ token: "Jhj5dZrVaK7ZwHHjRyZWjbDl", challenge, type: "url_verification" });
  const res = await deliver(slackReq(verification, S.slack));
  check(res.status === 200 && res.json?.challenge === challenge && res.contentType.startsWith("application/json"),
    "slack: url_verification → 200 with its challenge", `${res.status} ${res.contentType} ${res.text}`);
  await reject("url_verification unsigned", slackReq(JSON.stringify({ token: "x", challenge: "forged", type: "url_verification" }), null), null);

  const id = `Ev${run.toUpperCase()}OK`;
  const t = nowS();
  const ev = slackReq(slackEvent(id), S.slack, { ts: t });
  await accept("event_callback app_mention signed per Slack's docs", ev,
    { id, type: "app_mention", provider: "slack", keyIndex: 0, signedTime: t * 1000 });
  await duplicate("the same event retried", slackReq(slackEvent(id), S.slack), id);

  const trigger = `${Date.now()}.47445629121.${crypto.randomBytes(16).toString("hex")}`;
  const slash = new URLSearchParams({
    token: "gIkuvaNzQIHg97ATvDxqgjtO", team_id: "T0001", team_domain: "example", channel_id: "C2147483705", channel_name: "test",
    user_id: "U2147483697", user_name: "Steve", command: "/weather", text: "94070", api_app_id: "A123456",
    response_url: "https://hooks.slack.com/commands/1234/5678", trigger_id: trigger,
  }).toString();
  await accept("slash command (form)", slackReq(slash, S.slack, { form: true }),
    { id: trigger, type: "slash_command", subject: "/weather", provider: "slack" });

  // Interactivity: a form body whose payload field is JSON.
  const actionTrigger = `${Date.now()}.47445629121.${crypto.randomBytes(16).toString("hex")}`;
  const interaction = "payload=" + encodeURIComponent(JSON.stringify({
    type: "block_actions", trigger_id: actionTrigger, user: { id: "U2147483697", username: "steve" },
    team: { id: "T0001", domain: "example" }, actions: [{ action_id: "approve", block_id: "b1", type: "button", value: "yes" }],
  }));
  await accept("interactivity block_actions (form, payload=JSON)", slackReq(interaction, S.slack, { form: true }),
    { id: actionTrigger, type: "block_actions", provider: "slack" });

  const stale = `Ev${run.toUpperCase()}STALE`;
  await reject("stale (timestamp 10 min old)", slackReq(slackEvent(stale), S.slack, { ts: nowS() - STALE }), stale);
  const future = `Ev${run.toUpperCase()}FUTURE`;
  await reject("future (timestamp 10 min ahead)", slackReq(slackEvent(future), S.slack, { ts: nowS() + STALE }), future);
  const tamperedID = `Ev${run.toUpperCase()}TAMPERED`;
  const tampered = slackReq(slackEvent(tamperedID), S.slack);
  tampered.body = tampered.body.replace("is it everything", "is it nothing");
  await reject("tampered (text changed after signing)", tampered, tamperedID);
  const unsigned = `Ev${run.toUpperCase()}UNSIGNED`;
  await reject("unsigned (no X-Slack-Signature)", slackReq(slackEvent(unsigned), null), unsigned);
  const wrong = `Ev${run.toUpperCase()}WRONG`;
  await reject("signed with another signing secret", slackReq(slackEvent(wrong), WRONG.hmac), wrong);
}

// ---------------------------------------------------------------------------------------
// Linear, by hand per https://linear.app/developers/webhooks#securing-webhooks (hex
// HMAC-SHA256 of the raw body in Linear-Signature; webhookTimestamp in the body, ms),
// checked with @linear/sdk's LinearWebhookClient#verify.

function linearReq(secret, { ts = Date.now(), delivery = crypto.randomUUID() } = {}) {
  const issue = rid("iss-");
  const body = JSON.stringify({
    action: "create", type: "Issue", createdAt: new Date(ts).toISOString(), organizationId: "org-1",
    data: { id: issue, title: "Crème brûlée is out", priority: 2 }, url: `https://linear.app/acme/issue/${issue}`,
    webhookTimestamp: ts, webhookId: "wh-interop",
  });
  const headers = { "Linear-Delivery": delivery, "Linear-Event": "Issue", "User-Agent": "Linear-Webhook" };
  if (secret) headers["Linear-Signature"] = crypto.createHmac("sha256", secret).update(body).digest("hex");
  return { source: "linear", body, contentType: "application/json; charset=utf-8", headers, delivery, issue, ts, secretHeaders: ["linear-signature"] };
}

async function testLinear() {
  const ev = linearReq(S.linear);
  await sdkAccepts("linear: @linear/sdk LinearWebhookClient#verify", () =>
    new LinearWebhookClient(S.linear).verify(Buffer.from(ev.body), ev.headers["Linear-Signature"]));
  await accept("Issue create signed per Linear's docs", ev,
    { id: ev.delivery, type: "Issue.create", subject: ev.issue, provider: "linear", keyIndex: 0, signedTime: ev.ts });
  await duplicate("the same delivery retried", ev, ev.delivery);
  const stale = linearReq(S.linear, { ts: Date.now() - STALE * 1000 });
  await reject("stale (webhookTimestamp 10 min old)", stale, stale.delivery);
  const tampered = linearReq(S.linear);
  tampered.body = tampered.body.replace("Crème brûlée is out", "All is well");
  await reject("tampered (title changed after signing)", tampered, tampered.delivery);
  const unsigned = linearReq(null);
  await reject("unsigned (no Linear-Signature)", unsigned, unsigned.delivery);
  const wrong = linearReq(WRONG.hmac);
  await reject("signed with another secret", wrong, wrong.delivery);
}

// ---------------------------------------------------------------------------------------
// HubSpot: @hubspot/api-client's Signature.getSignature (v3: base64 HMAC-SHA256 of method +
// URL + body + timestamp in ms), checked with Signature.isValid.

function hubspotReq(secret, { ts = Date.now(), query = "" } = {}) {
  const eventId = Math.floor(Math.random() * 1e9);
  const objectId = 512 + Math.floor(Math.random() * 1000);
  const body = JSON.stringify({ eventId, subscriptionId: 2417, portalId: 62515, appId: 1160452, occurredAt: ts,
    subscriptionType: "contact.creation", attemptNumber: 0, objectId, changeFlag: "CREATED", changeSource: "CRM" });
  const url = hubspotURL + (query ? `?${query}` : "");
  const headers = { "X-HubSpot-Request-Timestamp": String(ts) };
  if (secret) {
    headers["X-HubSpot-Signature-v3"] = HubSpotSignature.getSignature("POST", "v3",
      { clientSecret: secret, requestBody: body, url, timestamp: ts });
  }
  return { source: "hubspot", body, contentType: "application/json", headers, query, url, ts, eventId: String(eventId), objectId: String(objectId), secretHeaders: ["x-hubspot-signature-v3"] };
}

async function testHubSpot() {
  const ev = hubspotReq(S.hubspot, { query: "portalId=62515" });
  sdkCheck("hubspot: @hubspot/api-client Signature.isValid", () => HubSpotSignature.isValid({
    signatureVersion: "v3", method: "POST", signature: ev.headers["X-HubSpot-Signature-v3"], clientSecret: S.hubspot,
    requestBody: ev.body, url: ev.url, timestamp: ev.ts,
  }));
  await accept("contact.creation signed with the SDK (v3, with a query)", ev,
    { id: ev.eventId, type: "contact.creation", subject: ev.objectId, time: ev.ts, provider: "hubspot", keyIndex: 0 });
  await duplicate("the same event retried", ev, ev.eventId);
  const stale = hubspotReq(S.hubspot, { ts: Date.now() - STALE * 1000 });
  await reject("stale (timestamp 10 min old)", stale, stale.eventId);
  const tampered = hubspotReq(S.hubspot);
  tampered.body = tampered.body.replace('"CREATED"', '"DELETED"');
  await reject("tampered (changeFlag changed after signing)", tampered, tampered.eventId);
  const unsigned = hubspotReq(null);
  await reject("unsigned (no X-HubSpot-Signature-v3)", unsigned, unsigned.eventId);
  const wrong = hubspotReq(crypto.randomUUID());
  await reject("signed with another client secret", wrong, wrong.eventId);
}

// ---------------------------------------------------------------------------------------
// GitLab with a signing token: Standard Webhooks headers, signed with the standardwebhooks
// SDK (webhook-id doubles as Idempotency-Key).

function gitlabReq(secret, { date = new Date() } = {}) {
  const id = rid("msg_gl_");
  const body = JSON.stringify({ object_kind: "push", event_name: "push", ref: "refs/heads/main",
    checkout_sha: crypto.randomBytes(20).toString("hex"), project: { id: 15, path_with_namespace: "acme/relay" } });
  const headers = { "X-Gitlab-Event": "Push Hook", "Idempotency-Key": id, "webhook-id": id,
    "webhook-timestamp": String(Math.floor(date.getTime() / 1000)) };
  if (secret) headers["webhook-signature"] = new StandardWebhook(secret).sign(id, date, body);
  return { source: "gitlab", body, contentType: "application/json", headers, id, secretHeaders: ["webhook-signature"] };
}

async function testGitLab() {
  const ev = gitlabReq(S.gitlab);
  sdkCheck("gitlab: standardwebhooks Webhook#verify", () => new StandardWebhook(S.gitlab).verify(ev.body, ev.headers));
  await accept("push signed with a signing token (standardwebhooks SDK)", ev,
    { id: ev.id, type: "Push Hook", provider: "gitlab", keyIndex: 0 });
  await duplicate("the same delivery retried", ev, ev.id);
  const stale = gitlabReq(S.gitlab, { date: new Date(Date.now() - STALE * 1000) });
  await reject("stale (timestamp 10 min old)", stale, stale.id);
  const tampered = gitlabReq(S.gitlab);
  tampered.body = tampered.body.replace("refs/heads/main", "refs/heads/evil");
  await reject("tampered (ref changed after signing)", tampered, tampered.id);
  const unsigned = gitlabReq(null);
  await reject("unsigned (no webhook-signature, no X-Gitlab-Token)", unsigned, unsigned.id);
  const wrong = gitlabReq(WRONG.standard);
  await reject("signed with another signing token", wrong, wrong.id);
}

// ---------------------------------------------------------------------------------------
// What the relay stored, through its HTTP API.

async function listAll(source) {
  const events = [];
  let token = "";
  do {
    const q = new URLSearchParams({ page_size: "1000" });
    if (token) q.set("page_token", token);
    const res = await http("GET", `/v1/sources/${source}/events?${q}`);
    if (res.status !== 200) throw new Error(`ListEvents ${source}: ${res.status} ${res.text}`);
    for (const d of res.json.deliveries || []) events.push(d.event);
    token = res.json.next_page_token || "";
  } while (token);
  return events;
}

function sameTime(got, wantMs) {
  return got && Date.parse(got) === wantMs;
}

async function checkStored(source) {
  const want = stored.get(source) || new Map();
  for (const [id, exp] of want) {
    const res = await http("GET", `/v1/sources/${source}/events/${encodeURIComponent(id)}`);
    const ev = res.json?.event;
    if (!check(res.status === 200 && ev?.id === id, `${source}: GetEvent ${id} → 200`, `${res.status} ${res.text}`)) continue;
    const problems = [];
    const eq = (what, got, wantV) => { if (got !== wantV) problems.push(`${what} ${JSON.stringify(got)}, want ${JSON.stringify(wantV)}`); };
    eq("source", ev.source, source);
    if (exp.type !== undefined) eq("type", ev.type, exp.type);
    if (exp.subject !== undefined) eq("subject", ev.subject, exp.subject);
    if (exp.time !== undefined && !sameTime(ev.time, exp.time)) problems.push(`time ${ev.time}, want ${new Date(exp.time).toISOString()}`);
    eq("data_content_type", ev.data_content_type, exp.contentType);
    if (Buffer.from(ev.data || "", "base64").toString("utf8") !== exp.body) problems.push("data differs from the bytes sent");
    eq("verification.provider", ev.verification?.provider, exp.provider);
    if (exp.keyIndex !== undefined) eq("verification.key_index", ev.verification?.key_index, exp.keyIndex);
    if (exp.keyId !== undefined) eq("verification.key_id", ev.verification?.key_id, exp.keyId);
    if (exp.signedTime !== undefined && !sameTime(ev.verification?.signed_time, exp.signedTime)) {
      problems.push(`verification.signed_time ${ev.verification?.signed_time}, want ${new Date(exp.signedTime).toISOString()}`);
    }
    for (const [h, v] of Object.entries(exp.keep || {})) eq(`headers[${h}]`, ev.headers?.[h], v);
    for (const h of exp.secretHeaders) if (ev.headers && h in ev.headers) problems.push(`signature header ${h} was kept`);
    const shown = [`type ${JSON.stringify(ev.type)}`];
    if (ev.subject) shown.push(`subject ${JSON.stringify(ev.subject)}`);
    if (exp.keyIndex !== undefined) shown.push(`key ${ev.verification?.key_index}${ev.verification?.key_id ? ` (${ev.verification.key_id})` : ""}`);
    check(problems.length === 0, `${source}: stored ${id}: ${shown.join(", ")}, body byte for byte`, problems.join("; "));
  }
  for (const id of notStored.get(source) || []) {
    const res = await http("GET", `/v1/sources/${source}/events/${encodeURIComponent(id)}`);
    check(res.status === 404, `${source}: rejected ${id} not stored (GetEvent → 404)`, `${res.status} ${res.text}`);
  }
}

// ---------------------------------------------------------------------------------------

const SOURCES = ["stripe", "github", "github-form", "standardwebhooks", "svix", "twilio", "twilio-json", "twilio-proxied", "shopify", "slack",
  "slack-form", "linear", "hubspot", "gitlab"];

async function main() {
  const versions = ["stripe", "@octokit/webhooks-methods", "standardwebhooks", "svix", "twilio", "@hubspot/api-client",
    "@linear/sdk", "@shopify/shopify-api"].map((p) => {
    const pkg = JSON.parse(readFileSync(new URL(`node_modules/${p}/package.json`, import.meta.url), "utf8"));
    return `${p} ${pkg.version}`;
  });
  console.log(`relayd at ${base}; signing with ${versions.join(", ")}`);
  const before = {};
  for (const s of SOURCES) before[s] = (await listAll(s)).length;

  for (const [name, fn] of [["stripe", testStripe], ["github", testGitHub], ["standardwebhooks", testStandardWebhooks],
    ["svix", testSvix], ["twilio", testTwilio], ["shopify", testShopify], ["slack", testSlack], ["linear", testLinear],
    ["hubspot", testHubSpot], ["gitlab", testGitLab]]) {
    console.log(`# ${name}`);
    try {
      await fn();
    } catch (e) {
      check(false, `${name}: test threw`, e.stack);
    }
  }

  console.log("# stored events (HTTP API)");
  for (const s of SOURCES) {
    await checkStored(s);
    const after = (await listAll(s)).length;
    const want = before[s] + (stored.get(s)?.size || 0);
    check(after === want, `${s}: ListEvents holds ${after} events, want ${want} (the accepted ones only)`);
  }

  console.log(`\n${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
