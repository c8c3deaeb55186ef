package handlers_test

import (
	"context"
	"testing"
	"time"

	"github.com/sigil-matrix/sigil/handlers/apitest"
)

func TestHealthEndpoints(t *testing.T) {
	env := apitest.New(t)
	if r := env.Get("/livez"); r.Status != 200 || r.String("status") != "alive" {
		t.Errorf("livez: %d %s", r.Status, r.Body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.Store.WaitIndex(ctx); err != nil {
		t.Fatal(err)
	}
	r := env.Get("/readyz")
	if r.Status != 200 || r.String("status") != "ready" || r.String("database") != "ok" {
		t.Errorf("readyz: %d %s", r.Status, r.Body)
	}
	if idx, _ := r.JSON()["lookup_index"].(map[string]any); idx["loaded"] != true {
		t.Errorf("readyz lookup_index: %s", r.Body)
	}
	// The database goes away: not ready, a Matrix error naming it.
	env.Store.Close()
	r = env.Get("/readyz")
	if r.Status != 503 || r.String("status") != "not ready" || r.String("database") != "unreachable" || r.Errcode() != "M_UNKNOWN" {
		t.Errorf("readyz without a database: %d %s", r.Status, r.Body)
	}
	if r := env.Get("/livez"); r.Status != 200 {
		t.Errorf("livez without a database: %d %s", r.Status, r.Body)
	}
}
