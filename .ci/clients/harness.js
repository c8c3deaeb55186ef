// The world a client SDK meets: the real sigil binary on SQLite, a real SMTP
// sink (npm smtp-server) that keeps every mail, an SMS API that keeps every
// text, and a small homeserver over TLS answering what Sigil asks of one
// (OpenID userinfo, its signing keys, onbind). The homeserver also plays
// the homeserver's own legs of Element's flows (bind, unbind, store-invite),
// which no client SDK sends itself: Element asks its homeserver, and the
// homeserver (Synapse) calls the identity server, as done here.
import { spawn, execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { SMTPServer } from "smtp-server";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

// freePort asks the kernel for a free loopback port.
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port ?? 0, "127.0.0.1", () => resolve(server.address().port));
  });
}

// canonicalJSON is Matrix's canonical JSON for the plain values signed here
// (sorted keys, no spaces; JSON.stringify already escapes as required).
export function canonicalJSON(v) {
  if (Array.isArray(v)) return "[" + v.map(canonicalJSON).join(",") + "]";
  if (v !== null && typeof v === "object") {
    return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canonicalJSON(v[k])).join(",") + "}";
  }
  return JSON.stringify(v);
}

// verifySigned checks obj's ed25519 signature by server (key ID keyID) with
// an unpadded-base64 public key, as a homeserver checks what Sigil signed.
export function verifySigned(obj, server, keyID, publicKey) {
  const { signatures, unsigned, ...rest } = obj;
  const sig = signatures?.[server]?.[keyID];
  if (!sig) return false;
  const raw = Buffer.from(publicKey.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  // A raw ed25519 key becomes SPKI by this fixed 12-byte prefix.
  const key = crypto.createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), raw]), format: "der", type: "spki" });
  return crypto.verify(null, Buffer.from(canonicalJSON(rest)), key, Buffer.from(sig.replace(/-/g, "+").replace(/_/g, "/"), "base64"));
}

const unpadded = (buf) => Buffer.from(buf).toString("base64").replace(/=+$/, "");

// Waiter collects things (mails, texts, onbinds) and lets a test wait for
// the first one matching a predicate.
class Waiter {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.waiting = [];
  }
  push(item) {
    this.items.push(item);
    for (const w of [...this.waiting]) {
      if (w.match(item)) {
        this.waiting.splice(this.waiting.indexOf(w), 1);
        w.resolve(item);
      }
    }
  }
  wait(match, timeoutMs = 10000) {
    const found = this.items.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = { match, resolve };
      this.waiting.push(w);
      setTimeout(() => {
        const i = this.waiting.indexOf(w);
        if (i >= 0) {
          this.waiting.splice(i, 1);
          reject(new Error(`no ${this.name} after ${timeoutMs} ms (have ${this.items.length})`));
        }
      }, timeoutMs).unref();
    });
  }
}

// decodeQP undoes quoted-printable (soft breaks and =XX), enough to read a
// link out of a mail.
function decodeQP(s) {
  return s.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
}

