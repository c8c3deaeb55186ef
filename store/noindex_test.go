package store

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestCommandStoreLoadsNoIndexYetServersSeeItsWrites: a Store opened for
// an operator's command (WithoutLookupIndex) never reads the bindings
// into memory (nor logs a load), answers lookups from the database, and
// its writes still reach the index of a server on the same database.
func TestCommandStoreLoadsNoIndexYetServersSeeItsWrites(t *testing.T) {
	defer func(d time.Duration) { pollInterval = d }(pollInterval)
	pollInterval = 20 * time.Millisecond
	for _, backend := range backends() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			dsn := freshDSN(t, backend)
			server := openT(t, dsn)
			as, _ := mixedSet(50)
			must(t, server.InsertAssociations(ctx, as))
			waitIndex(t, server)

			var logs bytes.Buffer
			cmd, err := Open(ctx, dsn, WithoutLookupIndex(),
				WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
			must(t, err)
			t.Cleanup(func() { _ = cmd.Close() })
			time.Sleep(10 * pollInterval)
			if st := cmd.IndexStats(); st.Loaded || st.Loads != 0 || st.CatchingUp {
				t.Fatalf("the command's store loaded the index: %+v", st)
			}
			if strings.Contains(logs.String(), "lookup index") {
				t.Errorf("the command's store logged about the index:\n%s", logs.String())
			}

			const addr = "fromcommand@example.org"
			must(t, cmd.PutAssociation(ctx, Association{Medium: "email", Address: addr, MXID: "@cmd:hs",
				NotAfter: 1 << 41, LookupHash: realHash("email", addr, "pepper1")}))
			got, err := cmd.LookupThreePIDs(ctx, []ThreePID{{"email", addr}}, 1)
			must(t, err)
			if got[0] != "@cmd:hs" {
				t.Errorf("the command's own lookup (from the database): %q", got[0])
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				var got MXIDs
				ok := server.ix.lookupPairs([]ThreePID{{"email", addr}}, 1, &got)
				if ok && got.List[0] == "@cmd:hs" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the command's write never reached the server's index (%v %q)", ok, got.List)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if st := cmd.IndexStats(); st.Loaded {
				t.Errorf("the command's store loaded the index after its write: %+v", st)
			}
		})
	}
}
