// matrix-js-sdk (the SDK under Element Web and Desktop) against the real
// sigil binary, in the order Element calls it:
//   Settings > General > Discovery: connect to the identity server
//   (IdentityAuthClient: register with an OpenID token, check the token,
//   which asks for the terms on M_TERMS_NOT_SIGNED, accept them), share an
//   email (requestEmailToken, the user clicks the mailed link, the
//   homeserver binds), share a phone number (requestMsisdnToken, the user
//   types the code: submitMsisdnToken, the homeserver binds), revoke
//   (the homeserver unbinds), disconnect (logout);
//   the invite dialog: look an email up, and when nobody has it invite by
//   email (the homeserver stores the invite; the invitee's homeserver checks
//   the keys; when the invitee binds that email Sigil tells the homeserver).
// Calls the SDK has are made through it; calls Element makes through the
// homeserver (bind, unbind, store-invite) are made here as Synapse makes
// them (see harness.js), and marked "homeserver leg" in their names.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createClient, SERVICE_TYPES } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { startWorld, submitLink, verifySigned } from "./harness.js";

// The SDK logs every request at debug; keep the test output to the results.
logger.setLevel("warn");

const SDK = "matrix-js-sdk 37.5.0";
const V2 = "/_matrix/identity/v2";
const name = (call, route) => `${SDK} · ${call} · ${route}`;

