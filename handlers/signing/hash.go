package signing

import (
	"crypto/sha256"
	"encoding/base64"
)

// LookupHash returns the v2 lookup hash of a 3PID: URL-safe unpadded base64
// of SHA-256("<address> <medium> <pepper>"), as the identity service spec
// defines for the "sha256" algorithm.
func LookupHash(address, medium, pepper string) string {
	// Stack buffers keep this to a single allocation (the result) for
	// ordinary addresses; it runs once per 3PID on the lookup path.
	var stack [256]byte
	buf := append(stack[:0], address...)
	buf = append(buf, ' ')
	buf = append(buf, medium...)
	buf = append(buf, ' ')
	buf = append(buf, pepper...)
	sum := sha256.Sum256(buf)
	var out [43]byte // base64.RawURLEncoding.EncodedLen(sha256.Size)
	base64.RawURLEncoding.Encode(out[:], sum[:])
	return string(out[:])
}
