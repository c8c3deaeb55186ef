package conformance

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary counts results.
type Summary struct{ Pass, Fail, Skip, XFail, XPass int }

// Summarize counts results by status.
func Summarize(results []Result) Summary {
	var s Summary
	for _, r := range results {
		switch r.Status {
		case Pass:
			s.Pass++
		case Fail:
			s.Fail++
		case Skip:
			s.Skip++
		case XFail:
			s.XFail++
		case XPass:
			s.XPass++
		}
	}
	return s
}

// OK reports whether the run succeeds: no unexpected failure, and no
// expected failure that now passes (the list must be kept true).
func (s Summary) OK() bool { return s.Fail == 0 && s.XPass == 0 }

func (s Summary) String() string {
	out := fmt.Sprintf("%d cases: %d passed, %d failed, %d skipped", s.Pass+s.Fail+s.Skip+s.XFail+s.XPass, s.Pass, s.Fail, s.Skip)
	if s.XFail+s.XPass > 0 {
		out += fmt.Sprintf(", %d failed as expected, %d expected to fail but passed", s.XFail, s.XPass)
	}
	return out
}

// Expectation is one line of an expected-failures file.
type Expectation struct {
	Pattern, Reason string
	Line            int
	used            bool
}

// ParseExpectations reads an expected-failures file: one case per line,
// "ID-or-pattern # reason", where the ID is "operation/case" as the table
// and -v print it and "*" in a pattern matches any run of characters
// (nothing else is special). Blank lines and lines starting with # are
// ignored. Every entry needs a reason.
func ParseExpectations(r io.Reader) ([]*Expectation, error) {
	var out []*Expectation
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pat, reason, ok := strings.Cut(line, " # ")
		if !ok || strings.TrimSpace(reason) == "" {
			return nil, fmt.Errorf("line %d: want \"ID-or-pattern # reason\", got %q", n, line)
		}
		out = append(out, &Expectation{Pattern: strings.TrimSpace(pat), Reason: strings.TrimSpace(reason), Line: n})
	}
	return out, sc.Err()
}

// globMatch matches s against a pattern where only "*" is special.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// ApplyExpectations marks listed failures XFail and listed passes XPass.
// A pattern (with "*") marks the failures it matches and leaves passes
// alone, but one that matches no failure at all is itself an XPass (an
// "(expect)" result): the list must stay true. It returns the entries that
// matched no case that ran (stale entries, or cases this run did not
// select), and the results with the pattern XPasses appended.
func ApplyExpectations(results []Result, exps []*Expectation) ([]Result, []*Expectation) {
	failures := map[*Expectation]int{}
	for i := range results {
		res := &results[i]
		for _, e := range exps {
			if !globMatch(e.Pattern, res.ID()) {
				continue
			}
			e.used = true
			switch {
			case res.Status == Fail:
				res.Status, res.Expected = XFail, e.Reason
				failures[e]++
			case res.Status == Pass && !strings.Contains(e.Pattern, "*"):
				res.Status, res.Expected = XPass, e.Reason
				res.Reason = "listed as expected to fail (" + e.Reason + ") but passed: remove it from the list"
			}
			break
		}
	}
	var unused []*Expectation
	for _, e := range exps {
		switch {
		case !e.used:
			unused = append(unused, e)
		case strings.Contains(e.Pattern, "*") && failures[e] == 0:
			results = append(results, Result{Op: "(expect)", Case: e.Pattern, Status: XPass, Expected: e.Reason,
				Reason: fmt.Sprintf("line %d: the pattern matched no failing case (%s): remove it from the list", e.Line, e.Reason)})
		}
	}
	return results, unused
}

// WriteSummary writes the failures grouped by cause and by area of the
// API, and the expected failures that now pass.
func WriteSummary(w io.Writer, results []Result) error {
	byCause, byArea, xfail := map[string]int{}, map[string]int{}, map[string]int{}
	var xpass []string
	for _, r := range results {
		switch r.Status {
		case Fail:
			byCause[r.Cause]++
			byArea[r.Area]++
		case XFail:
			xfail[r.Expected]++
		case XPass:
			xpass = append(xpass, r.ID())
		}
	}
	group := func(title string, m map[string]int) {
		if len(m) == 0 {
			return
		}
		fmt.Fprintln(w, title)
		keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
			if m[a] != m[b] {
				return m[b] - m[a]
			}
			return strings.Compare(a, b)
		})
		for _, k := range keys {
			fmt.Fprintf(w, "  %4d  %s\n", m[k], k)
		}
	}
	group("Failures by cause:", byCause)
	group("Failures by area:", byArea)
	group("Expected failures by reason (-expect):", xfail)
	if len(xpass) > 0 {
		fmt.Fprintln(w, "Listed as expected to fail, but passed (update the -expect file):")
		for _, id := range xpass {
			fmt.Fprintf(w, "        %s\n", id)
		}
	}
	_, err := fmt.Fprintln(w, Summarize(results))
	return err
}

// WriteTable writes the results as an aligned table: operation, case,
// result and, for failures and skips, the reason.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "OPERATION\tCASE\tRESULT\tREASON")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Op, r.Case, strings.ToUpper(string(r.Status)), short(oneLine(r.Reason), 300))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return WriteSummary(w, results)
}

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Class   string        `xml:"classname,attr"`
	Name    string        `xml:"name,attr"`
	Time    string        `xml:"time,attr"`
	Failure *junitMessage `xml:"failure,omitempty"`
	Skipped *junitMessage `xml:"skipped,omitempty"`
	// SystemOut carries the spec citation (JUnit has no field for it).
	SystemOut string `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the results as JUnit XML: one test suite, one test case
// per case, the operation as its class name.
func WriteJUnit(w io.Writer, suite string, results []Result) error {
	s := junitSuite{Name: suite}
	var total time.Duration
	for _, r := range results {
		c := junitCase{Class: r.Op, Name: r.Case, Time: seconds(r.Elapsed), SystemOut: "spec: " + r.Cite + "\narea: " + r.Area}
		total += r.Elapsed
		switch r.Status {
		case Fail, XPass:
			s.Failures++
			c.Failure = &junitMessage{Message: short(oneLine(r.Reason), 200), Text: r.Reason + "\ncause: " + r.Cause + "\nspec: " + r.Cite}
		case Skip:
			s.Skipped++
			c.Skipped = &junitMessage{Message: r.Reason}
		case XFail:
			s.Skipped++
			c.Skipped = &junitMessage{Message: "expected failure (" + r.Expected + "): " + short(oneLine(r.Reason), 200)}
		}
		s.Cases = append(s.Cases, c)
	}
	s.Tests, s.Time = len(results), seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(junitSuites{Suites: []junitSuite{s}}); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }
