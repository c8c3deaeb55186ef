package handlers_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/sigil-matrix/sigil/handlers/apitest"
	"github.com/sigil-matrix/sigil/handlers/signing"
)

// TestConcurrentLookupsKeepTheirOwnBodies: the big lookups decode into
// pooled memory pointing into a pooled body buffer, and answer into pooled
// MXIDs and buffers (validate.Body.RecycleAfter, answerPool). Many at once,
// each with its own body, must each get exactly its own answer: memory
// handed back while still read would show up here as another request's
// addresses or MXIDs. Bodies are over 4 KiB, the smallest pooled size.
func TestConcurrentLookupsKeepTheirOwnBodies(t *testing.T) {
	env := apitest.New(t)
	const pepper, tok, bound = "recyclepepper", "recycletoken", 200
	seedBindings(t, env, bound, "recycle.test", pepper, tok)

	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 25 {
				// 150 to 250 addresses, a third never bound.
				n := 150 + rng.IntN(100)
				pairs := make([][]string, n)
				hashes := make([]string, n)
				wantBulk := map[string]string{}
				wantV2 := map[string]any{}
				for i := range pairs {
					k := rng.IntN(bound * 3 / 2)
					addr := fmt.Sprintf("user%d@recycle.test", k)
					pairs[i] = []string{"email", addr}
					hashes[i] = signing.LookupHash(addr, "email", pepper)
					if k < bound {
						wantBulk[addr] = fmt.Sprintf("@user%d:recycle.test", k)
						wantV2[hashes[i]] = wantBulk[addr]
					}
				}
				r := env.Post(v1+"/bulk_lookup", map[string]any{"threepids": pairs})
				got, _ := r.JSON()["threepids"].([]any)
				seen := map[string]bool{}
				for _, x := range got {
					tr, _ := x.([]any)
					if len(tr) != 3 || wantBulk[fmt.Sprint(tr[1])] != tr[2] {
						t.Errorf("bulk lookup answered %v, not one of its own", tr)
						return
					}
					seen[fmt.Sprint(tr[1])] = true
				}
				if r.Status != 200 || len(seen) != len(wantBulk) {
					t.Errorf("bulk lookup: %d, %d of %d bound addresses answered", r.Status, len(seen), len(wantBulk))
					return
				}
				r = env.Do(apitest.Request{Method: "POST", Path: v2 + "/lookup", Header: bearer(tok),
					Body: map[string]any{"algorithm": "sha256", "pepper": pepper, "addresses": hashes}})
				if m, _ := r.JSON()["mappings"].(map[string]any); r.Status != 200 || fmt.Sprint(m) != fmt.Sprint(wantV2) {
					t.Errorf("v2 lookup: %d, %d mappings, want %d", r.Status, len(m), len(wantV2))
					return
				}
			}
		}()
	}
	wg.Wait()
}
