// Where each case's expectation comes from: the spec section (upstream
// matrix-org/matrix-spec, content/identity-service-api.md and the API
// description data/api/identity/*.yaml) and, for the summary, the area of
// the API a case belongs to.

package conformance

import "strings"

const isAPI = "identity-service-api.md"

// opCite is the upstream section and API file of each operation of the
// document (v1 operations cite the last release that had them, r0.3.0).
var opCite = map[string]string{
	"getVersions":              isAPI + " §API Version check (versions.yaml)",
	"getPingV1":                isAPI + "@r0.3.0 §Status check (ping.yaml)",
	"getPingV2":                isAPI + " §Status check (v2_ping.yaml)",
	"registerAccount":          isAPI + " §Authentication (v2_auth.yaml POST /account/register)",
	"getAccount":               isAPI + " §Authentication (v2_auth.yaml GET /account)",
	"logout":                   isAPI + " §Authentication (v2_auth.yaml POST /account/logout)",
	"getTerms":                 isAPI + " §Terms of service (v2_terms.yaml GET /terms)",
	"agreeToTerms":             isAPI + " §Terms of service (v2_terms.yaml POST /terms)",
	"getPubKey":                isAPI + "@r0.3.0 §Key management (pubkey.yaml)",
	"getPubKeyV2":              isAPI + " §Key management (v2_pubkey.yaml GET /pubkey/{keyId})",
	"isPubKeyValid":            isAPI + "@r0.3.0 §Key management (pubkey.yaml)",
	"isPubKeyValidV2":          isAPI + " §Key management (v2_pubkey.yaml GET /pubkey/isvalid)",
	"isEphemeralPubKeyValid":   isAPI + "@r0.3.0 §Key management (pubkey.yaml)",
	"isEphemeralPubKeyValidV2": isAPI + " §Key management (v2_pubkey.yaml GET /pubkey/ephemeral/isvalid)",
	"getHashDetails":           isAPI + " §Association lookup (v2_lookup.yaml GET /hash_details)",
	"lookupV2":                 isAPI + " §Association lookup, §Algorithms (v2_lookup.yaml POST /lookup)",
	"lookupV1":                 isAPI + "@r0.3.0 §Association lookup (lookup.yaml GET /lookup)",
	"bulkLookup":               isAPI + "@r0.3.0 §Association lookup (lookup.yaml POST /bulk_lookup)",
	"emailRequestToken":        isAPI + "@r0.3.0 §Email associations (email_associations.yaml)",
	"emailRequestTokenV2":      isAPI + " §Email associations (v2_email_associations.yaml requestToken)",
	"emailSubmitTokenPost":     isAPI + "@r0.3.0 §Email associations (email_associations.yaml)",
	"emailSubmitTokenPostV2":   isAPI + " §Email associations (v2_email_associations.yaml POST submitToken)",
	"emailSubmitTokenGet":      isAPI + "@r0.3.0 §Email associations (email_associations.yaml)",
	"emailSubmitTokenGetV2":    isAPI + " §Email associations (v2_email_associations.yaml GET submitToken)",
	"msisdnRequestToken":       isAPI + "@r0.3.0 §Phone number associations (phone_associations.yaml)",
	"msisdnRequestTokenV2":     isAPI + " §Phone number associations (v2_phone_associations.yaml requestToken)",
	"msisdnSubmitTokenPost":    isAPI + "@r0.3.0 §Phone number associations (phone_associations.yaml)",
	"msisdnSubmitTokenPostV2":  isAPI + " §Phone number associations (v2_phone_associations.yaml POST submitToken)",
	"msisdnSubmitTokenGet":     isAPI + "@r0.3.0 §Phone number associations (phone_associations.yaml)",
	"msisdnSubmitTokenGetV2":   isAPI + " §Phone number associations (v2_phone_associations.yaml GET submitToken)",
	"getValidated3pid":         isAPI + "@r0.3.0 §Establishing associations (associations.yaml getValidated3pid)",
	"getValidated3pidV2":       isAPI + " §Establishing associations (v2_associations.yaml GET /3pid/getValidated3pid)",
	"bind3pid":                 isAPI + "@r0.3.0 §Establishing associations (associations.yaml POST /3pid/bind)",
	"bind":                     isAPI + "@r0.1.0 (POST /bind, replaced by /3pid/bind in r0.2.0; Sigil-only: strict profile)",
	"bindV2":                   isAPI + " §Establishing associations (v2_associations.yaml POST /3pid/bind)",
	"unbindV1":                 isAPI + "@r0.3.0 §Establishing associations (associations.yaml POST /3pid/unbind)",
	"unbindV2":                 isAPI + " §Establishing associations (v2_associations.yaml POST /3pid/unbind)",
	"storeInvite":              isAPI + "@r0.3.0 §Invitation storage (store_invite.yaml)",
	"storeInviteV2":            isAPI + " §Invitation storage (v2_store_invite.yaml)",
	"blindlySignStuff":         isAPI + "@r0.3.0 §Ephemeral invitation signing (invitation_signing.yaml)",
	"blindlySignStuffV2":       isAPI + " §Ephemeral invitation signing (v2_invitation_signing.yaml)",
}

