package convert

import (
	"fmt"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// The merged document is read by people too: /docs/ renders it with
// Redoc. Its description is written for them; that it is generated is
// said in GeneratedBy, an extension readers never see.

// Description is the document's info.description (Markdown, as Redoc
// shows it above the operations).
const Description = `The Matrix Identity Service API as Sigil serves it: validation of email
addresses and phone numbers, associations between them and Matrix user IDs
(3PID bindings), lookups, third-party invites and ed25519 signing.

- **v2** (` + "`/_matrix/identity/v2`" + `) is the current API. Most of it needs an
  access token from ` + "`account/register`" + ` (an OpenID token from the user's
  homeserver), given as ` + "`Authorization: Bearer`" + `, and the acceptance of
  the server's terms of service.
- **v1** (` + "`/_matrix/identity/api/v1`" + `) is deprecated by the specification and
  needs no token; Synapse and Dendrite still call parts of it. Sigil serves it
  unless ` + "`api.v1: false`" + `.

Every error is a JSON body with an ` + "`errcode`" + ` (` + "`M_MISSING_PARAMS`" + `,
` + "`M_INVALID_PARAM`" + `, ` + "`M_SESSION_NOT_VALIDATED`" + `, ...) and an ` + "`error`" + ` message.`

// GeneratedBy marks the document as generated, as the extension
// x-generated-by of its top level.
const GeneratedBy = "spec/specgen from the API files in spec/ (make generate); do not edit"

// area is one group of operations of a version, by the path's first
// segment after the version's prefix.
type area struct{ key, name, description string }

var areas = []area{
	{"status", "Status", "Whether an identity service is available at this address."},
	{"account", "Accounts", "Access tokens for this identity server, obtained with an OpenID token from the user's homeserver."},
	{"terms", "Terms of service", "The policies a user must accept before using the v2 API."},
	{"email", "Email validation", "Proving that a user controls an email address: a token sent by mail, submitted back."},
	{"msisdn", "Phone validation", "Proving that a user controls a phone number: a token sent by SMS, submitted back."},
	{"associations", "Associations", "Publishing (binding) and removing the association of a validated 3PID with a Matrix user ID."},
	{"lookup", "Lookup", "Finding the Matrix user ID bound to a 3PID."},
	{"invitations", "Invitations", "Third-party invites to a 3PID that has no Matrix user ID yet, and signing for them."},
	{"keys", "Public keys", "The server's signing keys and the ephemeral keys of invites."},
}

// areaOf is the area of a path below its version's prefix.
func areaOf(rest string) area {
	segs := strings.Split(strings.Trim(rest, "/"), "/")
	key := segs[0]
	switch key {
	case "":
		key = "status"
	case "validate":
		if len(segs) > 1 {
			key = segs[1]
		}
	case "3pid", "bind":
		key = "associations"
	case "lookup", "bulk_lookup", "hash_details":
		key = "lookup"
	case "store-invite", "sign-ed25519":
		key = "invitations"
	case "pubkey":
		key = "keys"
	}
	for _, a := range areas {
		if a.key == key {
			return a
		}
	}
	return area{key: key, name: strings.ToUpper(key[:1]) + key[1:]}
}

// version is one group of areas: an API version, found by its prefix.
type version struct{ prefix, short, name string }

var versions = []version{
	{"/_matrix/identity/v2", "v2", "Identity API v2"},
	{"/_matrix/identity/api/v1", "v1", "Identity API v1 (deprecated)"},
	{"", "", "Discovery"},
}

// groupOperations tags every operation with its API version and area, in
// the order of versions and areas, and groups the tags by version
// (x-tagGroups, which Redoc's menu shows as sections): the document's 41
// operations as a few short lists rather than one long one. Summaries
// that two operations of one tag share get the method (and, if that is
// the same, the path) appended, those of an older version the version;
// the trailing full stop of a summary goes, as in a title.
func groupOperations(doc *openapi3.T) []string {
	type tagged struct {
		path, method string
		op           *openapi3.Operation
	}
	byTag := map[string][]tagged{}
	tags := map[string]*openapi3.Tag{}
	rank := map[string]int{}
	groups := make([][]string, len(versions))
	for _, path := range doc.Paths.InMatchingOrder() {
		item := doc.Paths.Value(path)
		vi, v := 0, versions[0]
		for vi, v = range versions {
			if strings.HasPrefix(path, v.prefix) && (v.prefix == "" || len(path) == len(v.prefix) || path[len(v.prefix)] == '/') {
				break
			}
		}
		a := area{key: "versions", name: "Versions", description: "The versions of the specification the server supports."}
		if v.prefix != "" {
			a = areaOf(strings.TrimPrefix(path, v.prefix))
		}
		name := a.name
		if v.short != "" {
			name = v.short + ": " + a.name
		}
		for method, op := range item.Operations() {
			op.Tags = []string{name}
			op.Summary = strings.TrimSuffix(strings.TrimSpace(op.Summary), ".")
			byTag[name] = append(byTag[name], tagged{path, method, op})
		}
		if _, ok := tags[name]; !ok {
			tags[name] = &openapi3.Tag{Name: name, Description: a.description,
				Extensions: map[string]any{"x-displayName": a.name}}
			rank[name] = len(areas)
			for i, x := range areas {
				if x.key == a.key {
					rank[name] = i
				}
			}
			groups[vi] = append(groups[vi], name)
		}
	}
	var changes []string
	for name, ops := range byTag {
		sort.Slice(ops, func(i, j int) bool {
			return ops[i].path+" "+ops[i].method < ops[j].path+" "+ops[j].method
		})
		same := map[string][]tagged{}
		for _, o := range ops {
			same[o.op.Summary] = append(same[o.op.Summary], o)
		}
		for summary, dup := range same {
			if len(dup) < 2 {
				continue
			}
			methods := map[string]bool{}
			for _, o := range dup {
				methods[o.method] = true
			}
			for _, o := range dup {
				suffix := o.method
				if len(methods) < len(dup) {
					suffix += " " + strings.TrimPrefix(o.path, versionPrefix(o.path))
				}
				o.op.Summary = fmt.Sprintf("%s (%s)", summary, suffix)
				changes = append(changes, fmt.Sprintf("group: %s %s: summary shared in %q, now %q", o.method, o.path, name, o.op.Summary))
			}
		}
	}
	// The same operation often exists in both versions, under one
	// summary: the older version's summaries say their version, so that
	// titles, search results and the menu never repeat one.
	for _, ops := range byTag {
		for _, o := range ops {
			short := versionShort(o.path)
			if short == "" || short == versions[0].short {
				continue
			}
			if strings.HasSuffix(o.op.Summary, ")") {
				o.op.Summary = strings.TrimSuffix(o.op.Summary, ")") + ", " + short + ")"
			} else {
				o.op.Summary += " (" + short + ")"
			}
		}
	}
	doc.Tags = nil
	var tagGroups []any
	for i, g := range groups {
		if len(g) == 0 {
			continue
		}
		sort.SliceStable(g, func(a, b int) bool { return rank[g[a]] < rank[g[b]] })
		for _, name := range g {
			doc.Tags = append(doc.Tags, tags[name])
		}
		tagGroups = append(tagGroups, map[string]any{"name": versions[i].name, "tags": g})
	}
	if doc.Extensions == nil {
		doc.Extensions = map[string]any{}
	}
	doc.Extensions["x-tagGroups"] = tagGroups
	doc.Extensions["x-generated-by"] = GeneratedBy
	return changes
}

func versionShort(path string) string {
	for _, v := range versions {
		if v.prefix != "" && strings.HasPrefix(path, v.prefix) {
			return v.short
		}
	}
	return ""
}

func versionPrefix(path string) string {
	for _, v := range versions {
		if v.prefix != "" && strings.HasPrefix(path, v.prefix) {
			return v.prefix
		}
	}
	return ""
}