// submitLink is the validation link in a mail's text (what the user clicks).
export function submitLink(text) {
  const m = text.match(/https?:\/\/\S*\/validate\/email\/submitToken\?[^\s"<>]+/);
  if (!m) throw new Error(`no submitToken link in the mail:\n${text}`);
  return m[0].replace(/&amp;/g, "&");
}

// sigilBinary builds ./cmd/sigil once unless SIGIL_BIN names one.
function sigilBinary(dir) {
  if (process.env.SIGIL_BIN) return process.env.SIGIL_BIN;
  const bin = path.join(dir, "sigil");
  execFileSync("go", ["build", "-o", bin, "./cmd/sigil"], { cwd: repo, stdio: "inherit" });
  return bin;
}

// A Homeserver over TLS (Sigil only calls homeservers over HTTPS) with a
// certificate made by openssl for 127.0.0.1, which Sigil trusts through
// federation.ca_file.
class Homeserver {
  constructor(dir) {
    this.dir = dir;
    this.tokens = new Map(); // OpenID token -> user ID
    this.onbinds = new Waiter("onbind");
    this.keyID = "ed25519:clients";
    const { publicKey, privateKey } = crypto.generateKeyPairSync("ed25519");
    this.privateKey = privateKey;
    // The raw key is the last 32 bytes of the SPKI encoding.
    this.publicKey = unpadded(publicKey.export({ format: "der", type: "spki" }).subarray(-32));
  }

  async start() {
    this.certFile = path.join(this.dir, "hs.crt");
    const keyFile = path.join(this.dir, "hs.key");
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
      "-keyout", keyFile, "-out", this.certFile, "-days", "2", "-subj", "/CN=127.0.0.1",
      "-addext", "subjectAltName=IP:127.0.0.1",
    ], { stdio: ["ignore", "ignore", "pipe"] });
    this.server = https.createServer(
      { key: fs.readFileSync(keyFile), cert: fs.readFileSync(this.certFile) },
      (req, res) => this.serve(req, res),
    );
    this.port = await listen(this.server);
    this.name = `127.0.0.1:${this.port}`;
  }

  // openIDToken is what a client gets from its homeserver's
  // /user/{userId}/openid/request_token, to hand to registerWithIdentityServer.
  openIDToken(localpart) {
    const token = crypto.randomBytes(16).toString("hex");
    this.tokens.set(token, `@${localpart}:${this.name}`);
    return { access_token: token, token_type: "Bearer", matrix_server_name: this.name, expires_in: 3600 };
  }

  sign(obj) {
    const { signatures, unsigned, ...rest } = obj;
    const sig = unpadded(crypto.sign(null, Buffer.from(canonicalJSON(rest)), this.privateKey));
    return { ...obj, signatures: { ...(signatures ?? {}), [this.name]: { [this.keyID]: sig } } };
  }

  // xMatrix signs a request to an identity server as Synapse does
  // (build_auth_headers with destination_is, no destination).
  xMatrix(method, uri, destinationIS, content) {
    const obj = { method, uri, origin: this.name, destination_is: destinationIS, content };
    const sig = unpadded(crypto.sign(null, Buffer.from(canonicalJSON(obj)), this.privateKey));
    return `X-Matrix origin="${this.name}",key="${this.keyID}",sig="${sig}"`;
  }

  serve(req, res) {
    const url = new URL(req.url, `https://${this.name}`);
    const send = (code, body) => {
      res.writeHead(code, { "Content-Type": "application/json" });
      res.end(JSON.stringify(body));
    };
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      switch (url.pathname) {
        case "/_matrix/federation/v1/openid/userinfo": {
          const sub = this.tokens.get(url.searchParams.get("access_token"));
          return sub ? send(200, { sub }) : send(401, { errcode: "M_UNKNOWN_TOKEN", error: "Invalid access token passed." });
        }
        case "/_matrix/key/v2/server":
          return send(200, this.sign({
            server_name: this.name,
            valid_until_ts: Date.now() + 3600_000,
            verify_keys: { [this.keyID]: { key: this.publicKey } },
            old_verify_keys: {},
          }));
        case "/_matrix/federation/v1/3pid/onbind":
          this.onbinds.push(JSON.parse(body));
          return send(200, {});
        default:
          return send(404, { errcode: "M_UNRECOGNIZED", error: "Unrecognized request" });
      }
    });
  }
}

