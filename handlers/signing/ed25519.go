package signing

import (
	"crypto/ed25519"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// Sign returns k's Ed25519 signature over msg; it panics, as ed25519.Sign
// does, when the private key is not 64 bytes.
//
// It uses curve25519-voi's signer rather than crypto/ed25519: Ed25519
// signatures are deterministic (RFC 8032), so both give the same 64 bytes
// (TestSignMatchesStandardLibrary), and voi's larger precomputed base-point
// tables sign in about half the time (BenchmarkEd25519Sign: 21 µs with
// crypto/ed25519, 11 µs with voi on the project's VM). Every bound v1
// lookup is signed afresh from the lookup index, so this is the largest
// single cost of that route. Verification stays with crypto/ed25519.
func (k Key) Sign(msg []byte) []byte {
	if len(k.Private) != ed25519.PrivateKeySize {
		panic("signing: bad private key length")
	}
	return voi.Sign(voi.PrivateKey(k.Private), msg)
}
