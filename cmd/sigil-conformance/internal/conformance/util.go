// Helpers: JSON numbers, random strings and keys.

package conformance

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"

	"github.com/sigil-matrix/sigil/cmd/sigil-conformance/internal/mxjson"
)

func contains(list []any, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func jsonInt(v any) (int64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%v is not a number", v)
	}
	i, err := n.Int64()
	if err != nil {
		return 0, fmt.Errorf("%v is not an integer", v)
	}
	return i, nil
}

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randomString(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[randomInt(len(alnum))]
	}
	return string(b)
}

func randomInt(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		panic(err)
	}
	return int(v.Int64())
}

// newKey returns a fresh ed25519 public key and its seed in unpadded base64.
func newKey() (ed25519.PublicKey, string) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return pub, mxjson.EncodeBase64(priv.Seed())
}

func randomKey() string {
	pub, _ := newKey()
	return mxjson.EncodeBase64(pub)
}

// flipBase64 returns another base64 character than c.
func flipBase64(c string) string {
	if c == "A" {
		return "B"
	}
	return "A"
}
