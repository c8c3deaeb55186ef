package identity

import (
	"crypto/subtle"
	"encoding/binary"
	"net/mail"
	"regexp"
	"strings"

	"golang.org/x/text/cases"

	"github.com/sigil-matrix/sigil/spec/matrixerr"
)

const (
	lowBits  = 0x0101010101010101
	highBits = 0x8080808080808080
)

// Media the server validates and binds.
const (
	mediumEmail  = "email"
	mediumMSISDN = "msisdn"
)

// foldCase applies Unicode full case folding (MSC2265). ASCII, nearly
// every address, folds to lower case and is done here without x/text: the
// transformer allocated enough to dominate a 1,000-address bulk lookup. A
// cases.Caser is stateful, so the rare non-ASCII address gets its own.
func foldCase(s string) string {
	upper := false
	i := 0
	// Eight bytes at a time: a bulk lookup folds every address it is sent,
	// and the byte loop alone was 7 % of a 1,000-address request's CPU.
	for ; i+8 <= len(s); i += 8 {
		w := binary.LittleEndian.Uint64([]byte(s[i : i+8]))
		if w&highBits != 0 {
			return cases.Fold().String(s)
		}
		// For ASCII bytes, adding 0x80-'A' sets a byte's high bit iff it
		// is >= 'A', adding 0x80-'Z'-1 iff it is > 'Z'; no byte carries
		// into the next (0x7f+0x3f < 0x100).
		upper = upper || (w+(0x80-'A')*lowBits)&^(w+(0x80-'Z'-1)*lowBits)&highBits != 0
	}
	for ; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return cases.Fold().String(s)
		}
		upper = upper || 'A' <= c && c <= 'Z'
	}
	if !upper {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// canonicalEmail checks that s is one bare address (no display name, no
// angle brackets, nothing that could add a mail header) and returns it case
// folded, as MSC2265 requires of stored and looked-up addresses.
func canonicalEmail(s string) (string, error) {
	bad := matrixerr.InvalidEmail("Invalid email address")
	if len(s) == 0 || len(s) > 254 || strings.ContainsAny(s, "\r\n\x00<>\",;:()[]\\ \t") {
		return "", bad
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return "", bad
	}
	at := strings.LastIndexByte(s, '@')
	if at < 1 || at == len(s)-1 || strings.Count(s, "@") != 1 {
		return "", bad
	}
	return foldCase(s), nil
}

// canonicalAddress normalises an address of a known medium for storage and
// lookup; unknown media are passed through unchanged.
func canonicalAddress(medium, address string) string {
	if medium == mediumEmail {
		return foldCase(address)
	}
	return address
}

var mxidRE = regexp.MustCompile(`^@[^:\s]+:[A-Za-z0-9.\-\[\]:]+$`)

// checkMXID requires a full Matrix user ID, @localpart:server.
func checkMXID(s string) error {
	if len(s) > 255 || !mxidRE.MatchString(s) {
		return matrixerr.InvalidParam("mxid must be a Matrix user ID such as @alice:example.org")
	}
	return nil
}

// mxidServer is the server name part of a Matrix user ID.
func mxidServer(mxid string) string {
	if i := strings.IndexByte(mxid, ':'); i >= 0 {
		return mxid[i+1:]
	}
	return ""
}

// secretEqual compares secrets in constant time.
func secretEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// redactEmail hides most of an address for the invite's display_name,
// following Sydent: each of the local part and the domain keeps its first
// three characters (or one, when short) followed by "...".
func redactEmail(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return redactPart(addr)
	}
	return redactPart(addr[:at]) + "@" + redactPart(addr[at+1:])
}

func redactPart(s string) string {
	r := []rune(s)
	const keep = 3
	switch {
	case len(r) > keep:
		return string(r[:keep]) + "..."
	case len(r) >= 2:
		return string(r[:1]) + "..."
	default:
		return "..."
	}
}
