package identity

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/mail"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/store"
)

// TestResignMatchesStored: a v1 lookup answered from the index (as on
// PostgreSQL) is byte for byte the association the bind stored, for both
// media, and the index's view of unbound and expired 3PIDs is {}.
func TestResignMatchesStored(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "sigil.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key, err := signing.LoadOrCreateKeyFile(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_790_000_000_123)
	srv, err := New(Config{ServerName: "id.example.org"}, Deps{Store: st, Key: key, Mail: mail.NewLogSender(nil), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	bound := []store.ThreePID{{Medium: "email", Address: "alice@example.org"}, {Medium: "msisdn", Address: "447700900123"}}
	for i, p := range bound {
		pepper, err := srv.pepper(ctx)
		if err != nil {
			t.Fatal(err)
		}
		a, err := SignAssociation(key, srv.ServerName(), p.Medium, p.Address, "@user"+string(rune('a'+i))+":hs.example.org", pepper, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.PutAssociation(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.WaitIndex(ctx); err != nil {
		t.Fatal(err)
	}
	ms := now.UnixMilli()
	for _, p := range bound {
		stored, err := st.SignedAssociation(ctx, p.Medium, p.Address, ms)
		if err != nil {
			t.Fatal(err)
		}
		got, ok, err := srv.resignFromIndex(p.Medium, p.Address, ms)
		if err != nil || !ok {
			t.Fatalf("%v: ok %v, %v", p, ok, err)
		}
		if string(got) != string(stored) {
			t.Errorf("%v: from the index\n%s\nstored\n%s", p, got, stored)
		}
	}
	for _, tc := range []struct {
		p  store.ThreePID
		at int64
	}{
		{store.ThreePID{Medium: "email", Address: "bob@example.org"}, ms}, // never bound
		{bound[0], ms - 1}, // before not_before
		{bound[0], ms + int64(associationLifetime/time.Millisecond) + 1}, // after not_after
	} {
		got, ok, err := srv.resignFromIndex(tc.p.Medium, tc.p.Address, tc.at)
		if err != nil || !ok {
			t.Fatalf("%v at %d: ok %v, %v", tc.p, tc.at, ok, err)
		}
		if got != nil {
			t.Errorf("%v at %d: answered %s, want nothing", tc.p, tc.at, got)
		}
	}
}