// startWorld starts the sinks, the homeserver and sigil; stop() ends them.
export async function startWorld() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sigil-clients-"));
  const bin = sigilBinary(dir);

  const mails = new Waiter("mail");
  const smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onData(stream, session, cb) {
      let raw = "";
      stream.on("data", (c) => (raw += c));
      stream.on("end", () => {
        const text = decodeQP(raw);
        mails.push({ to: session.envelope.rcptTo.map((r) => r.address), raw, text });
        cb();
      });
    },
  });
  const smtpPort = await listen(smtp.server);

  // The SMS API: Sigil posts Twilio's form (To, From, Body) by default.
  const texts = new Waiter("SMS");
  const sms = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const f = new URLSearchParams(body);
      texts.push({ to: f.get("To"), body: f.get("Body") });
      res.writeHead(201, { "Content-Type": "application/json" });
      res.end("{}");
    });
  });
  const smsPort = await listen(sms);

  const hs = new Homeserver(dir);
  await hs.start();

  const port = await freePort();
  const name = `127.0.0.1:${port}`;
  const baseUrl = `http://${name}`;
  const config = path.join(dir, "sigil.yaml");
  fs.writeFileSync(config, `server_name: "${name}"
public_base_url: "${baseUrl}"
listen: "${name}"
database: "${path.join(dir, "sigil.db")}"
signing_key: "${path.join(dir, "signing.key")}"
smtp: {host: "127.0.0.1", port: ${smtpPort}, tls: none, from: "Sigil <noreply@localhost>"}
sms: {url: "http://127.0.0.1:${smsPort}/sms", from: "+15005550006"}
limits: {mail_every: 1ms, mail_burst: 1000}
federation: {allow_private_addresses: true, ca_file: "${hs.certFile}"}
terms:
  - id: privacy
    version: "1.0"
    languages:
      en: {name: Privacy policy, url: "${baseUrl}/terms/privacy-1.0-en.html"}
`);
  const logFile = path.join(dir, "sigil.log");
  const log = fs.openSync(logFile, "w");
  const proc = spawn(bin, ["-config", config], { stdio: ["ignore", log, log] });
  let exited = null;
  proc.on("exit", (code, sig) => (exited = code ?? sig));

  // Ready when /_matrix/identity/v2 answers (the port is bound).
  for (let i = 0; ; i++) {
    if (exited !== null) throw new Error(`sigil exited (${exited}):\n${fs.readFileSync(logFile, "utf8")}`);
    try {
      if ((await fetch(`${baseUrl}/_matrix/identity/v2`)).ok) break;
    } catch {}
    if (i > 200) throw new Error("sigil did not answer in 20 s");
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    baseUrl, name, hs, mails, texts, logFile,
    // mailTo waits for a mail to address (case aside: Sigil folds it).
    async mailTo(address) {
      const a = address.toLowerCase();
      return mails.wait((m) => m.to.some((t) => t.toLowerCase() === a));
    },
    // post sends JSON to Sigil as a homeserver (or a browser) would.
    async post(path, body, headers = {}) {
      const res = await fetch(baseUrl + path, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...headers },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: await res.json() };
    },
    // bindEmail makes address discoverable as mxid the way Element and its
    // homeserver do, in plain HTTP: requestToken, the mailed link, then the
    // homeserver's /3pid/bind with the user's identity-server token.
    async bindEmail(token, mxid, address) {
      const auth = { Authorization: `Bearer ${token}` };
      const secret = crypto.randomBytes(12).toString("hex");
      const req = await this.post("/_matrix/identity/v2/validate/email/requestToken", { email: address, client_secret: secret, send_attempt: 1 }, auth);
      if (req.status !== 200) throw new Error(`requestToken: ${req.status} ${JSON.stringify(req.body)}`);
      const mail = await mails.wait((m) => m.to.includes(address.toLowerCase()) && m.text.includes(req.body.sid));
      const res = await fetch(submitLink(mail.text));
      if (res.status !== 200) throw new Error(`submitToken link: ${res.status}`);
      const bind = await this.post("/_matrix/identity/v2/3pid/bind", { sid: req.body.sid, client_secret: secret, mxid }, auth);
      if (bind.status !== 200) throw new Error(`bind: ${bind.status} ${JSON.stringify(bind.body)}`);
      return bind.body;
    },
    async stop() {
      if (exited === null) {
        const done = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await done;
      }
      fs.closeSync(log);
      await new Promise((r) => smtp.close(r));
      sms.close();
      hs.server.close();
      if (process.env.CLIENTS_KEEP) console.log(`# kept ${dir}`);
      else fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// The table of calls, one row per test, that README.md shows: each test
// names itself "<call> — <route>"; route() builds the row's text.
export const row = (call, route) => `${call} — ${route}`;
