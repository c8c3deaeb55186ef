// matrix-bot-sdk's IdentityClient (bots and bridges: the SDK of
// matrix-appservice-*, and what a bot uses to invite by email) against the
// real sigil binary: acquire with an OpenID token, accept the terms, look
// addresses up (sha256 on the client), invite by email.
//
// 0.7.1 is the last release for Node 20 (0.8.0 wants Node 22). Its package
// index loads the E2EE engine @matrix-org/matrix-sdk-crypto-nodejs, whose
// native library is fetched from GitHub by a postinstall script, which CI
// cannot reach (npm ci --ignore-scripts). The identity client never touches
// E2EE, so that one module is replaced by an empty one before the SDK is
// loaded; everything IdentityClient runs is the package's own code.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, describe, it } from "node:test";
import { startWorld } from "./harness.js";

const require = createRequire(import.meta.url);
const fromBotSDK = createRequire(require.resolve("matrix-bot-sdk"));
const nativeCrypto = fromBotSDK.resolve("@matrix-org/matrix-sdk-crypto-nodejs");
require.cache[nativeCrypto] = { id: nativeCrypto, filename: nativeCrypto, loaded: true, exports: {} };
const { IdentityClient, LogService } = require("matrix-bot-sdk");
// The SDK logs every refused request at ERROR, and two are refused on
// purpose; the assertions carry the errcodes, so its log is muted.
const quiet = () => {};
LogService.setLogger({ trace: quiet, debug: quiet, info: quiet, warn: quiet, error: quiet });

const SDK = "matrix-bot-sdk 0.7.1";
const V2 = "/_matrix/identity/v2";
const name = (call, route) => `${SDK} · ${call} · ${route}`;

describe(SDK, () => {
  let w, idc, mxid;
  const room = "!botroom:example.org";
  const bound = "carol@example.org";
  const invitee = "dave.invited@example.org";
  let invite;

  // makeEmailInvite reads the room and the sender's profile from the bot's
  // homeserver through its MatrixClient; these are the answers a homeserver
  // gives for a room with a name and a canonical alias.
  const matrixClient = {
    getUserId: async () => mxid,
    getRoomStateEvent: async (roomId, type) => {
      assert.equal(roomId, room);
      const state = {
        "m.room.name": { name: "Bot room" },
        "m.room.canonical_alias": { alias: "#bots:example.org" },
        "m.room.join_rules": { join_rule: "invite" },
      };
      if (!state[type]) throw new Error("M_NOT_FOUND");
      return state[type];
    },
    getUserProfile: async () => ({ displayname: "Carol the bot" }),
  };

  before(async () => {
    w = await startWorld();
  });
  after(async () => {
    await w?.stop();
  });

  it(name("IdentityClient.acquire (OpenID token; reads the legacy \"token\" field)", `POST ${V2}/account/register`), async () => {
    const oidc = w.hs.openIDToken("carol");
    mxid = `@carol:${w.hs.name}`;
    idc = await IdentityClient.acquire(oidc, w.baseUrl, matrixClient);
    assert.ok(idc.accessToken, "an access token from the response's \"token\"");
  });

  it(name("getAccount before the terms (M_TERMS_NOT_SIGNED)", `GET ${V2}/account`), async () => {
    await assert.rejects(idc.getAccount(), (e) => {
      assert.equal(e.statusCode, 403);
      assert.equal(e.errcode, "M_TERMS_NOT_SIGNED");
      return true;
    });
  });

  it(name("getTermsOfService", `GET ${V2}/terms`), async () => {
    const terms = await idc.getTermsOfService();
    assert.equal(terms.policies.privacy.version, "1.0");
  });

  it(name("acceptAllTerms (the en URL of each policy)", `GET ${V2}/terms + POST ${V2}/terms`), async () => {
    await idc.acceptAllTerms();
  });

  it(name("getAccount", `GET ${V2}/account`), async () => {
    assert.deepEqual(await idc.getAccount(), { user_id: mxid });
  });

  it(name("lookup (sha256 on the client; one bound, one not)", `GET ${V2}/hash_details + POST ${V2}/lookup`), async () => {
    await w.bindEmail(idc.accessToken, mxid, bound);
    assert.deepEqual(
      await idc.lookup([{ kind: "email", address: "Carol@Example.org" }, { kind: "email", address: invitee }]),
      [mxid, undefined],
    );
  });

  it(name("makeEmailInvite", `POST ${V2}/store-invite`), async () => {
    invite = await idc.makeEmailInvite(invitee, room);
    assert.ok(invite.token);
    assert.ok(invite.display_name);
    assert.equal(invite.public_keys.length, 2);
    const mail = await w.mailTo(invitee);
    assert.match(mail.text, /Bot room/);
    assert.match(mail.text, /Carol the bot/);
  });

  it(name("the invite's key_validity_urls (what the invitee's homeserver checks)", `GET ${V2}/pubkey/isvalid + ${V2}/pubkey/ephemeral/isvalid`), async () => {
    for (const k of invite.public_keys) {
      const u = new URL(k.key_validity_url);
      u.searchParams.set("public_key", k.public_key);
      assert.deepEqual(await (await fetch(u)).json(), { valid: true });
    }
  });

  it(name("the access token after logout (no SDK method: plain POST) is refused", `POST ${V2}/account/logout`), async () => {
    const res = await w.post(`${V2}/account/logout`, {}, { Authorization: `Bearer ${idc.accessToken}` });
    assert.equal(res.status, 200);
    await assert.rejects(idc.getAccount(), (e) => e.statusCode === 401 && e.errcode === "M_UNAUTHORIZED");
  });
});
