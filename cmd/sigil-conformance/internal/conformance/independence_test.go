package conformance

import (
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestSingleCasesGiveFullRunVerdicts: a case run alone (-only ^ID$) must get
// the verdict it gets in the full run. Each case makes its own accounts,
// sessions and tokens (the steps it needs run even when -only leaves them
// out), so no verdict may hang on what an earlier case did or left behind.
// A sample: every CONFORMANCE_INDEPENDENCE_EVERY-th case (default 7, about
// 80 of them; 1 runs them all), each against a fresh Sigil stack, as a
// -only run in CI would be. The transport cases are left out: they tally
// the answers of the operation's other cases, so they depend on which ran
// by design (alone, they skip and say so).
func TestSingleCasesGiveFullRunVerdicts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole suite, then a sample of its cases one by one")
	}
	every := 7
	if s := os.Getenv("CONFORMANCE_INDEPENDENCE_EVERY"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("CONFORMANCE_INDEPENDENCE_EVERY=%q: want a positive integer", s)
		}
		every = n
	}
	env := sigil(t)
	full := runProfile(t, env, env.URL, ProfileSpec)
	start, n := time.Now(), 0
	for i, want := range full {
		if i%every != 0 && i != len(full)-1 {
			continue
		}
		if want.Case == caseCORSAnswers || want.Case == caseJSONType {
			continue
		}
		n++
		id := want.ID()
		one := sigil(t)
		alone := runCfg(t, one, one.URL, []string{"^" + regexp.QuoteMeta(id) + "$"}, []string{`SMTPUTF8`}, nil)
		var got *Result
		for j := range alone {
			if alone[j].ID() == id {
				got = &alone[j]
			} else {
				// A step -only left out is reported only when it failed.
				t.Errorf("%s alone also reported %s: %s %s", id, alone[j].ID(), alone[j].Status, alone[j].Reason)
			}
		}
		switch {
		case got == nil:
			t.Errorf("%s: %s in the full run, not run alone", id, want.Status)
		case got.Status != want.Status:
			t.Errorf("%s: %s in the full run (%s), %s alone (%s)", id, want.Status, want.Reason, got.Status, got.Reason)
		}
	}
	t.Logf("%d of %d cases run alone in %s", n, len(full), time.Since(start).Round(time.Millisecond))
}