// caseCite refines an operation's citation by the kind of case (matched on
// the case name), for rules stated in the prose rather than the operation.
var caseCite = []struct{ contains, cite string }{
	{"wrong method", isAPI + " §API standards (405 for a known endpoint since v1.6, MSC3743)"},
	{"unknown route", isAPI + " §API standards (404 M_UNRECOGNIZED for an unknown endpoint)"},
	{"CORS", isAPI + " §Web browser clients"},
	{"Access-Control", isAPI + " §Web browser clients"},
	{"Content-Type", isAPI + " §API standards (JSON bodies, application/json)"},
	{"access token", isAPI + " §Authentication (401 M_UNAUTHORIZED)"},
	{"terms not accepted", isAPI + " §Terms of service (403 M_TERMS_NOT_SIGNED)"},
	{"not JSON", isAPI + " §API standards, §Standard error response"},
	{"JSON array", isAPI + " §API standards (bodies are JSON objects)"},
	{"wrong type", isAPI + " §API standards, §Standard error response"},
	{"missing ", isAPI + " §API standards (M_MISSING_PARAMS)"},
	{"case-folded", "appendices.md §3PID Types, Email addresses (v1.1, MSC2265)"},
	{"SMTPUTF8", "appendices.md §3PID Types (addresses are Unicode); RFC 6531"},
	{"expire", isAPI + " §Establishing associations (sessions and tokens expire; M_SESSION_EXPIRED)"},
	{"send_attempt", isAPI + " §Email associations (send_attempt; request_email_validation.yaml)"},
	{"next_link", isAPI + " (request_email_validation.yaml next_link; v1.6 MSC3743 redirect)"},
	{"client_secret outside", isAPI + " §Establishing associations (client_secret [0-9a-zA-Z.=_-], v1.1)"},
	{"canonical JSON", "appendices.md §Canonical JSON, §Signing JSON"},
	{"invites in", isAPI + " §Establishing associations (v2_associations.yaml: the bind answer is the signed association); §Privacy"},
	{"X-Matrix", isAPI + " §Establishing associations (v2_associations.yaml unbind: homeserver signature); server-server §Request Authentication"},
	{"trailing garbage", isAPI + " §API standards"},
	{"UTF-8", isAPI + " §API standards"},
	{"nested", isAPI + " §API standards"},
	{" null", isAPI + " §API standards"},
	{"no 5xx", isAPI + " §API standards (errors are Matrix errors)"},
	{"sha256 hashes", isAPI + " §Algorithms, sha256 (test vectors)"},
}

// citation is the spec text a case checks.
func citation(op, name string) string {
	base := opCite[op]
	for _, c := range caseCite {
		if strings.Contains(name, c.contains) {
			if base == "" {
				return c.cite
			}
			return c.cite + "; " + base
		}
	}
	if base == "" {
		return isAPI + " §API standards"
	}
	return base
}

// area groups cases for the summary.
func area(op, name string) string {
	switch {
	case strings.Contains(name, "CORS") || strings.Contains(name, "Access-Control") || strings.Contains(name, "Content-Type"):
		return "transport (content type, CORS)"
	case strings.HasPrefix(op, "(router)") || strings.Contains(name, "wrong method"):
		return "routing"
	case strings.Contains(name, " expires:"):
		return "expiry"
	case strings.Contains(name, "not JSON") || strings.Contains(name, "JSON array") || strings.Contains(name, "wrong type") ||
		strings.HasPrefix(name, "missing ") || strings.Contains(name, "no body") || strings.Contains(name, "trailing") ||
		strings.Contains(name, "UTF-8 in") || strings.Contains(name, "nested") || strings.HasSuffix(name, " null: 400") ||
		strings.Contains(name, "= 1.5") || strings.Contains(name, "no 5xx"):
		return "request validation"
	case strings.Contains(name, "access token") || op == "registerAccount" || op == "logout" || op == "getAccount":
		return "authentication"
	case strings.Contains(name, "terms") || op == "getTerms" || op == "agreeToTerms":
		return "terms"
	case strings.Contains(op, "RequestToken") || strings.Contains(op, "SubmitToken") || strings.Contains(op, "getValidated3pid"):
		return "validation sessions"
	case strings.Contains(op, "bind") || strings.Contains(op, "Bind"):
		return "binding"
	case strings.Contains(op, "ookup") || op == "getHashDetails":
		return "lookup"
	case strings.Contains(op, "Invite") || strings.Contains(op, "blindlySign"):
		return "invites"
	case strings.Contains(op, "PubKey"):
		return "keys"
	}
	return "other"
}

// cause classifies a failure by what went wrong, for the summary.
func cause(reason string) string {
	switch {
	case strings.Contains(reason, "runner panic"):
		return "runner error"
	case strings.Contains(reason, "Content-Type") || strings.Contains(reason, "content type"):
		return "wrong content type"
	case strings.Contains(reason, "Access-Control"):
		return "missing CORS headers"
	case strings.Contains(reason, "does not conform to the document"):
		return "answer does not match the API description"
	case strings.Contains(reason, "got 429"):
		return "rate limited (429): raise the server's limits for the run"
	case strings.Contains(reason, "got 5"):
		return "server error (5xx)"
	case strings.Contains(reason, "got 401"):
		return "refused as unauthenticated (401)"
	case strings.Contains(reason, "M_TERMS_NOT_SIGNED"):
		return "terms of service"
	case strings.Contains(reason, "signature"):
		return "signatures"
	case strings.Contains(reason, "mail") || strings.Contains(reason, "SMS") || strings.Contains(reason, "onbind"):
		return "mail, SMS or onbind delivery"
	case strings.Contains(reason, "got 200") || strings.Contains(reason, "still"):
		return "accepted what must be refused"
	case strings.Contains(reason, "want "):
		return "different status or errcode"
	}
	return "other"
}