describe(SDK, () => {
  let w, client, token, mxid;
  const email = "Alice.Discovery@Example.org";
  const emailSecret = "js-sdk-email-secret";
  let emailSid, emailLink, association;
  const phoneSecret = "js-sdk-phone-secret";
  const msisdn = "447400123456";
  let phoneSid;

  before(async () => {
    w = await startWorld();
    // Element's MatrixClient: homeserver and identity server base URLs.
    client = createClient({ baseUrl: `https://${w.hs.name}`, idBaseUrl: w.baseUrl });
  });
  after(async () => {
    client?.stopClient();
    await w?.stop();
  });

  // The homeserver's legs: the test plays the homeserver.
  const post = (...args) => w.post(...args);

  it(name("registerWithIdentityServer (OpenID token)", `POST ${V2}/account/register`), async () => {
    const res = await client.registerWithIdentityServer(w.hs.openIDToken("alice"));
    assert.ok(res.access_token, "an access_token");
    // Old clients read "token": Sigil sends both, equal.
    assert.equal(res.token, res.access_token);
    token = res.access_token;
    mxid = `@alice:${w.hs.name}`;
  });

  it(name("getIdentityAccount before the terms (M_TERMS_NOT_SIGNED starts Element's terms dialog)", `GET ${V2}/account`), async () => {
    await assert.rejects(client.getIdentityAccount(token), (e) => {
      assert.equal(e.errcode, "M_TERMS_NOT_SIGNED");
      assert.equal(e.httpStatus, 403);
      return true;
    });
  });

  let termsUrls;
  it(name("getTerms(SERVICE_TYPES.IS)", `GET ${V2}/terms`), async () => {
    const terms = await client.getTerms(SERVICE_TYPES.IS, w.baseUrl);
    const privacy = terms.policies.privacy;
    assert.equal(privacy.version, "1.0");
    assert.equal(privacy.en.url, `${w.baseUrl}/terms/privacy-1.0-en.html`);
    termsUrls = [privacy.en.url];
  });

  it(name("agreeToTerms(SERVICE_TYPES.IS)", `POST ${V2}/terms`), async () => {
    assert.deepEqual(await client.agreeToTerms(SERVICE_TYPES.IS, w.baseUrl, token, termsUrls), {});
  });

  it(name("getIdentityAccount", `GET ${V2}/account`), async () => {
    assert.deepEqual(await client.getIdentityAccount(token), { user_id: mxid });
  });

  it(name('requestEmailToken (send_attempt "1", a string)', `POST ${V2}/validate/email/requestToken`), async () => {
    const res = await client.requestEmailToken(email, emailSecret, 1, undefined, token);
    assert.ok(res.sid, "a sid");
    emailSid = res.sid;
    const mail = await w.mailTo(email);
    emailLink = submitLink(mail.text);
  });

  it(name('requestEmailToken again, same send_attempt "1" (no second mail)', `POST ${V2}/validate/email/requestToken`), async () => {
    const before = w.mails.items.length;
    const res = await client.requestEmailToken(email, emailSecret, 1, undefined, token);
    assert.equal(res.sid, emailSid);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(w.mails.items.length, before, "no new mail for a repeated send_attempt");
  });

  it(name("the user opens the mailed link (browser GET)", `GET ${V2}/validate/email/submitToken`), async () => {
    const u = new URL(emailLink);
    assert.equal(u.origin, w.baseUrl, "the link points at public_base_url");
    assert.equal(u.searchParams.get("sid"), emailSid);
    const res = await fetch(emailLink, { redirect: "manual" });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /text\/html/);
  });

  it(name("bind the email (homeserver leg: Synapse's /account/3pid/bind)", `POST ${V2}/3pid/bind`), async () => {
    const res = await post(`${V2}/3pid/bind`, { sid: emailSid, client_secret: emailSecret, mxid }, { Authorization: `Bearer ${token}` });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.address, email.toLowerCase());
    assert.equal(res.body.medium, "email");
    assert.equal(res.body.mxid, mxid);
    assert.ok(res.body.signatures?.[w.name], "signed by the identity server");
    association = res.body;
  });

  it(name("the association's signature, with the key Sigil publishes", `GET ${V2}/pubkey/{keyId}`), async () => {
    const [keyID] = Object.keys(association.signatures[w.name]);
    const res = await fetch(`${w.baseUrl}${V2}/pubkey/${encodeURIComponent(keyID)}`);
    assert.equal(res.status, 200);
    const { public_key } = await res.json();
    assert.ok(verifySigned(association, w.name, keyID, public_key), "the signature verifies");
    assert.ok(!verifySigned({ ...association, mxid: "@mallory:example.org" }, w.name, keyID, public_key), "and fails on a changed body");
  });

  it(name('requestMsisdnToken (country "GB", national number, send_attempt "1")', `POST ${V2}/validate/msisdn/requestToken`), async () => {
    const res = await client.requestMsisdnToken("GB", "07400 123456", phoneSecret, 1, undefined, token);
    assert.ok(res.sid, "a sid");
    assert.equal(res.msisdn, msisdn);
    phoneSid = res.sid;
  });

  it(name("submitMsisdnToken (the code from the SMS)", `POST ${V2}/validate/msisdn/submitToken`), async () => {
    const text = await w.texts.wait((t) => t.to === `+${msisdn}`);
    // "Your <server> validation code is <code>"
    const code = text.body.match(/validation code is (\S+)$/)?.[1];
    assert.ok(code, `a code in the SMS: ${text.body}`);
    assert.deepEqual(await client.submitMsisdnToken(phoneSid, phoneSecret, code, token), { success: true });
  });

  it(name("bind the phone number (homeserver leg)", `POST ${V2}/3pid/bind`), async () => {
    const res = await post(`${V2}/3pid/bind`, { sid: phoneSid, client_secret: phoneSecret, mxid }, { Authorization: `Bearer ${token}` });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.address, msisdn);
  });

  it(name("getIdentityHashDetails", `GET ${V2}/hash_details`), async () => {
    const res = await client.getIdentityHashDetails(token);
    assert.ok(res.algorithms.includes("sha256"));
    assert.ok(res.lookup_pepper);
  });

  it(name("identityHashedLookup (sha256 on the client)", `POST ${V2}/lookup`), async () => {
    const res = await client.identityHashedLookup([[email, "email"], [msisdn, "msisdn"], ["nobody@example.org", "email"]], token);
    assert.deepEqual(
      res.sort((a, b) => a.address.localeCompare(b.address)),
      [{ address: msisdn, mxid }, { address: email, mxid }].sort((a, b) => a.address.localeCompare(b.address)),
    );
  });

  it(name("lookupThreePid (the invite dialog's lookup)", `GET ${V2}/hash_details + POST ${V2}/lookup`), async () => {
    assert.deepEqual(await client.lookupThreePid("email", email, token), { address: email, medium: "email", mxid });
  });

  it(name("bulkLookupThreePids", `GET ${V2}/hash_details + POST ${V2}/lookup`), async () => {
    const res = await client.bulkLookupThreePids([["email", email], ["msisdn", msisdn], ["email", "nobody@example.org"]], token);
    assert.deepEqual(res.threepids.sort(), [["email", email, mxid], ["msisdn", msisdn, mxid]].sort());
  });

  // The invite dialog: an address nobody has bound, invited by email.
  const invitee = "bob.invited@example.org";
  let invite;
  it(name("lookupThreePid of an unknown email (empty: Element offers an email invite)", `POST ${V2}/lookup`), async () => {
    assert.deepEqual(await client.lookupThreePid("email", invitee, token), {});
  });

  it(name("store the invite (homeserver leg: Synapse's /rooms/{roomId}/invite with id_server)", `POST ${V2}/store-invite`), async () => {
    const res = await post(`${V2}/store-invite`, {
      medium: "email", address: invitee, room_id: `!room:${w.hs.name}`, sender: mxid,
      room_alias: `#room:${w.hs.name}`, room_avatar_url: "", room_join_rules: "invite", room_name: "Room",
      room_type: "", sender_display_name: "Alice", sender_avatar_url: "",
    }, { Authorization: `Bearer ${token}` });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.ok(res.body.token);
    assert.ok(res.body.display_name);
    assert.equal(res.body.public_keys.length, 2);
    invite = res.body;
    const mail = await w.mailTo(invitee);
    assert.match(mail.text, /Alice/);
  });

  it(name("key validity (homeserver leg: each public_keys[].key_validity_url)", `GET ${V2}/pubkey/isvalid + ${V2}/pubkey/ephemeral/isvalid`), async () => {
    for (const k of invite.public_keys) {
      const u = new URL(k.key_validity_url);
      assert.equal(u.origin, w.baseUrl);
      u.searchParams.set("public_key", k.public_key);
      const res = await fetch(u);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { valid: true });
    }
    const bogus = new URL(invite.public_keys[1].key_validity_url);
    bogus.searchParams.set("public_key", "AAAA");
    assert.deepEqual(await (await fetch(bogus)).json(), { valid: false });
  });

  it(name("the invitee binds the invited email: Sigil delivers the invite (onbind)", `POST ${V2}/3pid/bind → homeserver /3pid/onbind`), async () => {
    const bob = await client.registerWithIdentityServer(w.hs.openIDToken("bob"));
    await client.agreeToTerms(SERVICE_TYPES.IS, w.baseUrl, bob.access_token, termsUrls);
    const { sid } = await client.requestEmailToken(invitee, "bob-secret", 1, undefined, bob.access_token);
    const mail = await w.mails.wait((m) => m.to.includes(invitee) && m.text.includes("submitToken"));
    assert.equal((await fetch(submitLink(mail.text))).status, 200);
    const bobMxid = `@bob:${w.hs.name}`;
    const res = await post(`${V2}/3pid/bind`, { sid, client_secret: "bob-secret", mxid: bobMxid }, { Authorization: `Bearer ${bob.access_token}` });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const onbind = await w.hs.onbinds.wait((b) => b.address === invitee);
    assert.equal(onbind.mxid, bobMxid);
    assert.equal(onbind.invites.length, 1);
    assert.equal(onbind.invites[0].token, invite.token);
    // The invitee's homeserver accepts the invite when the signed block
    // verifies with one of the public keys store-invite returned.
    const signed = onbind.invites[0].signed;
    assert.equal(signed.mxid, bobMxid);
    assert.equal(signed.token, invite.token);
    const keyIDs = Object.keys(signed.signatures?.[w.name] ?? {});
    assert.ok(
      keyIDs.some((id) => invite.public_keys.some((k) => verifySigned(signed, w.name, id, k.public_key))),
      `the signed block verifies with a store-invite public key (${keyIDs})`,
    );
    const forged = { ...signed, mxid: "@mallory:example.org" };
    assert.ok(!keyIDs.some((id) => invite.public_keys.some((k) => verifySigned(forged, w.name, id, k.public_key))), "and not when changed");
  });

  it(name("unbind the email (homeserver leg: Synapse's /account/3pid/unbind, X-Matrix signed)", `POST ${V2}/3pid/unbind`), async () => {
    const content = { mxid, threepid: { medium: "email", address: email.toLowerCase() } };
    const path = `${V2}/3pid/unbind`;
    const res = await post(path, content, { Authorization: w.hs.xMatrix("POST", path, w.name, content) });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(await client.lookupThreePid("email", email, token), {});
  });

  it(name("unbind the phone number with the session's sid and client_secret", `POST ${V2}/3pid/unbind`), async () => {
    const res = await post(`${V2}/3pid/unbind`, {
      sid: phoneSid, client_secret: phoneSecret, mxid, threepid: { medium: "msisdn", address: msisdn },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(await client.lookupThreePid("msisdn", msisdn, token), {});
  });

  it(name("disconnect: logout (no SDK method: a plain POST), then getIdentityAccount is refused (401 M_UNAUTHORIZED, the spec's code)", `POST ${V2}/account/logout`), async () => {
    const res = await post(`${V2}/account/logout`, {}, { Authorization: `Bearer ${token}` });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    await assert.rejects(client.getIdentityAccount(token), (e) => e.errcode === "M_UNAUTHORIZED" && e.httpStatus === 401);
  });
});
