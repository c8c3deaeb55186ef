package identity

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/mail"
	"github.com/sigil-matrix/sigil/handlers/signing"
	"github.com/sigil-matrix/sigil/store"
)

// A client past its limit is refused before any per-address state is
// made: flooding random addresses from one client leaves the per-address
// limiter at the client's burst.
func TestRefusedClientCreatesNoAddressState(t *testing.T) {
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
	now := time.Unix(1_790_000_000, 0)
	srv, err := New(Config{ServerName: "id.example.org", MailEvery: time.Minute, MailBurst: 5},
		Deps{Store: st, Key: key, Mail: mail.NewLogSender(nil), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for i := range 10_000 {
		if srv.allowMessage(fmt.Sprintf("victim%d@example.org", i), "203.0.113.9") != nil {
			refused++
		}
	}
	if refused != 10_000-50 {
		t.Errorf("%d refused, want all but the client's burst of 50", refused)
	}
	if n := srv.mailByAddr.Len(); n != 50 {
		t.Errorf("%d per-address entries after a refused flood, want 50", n)
	}
}
